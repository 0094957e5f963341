//! `mmipc sub` and `mmipc hz`.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{Args, ValueEnum};
use mmipc::{DisconnectReason, EndpointId, Event};
use serde_json::json;

use crate::util::{fmt_count, interrupted, is_broken_pipe, size};
use crate::{CliResult, Failure, channel_name, duration};

/// How often a blocked receive looks at the Ctrl-C flag.
const POLL: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub(crate) struct SubArgs {
    /// The channel.
    #[arg(value_parser = channel_name)]
    channel: String,
    /// How to print each message (default: text; --json is the same as --format json).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Exit after N messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit with code 1 if no message arrives for this long (e.g. `5s`), also while waiting
    /// for the first publisher.
    #[arg(long, value_parser = duration)]
    timeout: Option<Duration>,
    /// Print connection events to stderr: `connected: publisher ID pid PID` and
    /// `disconnected: publisher ID pid PID (closed|crashed|timed out|protocol violation)`,
    /// and `waiting for publishers on CHANNEL in DIR…` while there is none at the start
    /// (that line is printed anyway when stderr is a terminal).
    #[arg(long, short = 'v')]
    events: bool,
    /// Read the stream to its end, like a pipe: wait for a publisher, then exit 0 once every
    /// publisher this subscriber was connected to has disconnected and all their messages
    /// are printed (`mmipc pub CH --raw < in` with `mmipc sub CH --format raw
    /// --until-closed > out` copies a file).
    #[arg(long)]
    until_closed: bool,
    /// Largest message accepted (e.g. 4K, 16M; default 64M). Publishers skip larger ones for
    /// this subscriber (`mmipc pub` reports that and exits 1).
    #[arg(long, value_name = "BYTES", value_parser = size)]
    max_message_size: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// UTF-8, one message per line: backslashes, control characters and invalid bytes are
    /// escaped (`\\`, `\n`, `\t`, `\r`, `\xNN`, `\u{NN}`).
    Text,
    /// Hexadecimal bytes, one message per line.
    Hex,
    /// One JSON object per line: publisher, pid, sequence, len, payload (base64).
    Json,
    /// The bytes exactly as received, nothing added.
    Raw,
}

pub(crate) fn run(root: &Path, group: bool, args: SubArgs, json: bool) -> CliResult {
    let format = match (args.format, json) {
        (None, false) => Format::Text,
        (None, true) | (Some(Format::Json), _) => Format::Json,
        (Some(f), false) => f,
        (Some(_), true) => {
            return Err(Failure::usage(
                "--json prints messages as JSON: it cannot be combined with another --format",
            ));
        }
    };
    let mut builder = mmipc::Subscriber::builder(&args.channel)
        .dir(root)
        .group_shared(group);
    if let Some(max) = args.max_message_size {
        builder = builder.max_message_size(max);
    }
    let mut sub = builder.build()?;
    // Before anything is received: no connection event is missed.
    let mut watch = (args.events || args.until_closed).then(|| Watch::new(&sub));
    if sub.num_active_connections() == 0 && (args.events || std::io::stderr().is_terminal()) {
        eprintln!(
            "waiting for publishers on {:?} in {}…",
            args.channel,
            root.display()
        );
    }
    let stop = interrupted();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut received = 0u64;
    let mut last = Instant::now();
    let mut line = Vec::new();
    while args.count.is_none_or(|c| received < c) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(w) = &mut watch {
            let events = w.poll();
            if !events.is_empty() {
                // Messages printed so far come before the events that follow them.
                if let Err(e) = out.flush() {
                    return closed_stdout(e);
                }
                for event in &events {
                    if args.events {
                        eprintln!("{event}");
                    } else if args.until_closed && event.is_abnormal_end() {
                        eprintln!("mmipc: warning: {event}: its stream may be incomplete");
                    }
                }
            }
            // A publisher's `Disconnected` comes after the last of its messages that this
            // subscriber delivers: everything it sent has been printed.
            if args.until_closed && w.all_closed() {
                break;
            }
        }
        // Print what is waiting without flushing per message; flush before sleeping.
        line.clear();
        let waiting = match sub.try_recv_ref() {
            Some(msg) => {
                format_message(format, &msg, &mut line);
                true
            }
            None => false,
        };
        if !waiting {
            if let Err(e) = out.flush() {
                return closed_stdout(e);
            }
            let wait = match args.timeout {
                Some(t) => {
                    let left = t.saturating_sub(last.elapsed());
                    if left.is_zero() {
                        return Err(Failure::runtime(format!(
                            "no message on channel {:?} for {}",
                            args.channel,
                            humantime::format_duration(t)
                        )));
                    }
                    left.min(POLL)
                }
                None => POLL,
            };
            match sub.recv_ref_timeout(wait) {
                Ok(msg) => format_message(format, &msg, &mut line),
                Err(mmipc::RecvTimeoutError) => continue,
            }
        }
        if let Err(e) = out.write_all(&line) {
            return closed_stdout(e);
        }
        received += 1;
        last = Instant::now();
    }
    match out.flush() {
        Ok(()) => Ok(()),
        Err(e) => closed_stdout(e),
    }
}

