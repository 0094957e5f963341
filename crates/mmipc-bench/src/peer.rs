//! The peer processes: what the harness re-executes itself as (`mmipc-bench peer <json>`).
//!
//! A peer prints JSON lines on stdout. A responder: `ready` once listening (the harness starts
//! the initiator only then), `accepted` once the initiator is connected, `done` with its
//! counts. An initiator: `connected`, then it waits for a `go` line on stdin, which the
//! harness writes once every responder has accepted (so that all ends are attached before
//! anything is timed or sent), then `done`; then it waits for the harness to close its stdin
//! before it drops its end of the link, so that nothing it sent is torn down before the
//! responders have read it.

use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::os;
use crate::payload::{STOP, StreamCheck, Taken, check_echo, end_marker, fill, mix, write_sampled};
use crate::transport::{LinkSpec, Transport, with_transport};

mod life;

/// What a peer process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Responder: echoes every message until [`STOP`].
    Echo,
    /// Initiator: sends a message, waits for its echo, records the round trip.
    Ping,
    /// Initiator: sends messages as fast as it can, then the end marker.
    Send,
    /// Responder: receives, checks and counts until the end marker.
    Receive,
    /// Initiator: sends [`PeerSpec::count`] messages, then the end marker, and reports its
    /// memory use.
    MemSend,
    /// Responder: receives and checks until the end marker, then reports its memory use
    /// (and, for mmipc, the segment files of the channel).
    MemRecv,
    /// A publisher that publishes one message as soon as a subscriber connects: mmipc when
    /// its `Connected` event arrives; iceoryx2 every ~0.1 ms until a send reaches one.
    ConnectPub,
    /// A new subscriber: the time it starts building its subscriber and the time it holds
    /// its first message.
    ConnectSub,
    /// An mmipc publisher that, once connected, waits for its subscriber's `Disconnected`.
    CrashPub,
    /// An mmipc subscriber that, once connected, waits for its publisher's `Disconnected`.
    CrashSub,
    /// An mmipc publisher that waits for [`LinkSpec::receivers`] subscribers and publishes
    /// one message.
    FanPub,
    /// [`LinkSpec::receivers`] mmipc subscribers in one process, each waiting for one
    /// message.
    FanSubs,
    /// An mmipc publisher, connected and silent for `measure_ms`: its CPU time.
    IdlePub,
    /// An mmipc subscriber blocked in `recv_timeout(measure_ms)` with nothing sent: its CPU
    /// time.
    IdleSub,
}

impl Role {
    /// Whether this role starts after, and connects to, the responders.
    pub fn is_initiator(self) -> bool {
        matches!(self, Role::Ping | Role::Send | Role::MemSend)
    }

    /// Whether the process waits for the harness on its stdin (a `go` line, or the end of
    /// input once the measurement is over).
    pub fn reads_stdin(self) -> bool {
        self.is_initiator()
            || matches!(
                self,
                Role::ConnectPub | Role::FanPub | Role::FanSubs | Role::IdlePub
            )
    }
}

/// Everything a peer process is told, as JSON on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSpec {
    /// What to do.
    pub role: Role,
    /// The link to set up.
    pub link: LinkSpec,
    /// CPU to pin the whole process to.
    pub cpu: Option<usize>,
    /// Ping: round trips in this first part are not recorded. Receive: not counted.
    pub warm_ms: u64,
    /// Measured part after the warm-up.
    pub measure_ms: u64,
    /// The process ends itself after this long, whatever happens.
    pub limit_ms: u64,
    /// For an initiator: what each responder's `listen` returned.
    pub peers: Vec<String>,
    /// Messages to send, for [`Role::MemSend`].
    #[serde(default)]
    pub count: u64,
    /// Ping: pause between two round trips, µs (0: back to back).
    #[serde(default)]
    pub gap_us: u64,
    /// Ping: check echoes as a stream (sequence words; every 1024th message whole) instead
    /// of comparing each whole.
    #[serde(default)]
    pub sampled_check: bool,
}

/// A line a peer prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerLine {
    /// Responder: listening; `info` is for the initiator.
    Ready {
        /// Address or empty.
        info: String,
    },
    /// Responder: the initiator is connected.
    Accepted,
    /// Initiator: connected to every responder; waiting for `go` on stdin.
    Connected,
    /// Finished.
    Done(PeerResult),
}

