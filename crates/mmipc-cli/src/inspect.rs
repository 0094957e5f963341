//! `mmipc ls` and `mmipc clean`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mmipc::inspect::{ChannelInfo, EndpointInfo};
use serde_json::json;

use crate::CliResult;
use crate::util::fmt_size;

pub(crate) fn ls(root: &Path, channel: Option<&str>, as_json: bool) -> CliResult {
    let channels = match channel {
        Some(name) => vec![mmipc::inspect::channel(root, name)?],
        None => mmipc::inspect::channels(root)?,
    };
    if as_json {
        let v = json!({
            "root": root.display().to_string(),
            "channels": channels.iter().map(channel_json).collect::<Vec<_>>(),
        });
        println!("{v:#}");
        return Ok(());
    }
    println!("root {}", root.display());
    if channels.is_empty() {
        println!("no channels");
        return Ok(());
    }
    let now_ms = unix_ms();
    for c in &channels {
        println!();
        println!("channel {:?}", c.name);
        if c.endpoints.is_empty() {
            println!("  (no endpoints)");
        } else {
            println!(
                "  {:<10} {:<32} {:>8}  {:<5}  {:>8}",
                "KIND", "ID", "PID", "STATE", "AGE"
            );
        }
        for e in &c.endpoints {
            println!(
                "  {:<10} {:<32} {:>8}  {:<5}  {:>8}",
                kind(e),
                e.id.to_string(),
                e.pid.map_or_else(|| "?".into(), |p| p.to_string()),
                if e.alive { "alive" } else { "DEAD" },
                e.created_unix_ms
                    .map_or_else(|| "?".into(), |t| age(now_ms.saturating_sub(t))),
            );
        }
        if !c.rings.is_empty() {
            println!("  connections (publisher → subscriber):");
            for r in &c.rings {
                let state = match (r.publisher_open, r.subscriber_open) {
                    (true, true) => "open",
                    (false, true) => "publisher closed",
                    (true, false) => "subscriber closed",
                    (false, false) => "closed",
                };
                println!(
                    "    {} → {}  ring {:>5.1}% of {}  {} written  {}",
                    short(&r.publisher.to_string()),
                    short(&r.subscriber.to_string()),
                    100.0 * r.fill as f64 / r.capacity.max(1) as f64,
                    fmt_size(r.capacity as usize),
                    human_bytes(r.written),
                    state
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn clean(root: &Path, dry_run: bool, as_json: bool) -> CliResult {
    let files = mmipc::inspect::clean(root, dry_run)?;
    if as_json {
        let v = json!({
            "dry_run": dry_run,
            "removed": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{v:#}");
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for f in &files {
        println!("{verb} {}", f.display());
    }
    println!(
        "{verb} {} file(s) left by dead endpoints under {}",
        files.len(),
        root.display()
    );
    Ok(())
}

fn channel_json(c: &ChannelInfo) -> serde_json::Value {
    json!({
        "name": c.name,
        "endpoints": c.endpoints.iter().map(|e| json!({
            "kind": kind(e),
            "id": e.id.to_string(),
            "pid": e.pid,
            "alive": e.alive,
            "created_unix_ms": e.created_unix_ms,
            "heartbeat_interval_ms": e.heartbeat_interval_ms,
            "max_message_size": e.max_message_size,
        })).collect::<Vec<_>>(),
        "connections": c.rings.iter().map(|r| json!({
            "publisher": r.publisher.to_string(),
            "subscriber": r.subscriber.to_string(),
            "generation": r.generation,
            "capacity": r.capacity,
            "fill": r.fill,
            "written": r.written,
            "publisher_open": r.publisher_open,
            "subscriber_open": r.subscriber_open,
        })).collect::<Vec<_>>(),
    })
}

fn kind(e: &EndpointInfo) -> &'static str {
    match e.kind {
        mmipc::EndpointKind::Publisher => "publisher",
        mmipc::EndpointKind::Subscriber => "subscriber",
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn age(ms: u64) -> String {
    let d = Duration::from_secs(ms / 1000);
    if d.as_secs() < 1 {
        format!("{ms}ms")
    } else {
        humantime::format_duration(d).to_string().replace(' ', "")
    }
}

fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}