/// A connection event as `sub --events` prints it.
struct Shown(Event);

impl Shown {
    /// A connection that ended other than by a clean close.
    fn is_abnormal_end(&self) -> bool {
        matches!(&self.0, Event::Disconnected { reason, .. } if *reason != DisconnectReason::Closed)
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Event::Connected { peer } => {
                write!(f, "connected: publisher {} pid {}", peer.id, Pid(peer.pid))
            }
            Event::Disconnected { peer, reason } => write!(
                f,
                "disconnected: publisher {} pid {} ({})",
                peer.id,
                Pid(peer.pid),
                reason_text(*reason)
            ),
            other => write!(f, "event: {other:?}"),
        }
    }
}

/// A process id; 0 (a publisher that had left, record and all, before its ring was seen)
/// as `?`.
struct Pid(u32);

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("?"),
            pid => write!(f, "{pid}"),
        }
    }
}

pub(crate) fn reason_text(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::Closed => "closed",
        DisconnectReason::Crashed => "crashed",
        DisconnectReason::TimedOut => "timed out",
        DisconnectReason::ProtocolViolation => "protocol violation",
        DisconnectReason::Evicted => "evicted (this end was judged hung)",
        _ => "disconnected",
    }
}

/// Which publishers a subscriber is connected to, from its events.
struct Watch {
    events: mmipc::Events,
    /// Connections per publisher (a publisher that reconnects after a time-out may have a
    /// new connection before the old one's end is reported).
    open: HashMap<EndpointId, u32>,
    /// Connected at the snapshot (only while `new` runs): their `Connected` may be queued.
    snapshot: HashSet<EndpointId>,
    /// Some publisher was connected at some point.
    seen_any: bool,
    /// Events to show, queued by `new` for the first `poll`.
    queued: Vec<Shown>,
}

impl Watch {
    fn new(sub: &mmipc::Subscriber) -> Watch {
        // Events first, then the snapshot: a publisher connecting in between is in both (and
        // counted once); none is in neither. `build` connected to the running publishers
        // before any receiver of events existed, so they are only in the snapshot.
        let events = sub.events();
        let mut w = Watch {
            events,
            open: HashMap::new(),
            snapshot: HashSet::new(),
            seen_any: false,
            queued: Vec::new(),
        };
        for c in sub.connections() {
            w.snapshot.insert(c.peer.id);
            w.open.insert(c.peer.id, 1);
            w.seen_any = true;
            w.queued.push(Shown(Event::Connected { peer: c.peer }));
        }
        // A `Connected` already queued now for a publisher of the snapshot is the same
        // connection; any later one is a new connection.
        w.queued = w.poll();
        w.snapshot.clear();
        w
    }

    /// The events since the last call, applied to the set of open connections.
    fn poll(&mut self) -> Vec<Shown> {
        let mut shown = std::mem::take(&mut self.queued);
        while let Some(event) = self.events.try_recv() {
            match &event {
                Event::Connected { peer } => {
                    self.seen_any = true;
                    // Already counted (and shown) from the snapshot.
                    if self.snapshot.remove(&peer.id) {
                        continue;
                    }
                    *self.open.entry(peer.id).or_default() += 1;
                }
                Event::Disconnected { peer, .. } => {
                    self.seen_any = true;
                    self.snapshot.remove(&peer.id);
                    if let Some(n) = self.open.get_mut(&peer.id) {
                        *n -= 1;
                        if *n == 0 {
                            self.open.remove(&peer.id);
                        }
                    }
                }
                _ => {}
            }
            shown.push(Shown(event));
        }
        shown
    }