/// What a peer reports when it has finished.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerResult {
    /// Echo: messages echoed.
    Echoed {
        /// Messages echoed (not counting [`STOP`]).
        count: u64,
        /// What the echoing thread used over all of them.
        #[serde(default)]
        cpu: os::Usage,
    },
    /// Ping: round trips, warm-up included, and the histogram of the measured ones (ns), as
    /// (value, count) pairs.
    Pinged {
        /// Round trips made.
        count: u64,
        /// Recorded values.
        hist: Vec<(u64, u64)>,
        /// What the pinging thread used over all round trips.
        #[serde(default)]
        cpu: os::Usage,
    },
    /// Send: messages sent and their checksum, and the process's CPU time after the
    /// warm-up.
    Sent {
        /// Messages sent (not counting the end marker).
        count: u64,
        /// Checksum over them.
        sum: u64,
        /// Messages sent after the warm-up.
        #[serde(default)]
        measured: u64,
        /// CPU time (user + system) of this whole process while sending them, ns.
        #[serde(default)]
        cpu_ns: u64,
    },
    /// Receive: messages received and checked, their checksum, and the rate after the
    /// warm-up.
    Received {
        /// Messages received.
        count: u64,
        /// Checksum over them.
        sum: u64,
        /// Messages received after the warm-up.
        measured_msgs: u64,
        /// Time from the end of the warm-up to the end marker.
        measured_ns: u64,
    },
    /// A moment, on CLOCK_MONOTONIC (ns): when the publisher saw `Connected`.
    Stamp {
        /// [`os::mono_ns`] at that moment.
        ns: u64,
    },
    /// A new subscriber: when it started building its subscriber, and when it held its
    /// first message (CLOCK_MONOTONIC, ns).
    Connect {
        /// Just before the subscriber (or iceoryx2 node) is built.
        start_ns: u64,
        /// Just after the first message was received.
        first_ns: u64,
    },
    /// The peer's `Disconnected` event: when (CLOCK_MONOTONIC, ns) and why.
    Disconnected {
        /// [`os::mono_ns`] when the event arrived.
        ns: u64,
        /// The `DisconnectReason`, as `{:?}`.
        reason: String,
    },
    /// Memory use after a run of messages.
    Memory {
        /// Messages sent or received (not counting the end marker).
        count: u64,
        /// Checksum over them.
        sum: u64,
        /// This process's resident memory.
        mem: os::MemUse,
        /// The mmipc channel's segment files, as the receiver saw them (empty otherwise).
        segments: Vec<os::Segment>,
    },
    /// CPU time used while idle.
    Idle {
        /// User + system CPU time of the whole process over the idle period.
        cpu_ns: u64,
        /// Length of the idle period.
        wall_ns: u64,
    },
    /// Messages received, for [`Role::FanSubs`].
    Count {
        /// One per subscriber.
        messages: u64,
    },
}

/// Entry point of a peer process.
pub fn main(spec_json: &str) -> Result<()> {
    let spec: PeerSpec = serde_json::from_str(spec_json).context("peer specification")?;
    os::peer_watchdog(Duration::from_millis(spec.limit_ms));
    if let Some(cpu) = spec.cpu {
        mmipc_benchkit::os::pin_to(cpu).with_context(|| format!("pin to CPU {cpu}"))?;
    }
    match spec.role {
        Role::ConnectPub | Role::ConnectSub if spec.link.mech.is_mmipc() => {
            life::connect_mmipc(&spec)
        }
        Role::ConnectPub | Role::ConnectSub => life::connect_iox2(&spec),
        Role::CrashPub | Role::CrashSub => life::crash(&spec),
        Role::FanPub | Role::FanSubs => life::fan(&spec),
        Role::IdlePub | Role::IdleSub => life::idle(&spec),
        _ => with_transport!(spec.link.mech, run(&spec)),
    }
}

fn say(line: &PeerLine) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush().context("stdout")
}

