//! `mmipc sub` and `mmipc hz`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{Args, ValueEnum};

use crate::util::{fmt_count, interrupted, is_broken_pipe};
use crate::{CliResult, Failure, channel_name, duration};

/// How often a blocked receive looks at the Ctrl-C flag.
const POLL: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub(crate) struct SubArgs {
    /// The channel.
    #[arg(value_parser = channel_name)]
    channel: String,
    /// How to print each message.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit after N messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit with code 1 if no message arrives for this long (e.g. `5s`).
    #[arg(long, value_parser = duration)]
    timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// UTF-8 (invalid bytes replaced), one message per line.
    Text,
    /// Hexadecimal bytes, one message per line.
    Hex,
    /// One JSON object per line: publisher, pid, sequence, len, payload (base64).
    Json,
    /// The bytes exactly as received, nothing added.
    Raw,
}

pub(crate) fn run(root: &Path, args: SubArgs) -> CliResult {
    let mut sub = mmipc::Subscriber::builder(&args.channel)
        .dir(root)
        .build()?;
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
        // Print what is waiting without flushing per message; flush before sleeping.
        line.clear();
        let waiting = match sub.try_recv_ref()? {
            Some(msg) => {
                format_message(args.format, &msg, &mut line);
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
                Ok(msg) => format_message(args.format, &msg, &mut line),
                Err(mmipc::Error::Timeout { .. }) => continue,
                Err(e) => return Err(e.into()),
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
            line.extend_from_slice(String::from_utf8_lossy(payload).as_bytes());
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

/// `mmipc hz`: messages and bytes per second, each second.
pub(crate) fn hz(root: &Path, channel: &str, run_for: Option<Duration>) -> CliResult {
    let mut sub = mmipc::Subscriber::builder(channel).dir(root).build()?;
    let stop = interrupted();
    let start = Instant::now();
    let mut window = Instant::now();
    let (mut msgs, mut bytes, mut drops_seen) = (0u64, 0u64, 0u64);
    println!("channel {channel:?}: waiting for messages (Ctrl-C to stop)");
    while !stop.load(Ordering::Relaxed) && run_for.is_none_or(|d| start.elapsed() < d) {
        match sub.recv_ref_timeout(POLL) {
            Ok(msg) => {
                msgs += 1;
                bytes += msg.len() as u64;
            }
            Err(mmipc::Error::Timeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let secs = window.elapsed().as_secs_f64();
        if secs >= 1.0 {
            let drops: u64 = sub.connections().iter().map(|c| c.drops).sum();
            println!(
                "{:>10} msgs/s  {:>9.2} MB/s  publishers {}  lost {}",
                fmt_count(msgs as f64 / secs),
                bytes as f64 / secs / 1e6,
                sub.num_active_connections(),
                drops.saturating_sub(drops_seen)
            );
            drops_seen = drops;
            (msgs, bytes) = (0, 0);
            window = Instant::now();
        }
    }
    Ok(())
}