    /// Some publisher was connected, and every one has disconnected since.
    fn all_closed(&self) -> bool {
        self.seen_any && self.open.is_empty()
    }
}

/// A reader that went away (`| head`) is a normal end; other write errors are failures.
fn closed_stdout(e: std::io::Error) -> CliResult {
    if is_broken_pipe(&e) {
        Ok(())
    } else {
        Err(Failure::runtime(format!("cannot write to stdout: {e}")))
    }
}

fn format_message(format: Format, msg: &mmipc::MessageRef<'_>, line: &mut Vec<u8>) {
    let payload = msg.payload();
    match format {
        Format::Raw => line.extend_from_slice(payload),
        Format::Text => {
            escape_text(payload, line);
            line.push(b'\n');
        }
        Format::Hex => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for &b in payload {
                line.push(HEX[usize::from(b >> 4)]);
                line.push(HEX[usize::from(b & 15)]);
            }
            line.push(b'\n');
        }
        Format::Json => {
            let obj = serde_json::json!({
                "publisher": msg.publisher_id().to_string(),
                "pid": msg.publisher_pid(),
                "sequence": msg.sequence(),
                "len": payload.len(),
                "payload": base64::engine::general_purpose::STANDARD.encode(payload),
            });
            line.extend_from_slice(obj.to_string().as_bytes());
            line.push(b'\n');
        }
    }
}

