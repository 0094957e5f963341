//! `mmipc pub`.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;

use crate::util::{interrupted, size};
use crate::{CliResult, Failure, channel_name, duration};

#[derive(Args, Debug)]
pub(crate) struct PubArgs {
    /// The channel.
    #[arg(value_parser = channel_name)]
    channel: String,
    /// Messages to publish, one per argument. Without any (and without --file or --count),
    /// each line of stdin is one message.
    messages: Vec<String>,
    /// Publish stdin in chunks of --chunk bytes instead of lines.
    #[arg(long, conflicts_with_all = ["messages", "file", "count"])]
    raw: bool,
    /// Chunk size for --raw.
    #[arg(long, default_value = "64K", value_parser = size, requires = "raw")]
    chunk: usize,
    /// Publish this file's contents as one message.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["messages", "count"])]
    file: Option<PathBuf>,
    /// Wait for this many subscribers before publishing (default: 1 with MESSAGE arguments,
    /// --file or --count, so that nothing is published into the void; 0 for stdin).
    #[arg(long, value_name = "N")]
    wait_subscribers: Option<usize>,
    /// How long to wait for the subscribers.
    #[arg(long, default_value = "10s", value_parser = duration)]
    timeout: Duration,
    /// Generate a test stream of N messages (see --size and --rate).
    #[arg(long, value_name = "N", conflicts_with = "messages")]
    count: Option<u64>,
    /// Size of each generated message.
    #[arg(long, default_value = "64", value_parser = size, requires = "count")]
    size: usize,
    /// Messages per second for the generated stream (default: as fast as possible).
    #[arg(long, value_name = "MSGS_PER_S", requires = "count")]
    rate: Option<f64>,
}

pub(crate) fn run(root: &Path, args: PubArgs) -> CliResult {
    let from_stdin = args.messages.is_empty() && args.file.is_none() && args.count.is_none();
    let wait = args
        .wait_subscribers
        .unwrap_or(if from_stdin { 0 } else { 1 });
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(Failure::usage("--rate must be a positive number"));
    }
    let file_len = match &args.file {
        Some(f) => std::fs::metadata(f)
            .map_err(|e| Failure::runtime(format!("cannot read {}: {e}", f.display())))?
            .len() as usize,
        None => 0,
    };
    let largest = mmipc::DEFAULT_MAX_MESSAGE_SIZE
        .max(args.chunk)
        .max(args.size)
        .max(file_len);
    let publisher = mmipc::Publisher::builder(&args.channel)
        .dir(root)
        .max_message_size(largest)
        .build()?;
    // Before waiting: Ctrl-C during the wait must still end cleanly.
    let stop = interrupted();
    if wait > 0 {
        // In short slices, so that Ctrl-C is honoured at once.
        let deadline = Instant::now() + args.timeout;
        let mut connected = Err(());
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            if publisher.wait_for_subscribers(wait, slice).is_ok() {
                connected = Ok(());
                break;
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        connected.map_err(|()| {
            Failure::runtime(format!(
                "no subscriber on channel {:?} after {} (start `mmipc sub {}` first, or \
                     pass --wait-subscribers 0)",
                args.channel,
                humantime::format_duration(args.timeout),
                args.channel
            ))
        })?;
    }
    if stop.load(Ordering::Relaxed) {
        return Ok(());
    }
    if let Some(file) = &args.file {
        let bytes = std::fs::read(file)
            .map_err(|e| Failure::runtime(format!("cannot read {}: {e}", file.display())))?;
        publisher.publish(&bytes)?;
    } else if let Some(count) = args.count {
        generate(&publisher, count, args.size, args.rate, &stop)?;
    } else if !args.messages.is_empty() {
        for m in &args.messages {
            publisher.publish(m.as_bytes())?;
        }
    } else if args.raw {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; args.chunk.max(1)];
        while !stop.load(Ordering::Relaxed) {
            let n = read_full(&mut stdin, &mut buf)?;
            if n == 0 {
                break;
            }
            publisher.publish(&buf[..n])?;
        }
    } else {
        let mut line = Vec::new();
        let mut stdin = std::io::stdin().lock();
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            if stdin.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            publisher.publish(&line)?;
        }
    }
    // Dropping the publisher closes the stream; what is in the rings is still delivered.
    Ok(())
}

/// Reads until `buf` is full or stdin ends; returns the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Publishes `count` messages of `size` bytes; each starts with its index (8 bytes, little
/// endian, when it fits) so a receiver can check order.
fn generate(
    publisher: &mmipc::Publisher,
    count: u64,
    size: usize,
    rate: Option<f64>,
    stop: &std::sync::atomic::AtomicBool,
) -> CliResult {
    let mut msg = vec![0u8; size];
    let start = Instant::now();
    for i in 0..count {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let stamp = i.to_le_bytes();
        let k = stamp.len().min(size);
        msg[..k].copy_from_slice(&stamp[..k]);
        publisher.publish(&msg)?;
    }
    Ok(())
}
