//! `mmipc bench`: round-trip latency and one-way throughput between real processes, over
//! the public publish/subscribe API.
//!
//! Each measurement spawns fresh peer processes (this binary, hidden `bench-peer`
//! subcommand) on a channel of its own, pins parent and peer to different CPUs when it can,
//! excludes a warm-up, and checks every message: echoed payloads are compared byte for byte,
//! and streamed messages must arrive with consecutive sequence stamps and a matching checksum.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use mmipc::{OnFull, Publisher, Subscriber, WaitStrategy};
use serde_json::json;

use mmipc_benchkit::os::{allowed_cpus, cpu_model, cpu_pair, die_with_parent, pin_to};

use crate::util::{fmt_count, fmt_ns, fmt_size, size};
use crate::{CliResult, Failure, duration};

/// Longest a peer waits for anything before giving up (a bug never hangs the bench).
const PEER_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Message sizes, comma-separated (e.g. `64,4K,1M`).
    #[arg(long, value_delimiter = ',', value_parser = size, default_value = "8,64,1K,64K,1M")]
    sizes: Vec<usize>,
    /// Subscriber processes for the throughput runs (fan-out: each receives every message).
    #[arg(long, default_value_t = 1, value_name = "N")]
    subscribers: usize,
    /// Time per measurement (each size has a latency and a throughput measurement).
    #[arg(long, default_value = "2s", value_parser = duration)]
    duration: Duration,
    /// How receivers and blocked publishers wait.
    #[arg(long, value_enum, default_value_t = Wait::Default)]
    wait: Wait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Wait {
    /// Busy-wait: lowest latency, a core at 100% while waiting.
    Spin,
    /// Sleep in the kernel at once: no CPU while idle, a wake-up per message when idle.
    Park,
    /// Spin briefly, then sleep (the library default).
    Default,
}