/// Appends `payload` as one line of text: valid UTF-8 as it is, except backslashes and
/// control characters, which are escaped (`\\`, `\n`, `\t`, `\r`, `\xNN` for other ASCII
/// controls and for bytes that are not UTF-8, `\u{NN}` for other Unicode controls). The
/// escaping is reversible, and a message never spans lines.
fn escape_text(payload: &[u8], line: &mut Vec<u8>) {
    use std::io::Write as _;
    for chunk in payload.utf8_chunks() {
        let valid = chunk.valid();
        if !valid.chars().any(|c| c == '\\' || c.is_control()) {
            line.extend_from_slice(valid.as_bytes());
        } else {
            for c in valid.chars() {
                match c {
                    '\\' => line.extend_from_slice(b"\\\\"),
                    '\n' => line.extend_from_slice(b"\\n"),
                    '\t' => line.extend_from_slice(b"\\t"),
                    '\r' => line.extend_from_slice(b"\\r"),
                    c if c.is_ascii_control() => {
                        let _ = write!(line, "\\x{:02x}", c as u32);
                    }
                    c if c.is_control() => {
                        let _ = write!(line, "\\u{{{:x}}}", c as u32);
                    }
                    c => line.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
        }
        for &b in chunk.invalid() {
            let _ = write!(line, "\\x{b:02x}");
        }
    }
}

/// `mmipc hz`: messages and bytes per second, each second, and a summary at the end.
pub(crate) fn hz(
    root: &Path,
    group: bool,
    channel: &str,
    run_for: Option<Duration>,
    json: bool,
) -> CliResult {
    let mut sub = mmipc::Subscriber::builder(channel)
        .dir(root)
        .group_shared(group)
        .build()?;
    let stop = interrupted();
    let start = Instant::now();
    let mut window = Instant::now();
    let (mut msgs, mut bytes) = (0u64, 0u64);
    let (mut total_msgs, mut total_bytes, mut total_lost) = (0u64, 0u64, 0u64);
    let mut lost = Lost::new(&sub);
    let mut out = Lines::default();
    if json {
        eprintln!("channel {channel:?}: waiting for messages (Ctrl-C to stop)");
    } else {
        out.line(&format!(
            "channel {channel:?}: waiting for messages (Ctrl-C to stop)"
        ))?;
    }
    while !out.closed
        && !stop.load(Ordering::Relaxed)
        && run_for.is_none_or(|d| start.elapsed() < d)
    {
        if let Ok(msg) = sub.recv_ref_timeout(POLL) {
            msgs += 1;
            bytes += msg.len() as u64;
        }
        let secs = window.elapsed().as_secs_f64();
        if secs >= 1.0 {
            let window_lost = lost.update(&sub);
            let publishers = sub.num_active_connections();
            if json {
                out.line(
                    &json!({
                        "type": "rate",
                        "elapsed_s": round3(start.elapsed().as_secs_f64()),
                        "seconds": round3(secs),
                        "messages": msgs,
                        "bytes": bytes,
                        "msgs_per_s": round3(msgs as f64 / secs),
                        "bytes_per_s": round3(bytes as f64 / secs),
                        "publishers": publishers,
                        "lost": window_lost,
                    })
                    .to_string(),
                )?;
            } else {
                out.line(&format!(
                    "{:>10} msgs/s  {:>9.2} MB/s  publishers {}  lost {}",
                    fmt_count(msgs as f64 / secs),
                    bytes as f64 / secs / 1e6,
                    publishers,
                    window_lost
                ))?;
            }
            total_msgs += msgs;
            total_bytes += bytes;
            total_lost += window_lost;
            (msgs, bytes) = (0, 0);
            window = Instant::now();
        }
    }
    if out.closed {
        return Ok(());
    }
    total_msgs += msgs;
    total_bytes += bytes;
    total_lost += lost.update(&sub);
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    if json {
        out.line(
            &json!({
                "type": "summary",
                "seconds": round3(secs),
                "messages": total_msgs,
                "bytes": total_bytes,
                "msgs_per_s": round3(total_msgs as f64 / secs),
                "bytes_per_s": round3(total_bytes as f64 / secs),
                "lost": total_lost,
                "publishers_seen": lost.seen.len(),
            })
            .to_string(),
        )?;
    } else {
        out.line(&format!(
            "total: {total_msgs} messages, {total_bytes} bytes in {secs:.1} s ({} msgs/s, {:.2} \
             MB/s), lost {total_lost}, publishers seen {}",
            fmt_count(total_msgs as f64 / secs),
            total_bytes as f64 / secs / 1e6,
            lost.seen.len()
        ))?;
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Messages lost per publisher, as last seen (publishers that leave keep their count), and
/// every publisher seen.
struct Lost {
    events: mmipc::Events,
    drops: HashMap<EndpointId, u64>,
    seen: HashSet<EndpointId>,
}

impl Lost {
    fn new(sub: &mmipc::Subscriber) -> Lost {
        let mut lost = Lost {
            events: sub.events(),
            drops: HashMap::new(),
            seen: HashSet::new(),
        };
        lost.update(sub);
        lost
    }

    /// Messages lost since the last call.
    fn update(&mut self, sub: &mmipc::Subscriber) -> u64 {
        while let Some(event) = self.events.try_recv() {
            if let Event::Connected { peer } = event {
                self.seen.insert(peer.id);
            }
        }
        let mut new = 0;
        for c in sub.connections() {
            self.seen.insert(c.peer.id);
            let before = self.drops.insert(c.peer.id, c.drops).unwrap_or(0);
            new += c.drops.saturating_sub(before);
        }
        new
    }
}

/// Lines on stdout, flushed each time; a reader that went away ends the command quietly.
#[derive(Default)]
struct Lines {
    closed: bool,
}

impl Lines {
    fn line(&mut self, s: &str) -> CliResult {
        if self.closed {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        match writeln!(stdout, "{s}").and_then(|()| stdout.flush()) {
            Ok(()) => Ok(()),
            Err(e) if is_broken_pipe(&e) => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Failure::runtime(format!("cannot write to stdout: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(b: &[u8]) -> String {
        let mut v = Vec::new();
        escape_text(b, &mut v);
        String::from_utf8(v).expect("escaped text is UTF-8")
    }

    #[test]
    fn text_escapes_what_would_break_a_line() {
        assert_eq!(escaped(b"plain text"), "plain text");
        assert_eq!(escaped(b"a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escaped(b"back\\slash"), "back\\\\slash");
        assert_eq!(escaped(b"\x00\x1b\x7f"), "\\x00\\x1b\\x7f");
        assert_eq!(escaped(b"bad \xff\xfe utf8"), "bad \\xff\\xfe utf8");
        assert_eq!(escaped("grüße ✓".as_bytes()), "grüße ✓");
        assert_eq!(escaped("c1 \u{85}".as_bytes()), "c1 \\u{85}");
    }
}