fn run<T: Transport>(spec: &PeerSpec) -> Result<()> {
    let link = &spec.link;
    let warm = Duration::from_millis(spec.warm_ms);
    let measure = Duration::from_millis(spec.measure_ms);
    if spec.role.is_initiator() {
        let mut t = T::connect(link, &spec.peers)?;
        say(&PeerLine::Connected)?;
        let mut stdin = std::io::stdin().lock();
        let mut go = String::new();
        stdin.read_line(&mut go).context("waiting for go")?;
        anyhow::ensure!(go.trim() == "go", "the harness did not say go");
        let result = match spec.role {
            Role::Ping => {
                let gap = Duration::from_micros(spec.gap_us);
                ping(
                    &mut t,
                    link.size,
                    (warm, measure),
                    (gap, spec.sampled_check),
                )?
            }
            Role::MemSend => send_count(&mut t, link.size, spec.count)?,
            _ => send(&mut t, link.size, (warm, measure))?,
        };
        say(&PeerLine::Done(result))?;
        // The harness closes stdin once every responder is done.
        let mut rest = Vec::new();
        stdin
            .read_to_end(&mut rest)
            .context("waiting for the harness")?;
        drop(t);
    } else {
        let (pending, info) = T::listen(link)?;
        say(&PeerLine::Ready { info })?;
        let mut t = T::accept(pending, link)?;
        say(&PeerLine::Accepted)?;
        let result = match spec.role {
            Role::Echo => echo(&mut t)?,
            Role::MemRecv => receive_all(&mut t, link)?,
            _ => receive(&mut t, link.size, warm)?,
        };
        say(&PeerLine::Done(result))?;
    }
    Ok(())
}

/// Fewest round trips a ping-pong records unless it runs out of time.
const MIN_RECORDED: u64 = 100;

fn new_hist() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram")
}

/// How long past its planned end a round-trip run goes on while it has recorded nothing
/// (well below the harness's `RUN_SLACK`).
const STARVED_LIMIT: Duration = Duration::from_secs(10);