impl Wait {
    fn strategy(self) -> WaitStrategy {
        match self {
            Wait::Spin => WaitStrategy::Spin,
            Wait::Park => WaitStrategy::Park,
            Wait::Default => WaitStrategy::default(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Wait::Spin => "spin",
            Wait::Park => "park",
            Wait::Default => "default",
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct PeerArgs {
    #[arg(long)]
    role: String,
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    channel: String,
    #[arg(long, value_enum)]
    wait: Wait,
    #[arg(long)]
    cpu: Option<usize>,
    #[arg(long, default_value_t = 0)]
    size: usize,
}

/// Round-trip figures of one size.
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    samples: u64,
}

/// One-way figures of one size: per subscriber (each gets every message).
struct Throughput {
    msgs_per_s: f64,
    messages: u64,
}

pub(crate) fn run(root: &Path, args: BenchArgs, as_json: bool) -> CliResult {
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        return Err(Failure::usage("--sizes: give sizes of at least 1 byte"));
    }
    if args.subscribers == 0 {
        return Err(Failure::usage("--subscribers must be at least 1"));
    }
    if args.duration < Duration::from_millis(100) {
        return Err(Failure::usage("--duration must be at least 100ms"));
    }
    let cpus = allowed_cpus();
    let pins = cpu_pair(true);
    let steps = args.sizes.len() as u64 * 2;
    let bar = if std::io::stdout().is_terminal() {
        let bar = ProgressBar::new(steps);
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let runner = Runner {
        root,
        args: &args,
        pins,
    };
    let mut rows = Vec::new();
    for &size in &args.sizes {
        bar.set_message(format!("{} round trips", fmt_size(size)));
        let lat = runner.latency(size)?;
        bar.inc(1);
        bar.set_message(format!("{} one way", fmt_size(size)));
        let tput = runner.throughput(size)?;
        bar.inc(1);
        rows.push((size, lat, tput));
    }
    bar.finish_and_clear();

    let pinned = match pins {
        Some((a, b)) => format!("parent and peer pinned to CPUs {a} and {b}"),
        None => "not pinned (fewer than 2 CPUs available)".into(),
    };
    if as_json {
        let v = json!({
            "wait": args.wait.name(),
            "subscribers": args.subscribers,
            "duration_s": args.duration.as_secs_f64(),
            "cpu": cpu_model(),
            "cpus": cpus.len(),
            "pinned": pins.is_some(),
            "rows": rows.iter().map(|(size, l, t)| json!({
                "size": size,
                "rtt_ns": {"p50": l.p50, "p99": l.p99, "p999": l.p999, "samples": l.samples},
                "throughput": {
                    "msgs_per_s": t.msgs_per_s,
                    "mb_per_s": t.msgs_per_s * *size as f64 / 1e6,
                    "messages": t.messages,
                },
            })).collect::<Vec<_>>(),
        });
        println!("{v:#}");
        return Ok(());
    }
    println!(
        "mmipc bench: wait strategy {}, {} per measurement, 1 publisher → {} subscriber \
         process(es) for throughput",
        args.wait.name(),
        humantime::format_duration(args.duration),
        args.subscribers
    );
    println!("{}, {pinned}", cpu_model());
    println!();
    println!("| size | RTT p50 | RTT p99 | RTT p99.9 | one-way msgs/s | one-way MB/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (size, l, t) in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} |",
            fmt_size(*size),
            fmt_ns(l.p50),
            fmt_ns(l.p99),
            fmt_ns(l.p999),
            fmt_count(t.msgs_per_s),
            t.msgs_per_s * *size as f64 / 1e6
        );
    }
    println!();
    println!(
        "RTT: publish → echo by the peer process → receive, every reply checked byte for byte. \
         One way: messages/s per subscriber, every byte of every message checked."
    );
    Ok(())
}

/// A unique channel name for one measurement.
fn channel(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench-{}-{what}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A peer process, killed if still running when dropped.
struct Peer(Child);

impl Peer {
    fn spawn(
        root: &Path,
        role: &str,
        channel: &str,
        wait: Wait,
        cpu: Option<usize>,
        size: usize,
    ) -> CliResult<Peer> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("bench-peer")
            .args(["--role", role, "--channel", channel, "--wait", wait.name()])
            .args(["--size", &size.to_string()])
            .arg("--root")
            .arg(root)
            .stdout(Stdio::piped());
        if let Some(cpu) = cpu {
            cmd.args(["--cpu", &cpu.to_string()]);
        }
        Ok(Peer(cmd.spawn().map_err(|e| {
            Failure::runtime(format!("cannot start a benchmark peer process: {e}"))
        })?))
    }

    /// Waits for the peer's report line and its exit.
    fn finish(mut self) -> CliResult<String> {
        let out = self
            .0
            .stdout
            .take()
            .ok_or_else(|| Failure::runtime("peer has no stdout"))?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let status = self.0.wait()?;
        if !status.success() {
            return Err(Failure::runtime(format!(
                "a benchmark peer failed ({status})"
            )));
        }
        Ok(line.trim().to_owned())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Writes the stamp of message `seq` into `buf` (otherwise zero): the sequence number in the
/// first bytes (as many as fit), and a byte derived from it at the end.
fn stamp(buf: &mut [u8], seq: u64) {
    let s = seq.to_le_bytes();
    let k = s.len().min(buf.len());
    buf[..k].copy_from_slice(&s[..k]);
    if buf.len() > 8
        && let Some(last) = buf.last_mut()
    {
        *last = seq as u8 ^ 0x5a;
    }
}

/// Whether `msg` is exactly what `stamp(_, seq)` made of a zeroed buffer of `size` bytes.
/// Reads every byte, as a real consumer would.
fn is_stamped(msg: &[u8], size: usize, seq: u64) -> bool {
    if msg.len() != size {
        return false;
    }
    let s = seq.to_le_bytes();
    let k = s.len().min(size);
    if msg[..k] != s[..k] {
        return false;
    }
    if size > 8 {
        all_zero(&msg[8..size - 1]) && msg[size - 1] == seq as u8 ^ 0x5a
    } else {
        true
    }
}

/// Whether every byte is zero, at memory speed (the inner fold vectorises).
fn all_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(256);
    chunks.all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

/// Rings of at least 1 MiB or four messages, so large messages are not fragmented.
fn ring_for(size: usize) -> usize {
    (size * 4 + 64).next_power_of_two().max(1 << 20)
}

/// What the measurements of one run share: the root of their channels, the options, and
/// the CPUs of parent and peer.
struct Runner<'a> {
    root: &'a Path,
    args: &'a BenchArgs,
    pins: Option<(usize, usize)>,
}

impl Runner<'_> {
    /// Round trips of `size`-byte messages through an echoing peer process.
    fn latency(&self, size: usize) -> CliResult<Latency> {
        let (root, args, pins) = (self.root, self.args, self.pins);
        let ch = channel("rtt");
        let (ping, pong) = (format!("{ch}.ping"), format!("{ch}.pong"));
        let strategy = args.wait.strategy();
        let mut sub = Subscriber::builder(&pong)
            .dir(root)
            .wait_strategy(strategy)
            .max_message_size(size)
            .build()?;
        let publisher = Publisher::builder(&ping)
            .dir(root)
            .wait_strategy(strategy)
            .max_message_size(size)
            .ring_capacity(ring_for(size))
            .build()?;
        let peer = Peer::spawn(root, "echo", &ch, args.wait, pins.map(|p| p.1), size)?;
        let _pin = pins.map(|p| pin_to(p.0));
        publisher.wait_for_subscribers(1, PEER_PATIENCE)?;
        sub.wait_for_publishers(1, PEER_PATIENCE)?;
        let mut hist = Histogram::<u64>::new(3).map_err(|e| Failure::runtime(e.to_string()))?;
        let mut msg = vec![0u8; size];
        let warmup = args.duration / 5;
        let start = Instant::now();
        let mut seq = 0u64;
        loop {
            let elapsed = start.elapsed();
            if elapsed >= warmup + args.duration {
                break;
            }
            seq += 1;
            stamp(&mut msg, seq);
            let t0 = Instant::now();
            publisher.publish(&msg)?;
            let reply = sub.recv_ref_timeout(PEER_PATIENCE)?;
            let ns = t0.elapsed().as_nanos() as u64;
            if reply.payload() != &msg[..] {
                return Err(Failure::runtime(format!(
                    "round trip {seq}: the echoed {size}-byte message differs from what was sent"
                )));
            }
            drop(reply);
            if elapsed >= warmup {
                let _ = hist.record(ns.max(1));
            }
        }
        publisher.publish(b"")?; // end
        peer.finish()?;
        Ok(Latency {
            p50: hist.value_at_quantile(0.5) as f64,
            p99: hist.value_at_quantile(0.99) as f64,
            p999: hist.value_at_quantile(0.999) as f64,
            samples: hist.len(),
        })
    }

    /// One-way rate of `size`-byte messages to the subscriber processes.
    fn throughput(&self, size: usize) -> CliResult<Throughput> {
        let (root, args, pins) = (self.root, self.args, self.pins);
        let ch = channel("tput");
        let publisher = Publisher::builder(&ch)
            .dir(root)
            .wait_strategy(args.wait.strategy())
            .max_message_size(size)
            .ring_capacity(ring_for(size))
            .on_full(OnFull::Block)
            .build()?;
        // One sink: pinned opposite the publisher. Several: the scheduler places them.
        let cpu = if args.subscribers == 1 {
            pins.map(|p| p.1)
        } else {
            None
        };
        let peers: Vec<Peer> = (0..args.subscribers)
            .map(|_| Peer::spawn(root, "sink", &ch, args.wait, cpu, size))
            .collect::<CliResult<_>>()?;
        let _pin = pins.map(|p| pin_to(p.0));
        publisher.wait_for_subscribers(args.subscribers, PEER_PATIENCE)?;
        let mut msg = vec![0u8; size];
        let start = Instant::now();
        let mut seq = 0u64;
        // Look at the clock every few messages only: a clock read costs as much as a small
        // message.
        while start.elapsed() < args.duration {
            for _ in 0..64 {
                seq += 1;
                stamp(&mut msg, seq);
                publisher.publish(&msg)?;
            }
        }
        publisher.publish(b"")?; // end
        let mut rates = Vec::new();
        for peer in peers {
            let line = peer.finish()?;
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            let [count, ns] = f[..] else {
                return Err(Failure::runtime(format!(
                    "bad report from a sink: {line:?}"
                )));
            };
            if count != seq {
                return Err(Failure::runtime(format!(
                    "a subscriber got {count} messages, the publisher sent {seq}"
                )));
            }
            rates.push(count as f64 / (ns.max(1) as f64 / 1e9));
        }
        Ok(Throughput {
            msgs_per_s: rates.iter().copied().fold(f64::INFINITY, f64::min),
            messages: seq,
        })
    }
}

/// `mmipc bench-peer`: the other end of a measurement.
pub(crate) fn peer(args: PeerArgs) -> CliResult {
    die_with_parent();
    if let Some(cpu) = args.cpu {
        let _ = pin_to(cpu);
    }
    let strategy = args.wait.strategy();
    match args.role.as_str() {
        "echo" => {
            let (ping, pong) = (
                format!("{}.ping", args.channel),
                format!("{}.pong", args.channel),
            );
            let mut sub = Subscriber::builder(&ping)
                .dir(&args.root)
                .wait_strategy(strategy)
                .max_message_size(mmipc::DEFAULT_MAX_MESSAGE_SIZE)
                .build()?;
            let publisher = Publisher::builder(&pong)
                .dir(&args.root)
                .wait_strategy(strategy)
                .ring_capacity(1 << 21)
                .build()?;
            publisher.wait_for_subscribers(1, PEER_PATIENCE)?;
            let mut n = 0u64;
            loop {
                let msg = sub.recv_ref_timeout(PEER_PATIENCE)?;
                if msg.is_empty() {
                    break;
                }
                publisher.publish(msg.payload())?;
                n += 1;
            }
            println!("{n}");
        }
        "sink" => {
            let mut sub = Subscriber::builder(&args.channel)
                .dir(&args.root)
                .wait_strategy(strategy)
                .max_message_size(mmipc::DEFAULT_MAX_MESSAGE_SIZE)
                .build()?;
            let mut count = 0u64;
            let mut first = None;
            loop {
                let msg = sub.recv_ref_timeout(PEER_PATIENCE)?;
                if msg.is_empty() {
                    break;
                }
                first.get_or_insert_with(Instant::now);
                count += 1;
                if !is_stamped(msg.payload(), args.size, count) {
                    return Err(Failure::runtime(format!(
                        "message {count} arrived damaged, out of order, or after a lost one"
                    )));
                }
            }
            let ns = first.map_or(0, |t| t.elapsed().as_nanos() as u64);
            println!("{count} {ns}");
        }
        other => return Err(Failure::usage(format!("unknown peer role {other:?}"))),
    }
    Ok(())
}
