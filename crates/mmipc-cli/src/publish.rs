//! `mmipc pub`.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{ArgGroup, Args};
use mmipc::{DisconnectReason, Event, Peer};
use serde_json::json;

use crate::subscribe::reason_text;
use crate::util::{fmt_size, interrupted, size};
use crate::{CliResult, Failure, channel_name, duration};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("repeatable").args(["count", "messages"]).multiple(true)))]
pub(crate) struct PubArgs {
    /// The channel.
    #[arg(value_parser = channel_name)]
    channel: String,
    /// Messages to publish, one per argument. Without any (and without --file or --count),
    /// each line of stdin is one message. With --count or --rate they are published again
    /// and again, in turn.
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
    /// Publish N messages in all: the MESSAGE arguments in turn, or without any, a generated
    /// test stream (see --size).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Size of each generated message (--count without MESSAGE arguments).
    #[arg(long, default_value = "64", value_parser = size, requires = "count", conflicts_with = "messages")]
    size: usize,
    /// Messages per second (default: as fast as possible). With MESSAGE arguments and no
    /// --count, they are repeated until Ctrl-C (like `ros2 topic pub -r`).
    #[arg(long, value_name = "MSGS_PER_S", requires = "repeatable")]
    rate: Option<f64>,
    /// No summary on stderr at the end (errors are still reported).
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub(crate) fn run(root: &Path, group: bool, args: PubArgs, json: bool) -> CliResult {
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
        .group_shared(group)
        .max_message_size(largest)
        .build()?;
    let mut tally = Tally::new(
        &publisher,
        root,
        // Slow streams are looked at after every message, so that a subscriber that drops
        // a message and leaves right after is still reported.
        args.rate.is_some_and(|r| r <= 10_000.0),
    );
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
    tally.look(&publisher);
    if let Some(file) = &args.file {
        let bytes = std::fs::read(file)
            .map_err(|e| Failure::runtime(format!("cannot read {}: {e}", file.display())))?;
        publisher.publish(&bytes)?;
        tally.published(&publisher, bytes.len());
    } else if !args.messages.is_empty() {
        // Each argument once; with --count N messages in all; with only --rate, for ever.
        let count = match (args.count, args.rate) {
            (Some(n), _) => Some(n),
            (None, None) => Some(args.messages.len() as u64),
            (None, Some(_)) => None,
        };
        let start = Instant::now();
        let mut i = 0u64;
        while count.is_none_or(|c| i < c) && pace(start, i, args.rate, &stop) {
            let m = &args.messages[(i % args.messages.len() as u64) as usize];
            publisher.publish(m.as_bytes())?;
            tally.published(&publisher, m.len());
            i += 1;
        }
    } else if let Some(count) = args.count {
        generate(&publisher, count, args.size, args.rate, &stop, &mut tally)?;
    } else if args.raw {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; args.chunk.max(1)];
        while !stop.load(Ordering::Relaxed) {
            let n = read_full(&mut stdin, &mut buf)?;
            if n == 0 {
                break;
            }
            publisher.publish(&buf[..n])?;
            tally.published(&publisher, n);
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
            tally.published(&publisher, line.len());
        }
    }
    // The last look at the connections while they are still ours.
    tally.look(&publisher);
    // Dropping the publisher closes the stream; what is in the rings is still delivered.
    drop(publisher);
    tally.report(&args.channel, json, args.quiet)
}