/// Ping-pong, initiator side. Every message has a fresh pattern and comes back compared
/// byte for byte; or, if `sampled`, as a stream would ([`write_sampled`], [`StreamCheck`]):
/// only every [`SAMPLE_EVERY`](crate::payload::SAMPLE_EVERY)th whole, the others by their
/// sequence words, so that reading the echo does not pull every byte of it into this CPU's
/// cache. The clock stops before the check; `gap` is a pause after each round trip.
fn ping<T: Transport>(
    t: &mut T,
    size: usize,
    (warm, measure): (Duration, Duration),
    (gap, sampled): (Duration, bool),
) -> Result<PeerResult> {
    let mut hist = new_hist()?;
    let mut stream = sampled.then(|| StreamCheck::new(size));
    let before = os::Usage::thread();
    let mut buf = vec![0u8; size];
    let start = Instant::now();
    let (warm_end, end) = (start + warm, start + warm + measure);
    let mut seq = 0u64;
    loop {
        match sampled {
            true => write_sampled(&mut buf, seq),
            false => fill(&mut buf, seq),
        }
        let t0 = Instant::now();
        t.send(&buf)?;
        let (t1, checked) = t.recv(|echo| {
            let t1 = Instant::now();
            match &mut stream {
                Some(stream) => (t1, stream.take(echo).map(drop)),
                None => (t1, check_echo(echo, &buf, seq)),
            }
        })?;
        checked?;
        if t0 >= warm_end {
            hist.saturating_record((t1 - t0).as_nanos() as u64);
        }
        seq += 1;
        // Past the end, stop once enough round trips are recorded (a loaded machine can
        // stall one for longer than the whole measurement), or at twice the planned time if
        // at least one was; with none recorded (every round trip after the warm-up starved
        // by other load), go on up to STARVED_LIMIT rather than fail the row for nothing.
        if t1 >= end
            && (hist.len() >= MIN_RECORDED
                || (t1 >= end + warm + measure && !hist.is_empty())
                || t1 >= end + STARVED_LIMIT)
        {
            break;
        }
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    let cpu = os::Usage::thread().since(before);
    t.send(STOP)?;
    let hist = hist
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    Ok(PeerResult::Pinged {
        count: seq,
        hist,
        cpu,
    })
}

fn echo<T: Transport>(t: &mut T) -> Result<PeerResult> {
    let before = os::Usage::thread();
    let mut count = 0;
    while t.echo()? {
        count += 1;
    }
    let cpu = os::Usage::thread().since(before);
    Ok(PeerResult::Echoed { count, cpu })
}

/// How many messages between two looks at the clock in a throughput loop.
fn clock_every(size: usize) -> u64 {
    ((1usize << 20) / size.max(1)).clamp(1, 1024) as u64
}

/// One-way, sender side: as many messages as fit in `warm` + `measure`, then the end
/// marker. Each message is written by [`write_sampled`] into the sender's buffer, or in
/// place into the mechanism's loan ([`Transport::send_with`]). The CPU time of the whole
/// process is read at the first look at the clock past `warm` and at the end (before the end
/// marker), for the messages in between.
fn send<T: Transport>(
    t: &mut T,
    size: usize,
    (warm, measure): (Duration, Duration),
) -> Result<PeerResult> {
    let mut buf = vec![0u8; size];
    let every = clock_every(size);
    let start = Instant::now();
    let (warm_end, end) = (start + warm, start + warm + measure);
    let mut from: Option<(u64, os::Usage)> = None;
    let (mut seq, mut sum) = (0u64, 0u64);
    loop {
        t.send_with(&mut buf, |b| write_sampled(b, seq))?;
        sum = sum.wrapping_add(mix(seq, size));
        seq += 1;
        if seq.is_multiple_of(every) {
            let now = Instant::now();
            if from.is_none() && now >= warm_end {
                from = Some((seq, os::Usage::process()));
            }
            if now >= end {
                break;
            }
        }
    }
    let (measured, cpu_ns) = match from {
        Some((n0, u0)) => (seq - n0, os::Usage::process().since(u0).cpu_ns),
        None => (0, 0),
    };
    t.send(&end_marker(seq, sum))?;
    Ok(PeerResult::Sent {
        count: seq,
        sum,
        measured,
        cpu_ns,
    })
}

/// One-way, sender side, for the memory figures: `count` messages, then the end marker; then
/// this process's memory use.
fn send_count<T: Transport>(t: &mut T, size: usize, count: u64) -> Result<PeerResult> {
    let mut buf = vec![0u8; size];
    let mut sum = 0u64;
    for seq in 0..count {
        fill(&mut buf, seq);
        t.send(&buf)?;
        sum = sum.wrapping_add(mix(seq, size));
    }
    t.send(&end_marker(count, sum))?;
    Ok(PeerResult::Memory {
        count,
        sum,
        mem: os::mem_use()?,
        segments: Vec::new(),
    })
}

/// One-way, receiver side, for the memory figures: checks every message up to the end
/// marker, then reports this process's memory use and (mmipc) the channel's segment files,
/// while the sender still holds its end.
fn receive_all<T: Transport>(t: &mut T, link: &LinkSpec) -> Result<PeerResult> {
    let mut check = StreamCheck::new(link.size);
    while let Taken::Message = t.recv(|msg| check.take(msg))?? {}
    let segments = match link.mech.is_mmipc() {
        true => os::segments(&link.dir.join(format!("{}-down", link.name)))?,
        false => Vec::new(),
    };
    Ok(PeerResult::Memory {
        count: check.next,
        sum: check.sum,
        mem: os::mem_use()?,
        segments,
    })
}

/// One-way, receiver side: checks every message; the rate counts from `warm` after the
/// first message to the end marker.
fn receive<T: Transport>(t: &mut T, size: usize, warm: Duration) -> Result<PeerResult> {
    let mut check = StreamCheck::new(size);
    let every = clock_every(size);
    let mut first = None;
    let mut start: Option<(Instant, u64)> = None;
    loop {
        match t.recv(|msg| check.take(msg))?? {
            Taken::End => break,
            Taken::Message => {
                let n = check.next;
                if start.is_none() && (n == 1 || n.is_multiple_of(every)) {
                    let now = Instant::now();
                    let first = *first.get_or_insert(now);
                    if now - first >= warm {
                        start = Some((now, n));
                    }
                }
            }
        }
    }
    let now = Instant::now();
    let (t0, n0) = start.or(first.map(|f| (f, 1))).unwrap_or((now, 0));
    Ok(PeerResult::Received {
        count: check.next,
        sum: check.sum,
        measured_msgs: check.next - n0,
        measured_ns: (now - t0).as_nanos() as u64,
    })
}