/// Waits until message `i` of a stream at `rate` messages per second is due (at once
/// without a rate); false if Ctrl-C came first.
fn pace(start: Instant, i: u64, rate: Option<f64>, stop: &AtomicBool) -> bool {
    if let Some(rate) = rate {
        let due = Duration::try_from_secs_f64(i as f64 / rate)
            .ok()
            .and_then(|d| start.checked_add(d));
        loop {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            let left = match due {
                Some(due) if due <= now => break,
                Some(due) => due - now,
                None => Duration::MAX,
            };
            // In short slices, so that Ctrl-C is honoured at once.
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
    !stop.load(Ordering::Relaxed)
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
    stop: &AtomicBool,
    tally: &mut Tally,
) -> CliResult {
    let mut msg = vec![0u8; size];
    let start = Instant::now();
    for i in 0..count {
        if !pace(start, i, rate, stop) {
            break;
        }
        let stamp = i.to_le_bytes();
        let k = stamp.len().min(size);
        msg[..k].copy_from_slice(&stamp[..k]);
        publisher.publish(&msg)?;
        tally.published(publisher, size);
    }
    Ok(())
}

/// How often a fast stream looks at its connections' counters.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// What was published, and what each subscriber got of it.
struct Tally {
    root: PathBuf,
    events: mmipc::Events,
    messages: u64,
    bytes: u64,
    largest: usize,
    /// Look at the connections after every message.
    always: bool,
    last_look: Instant,
    /// In the order first seen.
    subscribers: Vec<Delivery>,
}

/// One subscriber's share, as last seen: a subscriber that left keeps its figures.
struct Delivery {
    peer: Peer,
    delivered: u64,
    bytes: u64,
    dropped: u64,
    /// Its max message size from its record (looked up once it drops a message).
    limit: Option<Option<u64>>,
    gone: Option<DisconnectReason>,
}

impl Tally {
    fn new(publisher: &mmipc::Publisher, root: &Path, always: bool) -> Tally {
        Tally {
            root: root.to_owned(),
            events: publisher.events(),
            messages: 0,
            bytes: 0,
            largest: 0,
            always,
            last_look: Instant::now(),
            subscribers: Vec::new(),
        }
    }

    /// Counts a published message and, now and then, looks at the connections. The first
    /// thousand messages are always looked at (`pub CH a b c`, a file, a short stream).
    fn published(&mut self, publisher: &mmipc::Publisher, len: usize) {
        self.messages += 1;
        self.bytes += len as u64;
        self.largest = self.largest.max(len);
        if self.always
            || self.messages <= 1000
            || (self.messages.is_multiple_of(64) && self.last_look.elapsed() >= LOOK_EVERY)
        {
            self.look(publisher);
        }
    }

    fn entry(&mut self, peer: Peer) -> &mut Delivery {
        let i = match self.subscribers.iter().position(|d| d.peer.id == peer.id) {
            Some(i) => i,
            None => {
                self.subscribers.push(Delivery {
                    peer,
                    delivered: 0,
                    bytes: 0,
                    dropped: 0,
                    limit: None,
                    gone: None,
                });
                self.subscribers.len() - 1
            }
        };
        &mut self.subscribers[i]
    }

    /// Updates the figures of every connection.
    fn look(&mut self, publisher: &mmipc::Publisher) {
        self.last_look = Instant::now();
        for c in publisher.connections() {
            let d = self.entry(c.peer);
            // Counters only grow; a reconnected subscriber starts a new connection at 0.
            d.delivered = d.delivered.max(c.messages);
            d.bytes = d.bytes.max(c.bytes);
            d.dropped = d.dropped.max(c.drops);
            d.gone = None;
        }
        while let Some(event) = self.events.try_recv() {
            match event {
                Event::Connected { peer } => {
                    self.entry(peer);
                }
                Event::Disconnected { peer, reason } => self.entry(peer).gone = Some(reason),
                _ => {}
            }
        }
        // Why a subscriber drops: its limit, read while it is (most likely) still there.
        let unknown: Vec<usize> = (0..self.subscribers.len())
            .filter(|&i| self.subscribers[i].dropped > 0 && self.subscribers[i].limit.is_none())
            .collect();
        if !unknown.is_empty() {
            let endpoints = endpoints_of(&self.root, publisher.channel());
            for i in unknown {
                let d = &mut self.subscribers[i];
                d.limit = Some(
                    endpoints
                        .iter()
                        .find(|e| e.id == d.peer.id)
                        .and_then(|e| e.max_message_size),
                );
            }
        }
    }

    /// Prints the summary (stderr, or JSON on stdout); fails if a subscriber missed messages.
    fn report(&self, channel: &str, json: bool, quiet: bool) -> CliResult {
        let dropped: u64 = self.subscribers.iter().map(|d| d.dropped).sum();
        if json {
            let subs: Vec<_> = self
                .subscribers
                .iter()
                .map(|d| {
                    json!({
                        "id": d.peer.id.to_string(),
                        "pid": d.peer.pid,
                        "delivered": d.delivered,
                        "bytes": d.bytes,
                        "dropped": d.dropped,
                        "max_message_size": d.limit.flatten(),
                        "disconnected": d.gone.map(reason_text),
                    })
                })
                .collect();
            println!(
                "{:#}",
                json!({
                    "channel": channel,
                    "messages": self.messages,
                    "bytes": self.bytes,
                    "dropped": dropped,
                    "subscribers": subs,
                })
            );
        } else if !quiet {
            eprintln!(
                "published {} message(s), {} bytes, on {channel:?}: {} subscriber(s), {dropped} \
                 dropped",
                self.messages,
                self.bytes,
                self.subscribers.len()
            );
            for d in &self.subscribers {
                let mut line = format!(
                    "  subscriber pid {} id {}: delivered {}, dropped {}",
                    d.peer.pid, d.peer.id, d.delivered, d.dropped
                );
                if d.dropped > 0 {
                    line += &format!(" ({})", self.why(d));
                }
                if let Some(reason) = d.gone {
                    line += &format!(" [disconnected: {}]", reason_text(reason));
                }
                eprintln!("{line}");
            }
        }
        if dropped == 0 {
            return Ok(());
        }
        let lines: Vec<String> = self
            .subscribers
            .iter()
            .filter(|d| d.dropped > 0)
            .map(|d| {
                format!(
                    "{} of {} message(s) not delivered to subscriber pid {} (id {}): {}; start \
                     it with a larger --max-message-size",
                    d.dropped,
                    self.messages,
                    d.peer.pid,
                    d.peer.id,
                    self.why(d)
                )
            })
            .collect();
        Err(Failure::runtime(lines.join("\nmmipc: error: ")))
    }

    /// Why `d` dropped messages. A blocking publisher (the CLI's) drops only messages above a
    /// subscriber's max message size.
    fn why(&self, d: &Delivery) -> String {
        match d.limit.flatten() {
            Some(limit) if self.largest as u64 > limit => format!(
                "larger than its max message size of {}",
                fmt_size(usize::try_from(limit).unwrap_or(usize::MAX))
            ),
            _ => "larger than its max message size".to_owned(),
        }
    }
}

/// The endpoints of `channel`, for subscribers' limits; none if the directory cannot be read.
fn endpoints_of(root: &Path, channel: &str) -> Vec<mmipc::inspect::EndpointInfo> {
    mmipc::inspect::channel(root, channel)
        .map(|c| c.endpoints)
        .unwrap_or_default()
}
