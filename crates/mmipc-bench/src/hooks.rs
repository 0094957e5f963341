//! Rows beyond round trips and throughput, each behind a function that returns rows for the
//! report: connection set-up, crash detection, memory, idle CPU.
//!
//! Each row holds scalar samples, one per round and mechanism, each from fresh peer
//! processes (roles in `crate::peer`, with the same watchdogs as the others), in a private
//! directory from `Ctx::fresh`; they are rendered as a table per `group` and go into the
//! JSON like the measured rows:
//!
//! ```ignore
//! let mut row = Row::scalar("connect-ms", "life cycle", "new subscriber → Connected", "ms", false);
//! row.add(Mech::MmipcDefault, Ok(Sample::Scalar(1.8)));
//! ```
//!
//! mmipc endpoints here have the library's default options (default wait strategy, 256 KiB
//! rings, heartbeat 1 s, peer timeout 5 s); times between processes are taken on
//! CLOCK_MONOTONIC, which every process reads alike.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use mmipc_benchkit::units::fmt_size;

use crate::harness::{Ctx, EXIT_TIMEOUT, Peers, READY_TIMEOUT, RUN_SLACK, Settings};
use crate::os::{MemUse, Segment};
use crate::peer::{PeerLine, PeerResult, PeerSpec, Role};
use crate::rows::{Group, IDLE, LIFE_CYCLE, MEMORY, Row, SOFTWARE, Sample};
use crate::transport::{LinkSpec, Mech, Pattern, SETUP_TIMEOUT};

/// Messages the memory rows exchange before reading the processes' memory.
pub const MEMORY_MESSAGES: u64 = 10_000;
/// Size of those messages, and of the messages of the other rows here.
pub const MEMORY_SIZE: usize = 64;
/// Subscribers of the one publisher whose shared memory is totalled.
pub const FAN_SUBSCRIBERS: usize = 16;
/// Pause between "both connected" and the `kill -9`, so that the connection is at rest.
const CRASH_SETTLE: Duration = Duration::from_millis(10);

/// A peer's task for the rows here.
fn spec(
    role: Role,
    link: &LinkSpec,
    cpu: Option<usize>,
    measure: Duration,
    count: u64,
) -> PeerSpec {
    let limit = READY_TIMEOUT + 2 * SETUP_TIMEOUT + measure + RUN_SLACK;
    PeerSpec {
        role,
        link: link.clone(),
        cpu,
        warm_ms: 0,
        measure_ms: measure.as_millis() as u64,
        limit_ms: limit.as_millis() as u64,
        peers: Vec::new(),
        count,
        gap_us: 0,
        sampled_check: false,
    }
}

/// A one-way link of `mech` in `dir`, with the library's default ring size.
fn link(mech: Mech, dir: &Path, name: String, receivers: usize) -> LinkSpec {
    LinkSpec {
        mech,
        pattern: Pattern::OneWay,
        size: MEMORY_SIZE,
        receivers,
        dir: dir.to_path_buf(),
        name,
        index: 0,
        mmipc_ring: None,
        spin_window_ns: None,
    }
}

/// Runs `f` with a fresh private directory and name, removed afterwards.
fn fresh<T>(ctx: &Ctx, f: impl FnOnce(&Path, String) -> Result<T>) -> Result<T> {
    let (dir, name) = ctx.fresh()?;
    let result = f(&dir, name);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Starts the process of `roles[0]` (the one that is there first, on the responders' CPU)
/// and waits until it is ready, then that of `roles[1]` (the newcomer, on the initiator's
/// CPU), told what the first's ready line said. Returns the peers and their two indices.
fn start_pair(ctx: &Ctx, link: &LinkSpec, roles: [Role; 2]) -> Result<(Peers, usize, usize)> {
    start_pair_for(ctx, link, roles, Duration::ZERO, 0)
}

/// [`start_pair`] with a measured time and a message count for the peers.
fn start_pair_for(
    ctx: &Ctx,
    link: &LinkSpec,
    roles: [Role; 2],
    measure: Duration,
    count: u64,
) -> Result<(Peers, usize, usize)> {
    let mut peers = Peers::new();
    let name = |role: Role| format!("{} {role:?} peer", link.mech.id());
    let cpu = ctx.cpus.map(|c| c.1);
    let first = spec(roles[0], link, cpu, measure, 0);
    let first = peers.spawn(ctx.exe(), &first, name(roles[0]))?;
    let info = ready(&mut peers, first)?;
    let mut newcomer = spec(roles[1], link, ctx.cpus.map(|c| c.0), measure, count);
    newcomer.peers = vec![info];
    let second = peers.spawn(ctx.exe(), &newcomer, name(roles[1]))?;
    Ok((peers, first, second))
}

/// Rows of scalar figures of `group` in `unit`, less being better, from (id, title).
fn scalar_rows<const N: usize>(group: &str, unit: &str, rows: [(&str, String); N]) -> [Row; N] {
    rows.map(|(id, title)| Row::scalar(id, group, &title, unit, false))
}

/// Waits for the `ready` line of peer `id`.
fn ready(peers: &mut Peers, id: usize) -> Result<String> {
    match peers.next(id, Instant::now() + READY_TIMEOUT)? {
        PeerLine::Ready { info } => Ok(info),
        other => bail!("expected a ready line, got {other:?}"),
    }
}

fn ms(from_ns: u64, to_ns: u64) -> Result<f64> {
    ensure!(
        to_ns >= from_ns,
        "the later moment ({to_ns} ns) comes before the earlier ({from_ns} ns)"
    );
    Ok((to_ns - from_ns) as f64 / 1e6)
}

/// Prints a progress line like those of the measured rows.
fn progress(started: Instant, what: &str, round: usize, s: &Settings, mech: Mech, got: &str) {
    eprintln!(
        "[ + ] {:>5.0} s  {what:<14} round {}/{}  {:<14} {got}",
        started.elapsed().as_secs_f64(),
        round + 1,
        s.rounds,
        mech.id(),
    );
}

fn outcome_text<T: std::fmt::Debug>(r: &Result<T>) -> String {
    match r {
        Ok(v) => format!("{v:.3?}"),
        Err(e) => format!("FAILED: {e:#}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Software path
// ---------------------------------------------------------------------------------------------

/// Messages per round of the software-path row.
const SOFTWARE_MESSAGES: u32 = 1_000_000;

/// The part of a round trip that is not the hardware's hand-off between CPUs: a 64-byte
/// message sent and received in one thread, both ends in this process, with the calls of the
/// round-trip rows (mmipc: `publish` then the copying `recv`, spinning; the floor: its
/// `send` then `recv` copying the bytes out, as its echo does). Nothing crosses a CPU, the
/// data stays in the cache: what is left is instructions. A round trip has two of these on
/// its critical path (one per direction), so twice the difference between two mechanisms
/// here is what their software adds to the round trip beyond the hand-offs.
pub fn software_path(ctx: &Ctx, s: &Settings) -> Result<Vec<Row>> {
    let mechs = s.mechs_among(&[Mech::MmipcSpin, Mech::Floor]);
    if !s.wants(Group::Latency) || mechs.is_empty() {
        return Ok(Vec::new());
    }
    #[rustfmt::skip]
    let [mut row] = scalar_rows(SOFTWARE, "ns", [
        ("software-64-ns", format!("{} sent and received in one thread, per message", fmt_size(MEMORY_SIZE))),
    ]);
    let started = Instant::now();
    for round in 0..s.rounds {
        for &mech in &mechs {
            let outcome = fresh(ctx, |dir, name| software_once(mech, dir, name));
            progress(started, "software", round, s, mech, &outcome_text(&outcome));
            row.add(
                mech,
                outcome.map(Sample::Scalar).map_err(|e| format!("{e:#}")),
            );
        }
    }
    Ok(vec![row])
}

/// ns per message of one in-thread run.
fn software_once(mech: Mech, dir: &Path, name: String) -> Result<f64> {
    let msg: Vec<u8> = (0..MEMORY_SIZE).map(|i| i as u8).collect();
    let mut copy = vec![0u8; MEMORY_SIZE];
    let time = |mut one: Box<dyn FnMut() -> Result<()> + '_>| -> Result<f64> {
        for _ in 0..SOFTWARE_MESSAGES / 10 {
            one()?;
        }
        let start = Instant::now();
        for _ in 0..SOFTWARE_MESSAGES {
            one()?;
        }
        Ok(start.elapsed().as_nanos() as f64 / f64::from(SOFTWARE_MESSAGES))
    };
    let ns = match mech {
        Mech::MmipcSpin => {
            let mut sub = mmipc::Subscriber::builder(&name)
                .dir(dir)
                .wait_strategy(mmipc::WaitStrategy::Spin)
                .build()?;
            let publisher = mmipc::Publisher::builder(&name)
                .dir(dir)
                .deliver_to_same_process(true)
                .wait_strategy(mmipc::WaitStrategy::Spin)
                .build()?;
            publisher.wait_for_subscribers(1, SETUP_TIMEOUT)?;
            sub.wait_for_publishers(1, SETUP_TIMEOUT)?;
            time(Box::new(|| {
                publisher.publish(&msg)?;
                let got = sub.recv();
                ensure!(got.payload() == msg, "got {} bytes back", got.len());
                Ok(())
            }))?
        }
        Mech::Floor => {
            use crate::transport::{Floor, Transport};
            let spec = LinkSpec {
                pattern: Pattern::PingPong,
                ..link(mech, dir, name, 1)
            };
            let (a, _) = Floor::listen(&spec)?;
            let mut a = Floor::accept(a, &spec)?;
            let mut b = Floor::connect(&spec, &[])?;
            time(Box::new(|| {
                a.send(&msg)?;
                b.recv(|got| copy.copy_from_slice(got))?;
                ensure!(copy == msg, "got other bytes back");
                Ok(())
            }))?
        }
        other => bail!("no in-thread run for {}", other.id()),
    };
    Ok(ns)
}

// ---------------------------------------------------------------------------------------------
// Connect
// ---------------------------------------------------------------------------------------------

/// Time from a new subscriber process starting to build its subscriber to (i) its first
/// message in hand, (ii) the publisher's `Connected` event (mmipc), per mechanism. The
/// publisher runs in a process of its own, started first; the mmipc one publishes as soon
/// as `Connected` arrives, the iceoryx2 one sends every ~0.1 ms until a send reaches the
/// subscriber (which polls).
pub fn connect_time(ctx: &Ctx, s: &Settings) -> Result<Vec<Row>> {
    let mechs = s.mechs_among(&[Mech::MmipcDefault, Mech::Iox2Poll]);
    if !s.wants(Group::Lifecycle) || mechs.is_empty() {
        return Ok(Vec::new());
    }
    #[rustfmt::skip]
    let [mut first, mut event] = scalar_rows(LIFE_CYCLE, "ms", [
        ("connect-first-message-ms", "new subscriber process → first message in hand".into()),
        ("connect-publisher-event-ms", "new subscriber process → publisher's `Connected`".into()),
    ]);
    let started = Instant::now();
    for round in 0..s.rounds {
        for k in 0..mechs.len() {
            let mech = mechs[(k + round) % mechs.len()];
            let outcome = fresh(ctx, |dir, name| connect_once(ctx, mech, dir, name));
            progress(started, "connect", round, s, mech, &outcome_text(&outcome));
            match outcome {
                Ok((f, e)) => {
                    first.add(mech, Ok(Sample::Scalar(f)));
                    if let Some(e) = e {
                        event.add(mech, Ok(Sample::Scalar(e)));
                    }
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    if mech.is_mmipc() {
                        event.add(mech, Err(e.clone()));
                    }
                    first.add(mech, Err(e));
                }
            }
        }
    }
    let mut rows = vec![first];
    if !event.cells.is_empty() {
        rows.push(event);
    }
    Ok(rows)
}

/// One connection: (ms to the first message, ms to the publisher's `Connected`).
fn connect_once(ctx: &Ctx, mech: Mech, dir: &Path, name: String) -> Result<(f64, Option<f64>)> {
    let link = link(mech, dir, name, 1);
    let (mut peers, p, sub) = start_pair(ctx, &link, [Role::ConnectPub, Role::ConnectSub])?;
    let deadline = Instant::now() + 2 * SETUP_TIMEOUT;
    let (start, first) = match peers.done(sub, deadline)? {
        PeerResult::Connect { start_ns, first_ns } => (start_ns, first_ns),
        other => bail!("the subscriber reported {other:?}"),
    };
    let event = match mech.is_mmipc() {
        true => match peers.done(p, deadline)? {
            PeerResult::Stamp { ns } => Some(ms(start, ns)?),
            other => bail!("the publisher reported {other:?}"),
        },
        false => None,
    };
    peers.finish(Instant::now() + EXIT_TIMEOUT)?;
    Ok((ms(start, first)?, event))
}

// ---------------------------------------------------------------------------------------------
// Crash
// ---------------------------------------------------------------------------------------------

/// Time from `kill -9` of a publisher process to its subscriber's `Disconnected { Crashed }`
/// event, and of a subscriber process to its publisher's (mmipc; detection comes from the
/// dead process's lock file being released, not from the 5 s peer timeout).
pub fn crash_detection(ctx: &Ctx, s: &Settings) -> Result<Vec<Row>> {
    let mech = Mech::MmipcDefault;
    if !s.wants(Group::Lifecycle) || !s.mechs.contains(&mech) {
        return Ok(Vec::new());
    }
    #[rustfmt::skip]
    let mut rows = scalar_rows(LIFE_CYCLE, "ms", [
        ("crash-publisher-ms", "`kill -9` publisher → subscriber's `Disconnected(Crashed)`".into()),
        ("crash-subscriber-ms", "`kill -9` subscriber → publisher's `Disconnected(Crashed)`".into()),
    ]);
    let started = Instant::now();
    for round in 0..s.rounds {
        for k in 0..2 {
            let kill_publisher = (k + round) % 2 == 0;
            let outcome = fresh(ctx, |dir, name| crash_once(ctx, kill_publisher, dir, name));
            let what = match kill_publisher {
                true => "kill publisher",
                false => "kill subscriber",
            };
            progress(started, what, round, s, mech, &outcome_text(&outcome));
            let row = &mut rows[usize::from(!kill_publisher)];
            row.add(
                mech,
                outcome.map(Sample::Scalar).map_err(|e| format!("{e:#}")),
            );
        }
    }
    Ok(rows.into())
}

/// One crash: ms from the kill to the survivor's event.
fn crash_once(ctx: &Ctx, kill_publisher: bool, dir: &Path, name: String) -> Result<f64> {
    let link = link(Mech::MmipcDefault, dir, name, 1);
    let (mut peers, p, sub) = start_pair(ctx, &link, [Role::CrashPub, Role::CrashSub])?;
    let deadline = Instant::now() + 2 * SETUP_TIMEOUT;
    peers.expect(p, &PeerLine::Accepted, deadline)?;
    peers.expect(sub, &PeerLine::Accepted, deadline)?;
    std::thread::sleep(CRASH_SETTLE);
    let (victim, survivor) = match kill_publisher {
        true => (p, sub),
        false => (sub, p),
    };
    let killed = peers.kill9(victim)?;
    let took = match peers.done(survivor, Instant::now() + 2 * SETUP_TIMEOUT)? {
        PeerResult::Disconnected { ns, reason } => {
            ensure!(
                reason == "Crashed",
                "the survivor saw its peer leave as {reason}, not Crashed"
            );
            ms(killed, ns)?
        }
        other => bail!("the survivor reported {other:?}"),
    };
    peers.finish(Instant::now() + EXIT_TIMEOUT)?;
    Ok(took)
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

/// What one publisher/subscriber pair used after [`MEMORY_MESSAGES`] messages.
#[derive(Debug)]
struct PairMemory {
    publisher: MemUse,
    subscriber: MemUse,
    /// mmipc: the channel's segment files.
    segments: Vec<Segment>,
}

/// Memory: the shared memory of one mmipc connection (ring and doorbell segment files) and
/// of one publisher with [`FAN_SUBSCRIBERS`] subscribers; the resident memory of a
/// publisher and a subscriber process after [`MEMORY_MESSAGES`] messages of
/// [`MEMORY_SIZE`] bytes (mmipc with default options, iceoryx2 with the harness's
/// configuration).
pub fn memory(ctx: &Ctx, s: &Settings) -> Result<Vec<Row>> {
    let mechs = s.mechs_among(&[Mech::MmipcDefault, Mech::Iox2Poll]);
    if !s.wants(Group::Memory) || mechs.is_empty() {
        return Ok(Vec::new());
    }
    let after = "after 10,000 × 64 B";
    #[rustfmt::skip]
    let kib_rows = [
        ("rss-publisher-kib", format!("publisher process VmRSS {after}")),
        ("rss-shmem-publisher-kib", "… of which RssShmem (shared memory touched)".into()),
        ("rss-subscriber-kib", format!("subscriber process VmRSS {after}")),
        ("rss-shmem-subscriber-kib", "… of which RssShmem (shared memory touched)".into()),
        ("shm-mapped-publisher-kib", "/dev/shm mapped by the publisher process (1 subscriber)".into()),
        ("shm-mapped-subscriber-kib", "/dev/shm mapped by the subscriber process".into()),
        ("shm-ring-kib", "ring segment file per connection (size)".into()),
        ("shm-connection-allocated-kib", format!("one connection in tmpfs (ring + doorbell, pages allocated {after})")),
    ];
    let [
        mut rss_pub,
        mut shmem_pub,
        mut rss_sub,
        mut shmem_sub,
        mut map_pub,
        mut map_sub,
        mut ring,
        mut conn,
    ] = scalar_rows(MEMORY, "KiB", kib_rows);
    #[rustfmt::skip]
    let [mut bell, mut fan] = [
        ("shm-doorbell-bytes", "doorbell segment file per subscriber (size)", "B"),
        ("shm-1-publisher-16-subscribers-mib", "1 publisher + 16 subscribers: rings and doorbells, in whole pages", "MiB"),
    ].map(|(id, title, unit)| Row::scalar(id, MEMORY, title, unit, false));
    let started = Instant::now();
    let kib = |bytes: u64| bytes as f64 / 1024.0;
    for round in 0..s.rounds {
        for k in 0..mechs.len() {
            let mech = mechs[(k + round) % mechs.len()];
            let outcome = fresh(ctx, |dir, name| pair_once(ctx, mech, dir, name));
            progress(
                started,
                "memory",
                round,
                s,
                mech,
                &match &outcome {
                    Ok(m) => format!(
                        "publisher VmRSS {} KiB, subscriber VmRSS {} KiB",
                        m.publisher.rss_kib, m.subscriber.rss_kib
                    ),
                    Err(e) => format!("FAILED: {e:#}"),
                },
            );
            let m = match outcome {
                Ok(m) => m,
                Err(e) => {
                    let e = format!("{e:#}");
                    for row in [&mut rss_pub, &mut rss_sub] {
                        row.add(mech, Err(e.clone()));
                    }
                    continue;
                }
            };
            let put = |row: &mut Row, v: f64| row.add(mech, Ok(Sample::Scalar(v)));
            put(&mut rss_pub, m.publisher.rss_kib as f64);
            put(&mut shmem_pub, m.publisher.shmem_kib as f64);
            put(&mut rss_sub, m.subscriber.rss_kib as f64);
            put(&mut shmem_sub, m.subscriber.shmem_kib as f64);
            put(&mut map_pub, m.publisher.shm_mapped_kib as f64);
            put(&mut map_sub, m.subscriber.shm_mapped_kib as f64);
            if mech.is_mmipc() {
                let size = |f: fn(&Segment) -> bool| -> u64 {
                    m.segments.iter().filter(|g| f(g)).map(|g| g.bytes).sum()
                };
                put(&mut ring, kib(size(Segment::is_ring)));
                put(&mut bell, size(Segment::is_bell) as f64);
                let allocated = m.segments.iter().map(|g| g.allocated).sum();
                put(&mut conn, kib(allocated));
                let total = fresh(ctx, |dir, name| fan_once(ctx, dir, name));
                progress(
                    started,
                    "memory 1→16",
                    round,
                    s,
                    mech,
                    &outcome_text(&total),
                );
                fan.add(
                    mech,
                    total
                        .map(|b| Sample::Scalar(b as f64 / (1 << 20) as f64))
                        .map_err(|e| format!("{e:#}")),
                );
            }
        }
    }
    Ok([
        rss_pub, shmem_pub, rss_sub, shmem_sub, map_pub, map_sub, ring, bell, conn, fan,
    ]
    .into_iter()
    .filter(|r| !r.cells.is_empty())
    .collect())
}

/// A publisher process sends [`MEMORY_MESSAGES`] to a subscriber process; both report
/// their memory, the subscriber also the channel's segment files.
fn pair_once(ctx: &Ctx, mech: Mech, dir: &Path, name: String) -> Result<PairMemory> {
    let link = link(mech, dir, name, 1);
    let (mut peers, sub, p) = start_pair_for(
        ctx,
        &link,
        [Role::MemRecv, Role::MemSend],
        Duration::ZERO,
        MEMORY_MESSAGES,
    )?;
    let setup = Instant::now() + 2 * SETUP_TIMEOUT;
    peers.expect(p, &PeerLine::Connected, setup)?;
    peers.expect(sub, &PeerLine::Accepted, setup)?;
    peers.go(p)?;
    let deadline = Instant::now() + 2 * SETUP_TIMEOUT;
    let sent = peers.done(p, deadline)?;
    let got = peers.done(sub, deadline)?;
    peers.finish(Instant::now() + EXIT_TIMEOUT)?;
    let (
        PeerResult::Memory {
            count: n_sent,
            sum: sum_sent,
            mem: publisher,
            ..
        },
        PeerResult::Memory {
            count: n_got,
            sum: sum_got,
            mem: subscriber,
            segments,
        },
    ) = (sent, got)
    else {
        bail!("unexpected reports of the memory peers");
    };
    ensure!(
        n_sent == MEMORY_MESSAGES && n_got == n_sent && sum_got == sum_sent,
        "{n_got} of {n_sent} messages arrived, or their checksum differs"
    );
    if mech.is_mmipc() {
        let rings = segments.iter().filter(|g| g.is_ring()).count();
        let bells = segments.iter().filter(|g| g.is_bell()).count();
        ensure!(
            rings == 1 && bells == 1,
            "expected one ring and one doorbell, found {segments:?}"
        );
    }
    Ok(PairMemory {
        publisher,
        subscriber,
        segments,
    })
}

/// One publisher process, [`FAN_SUBSCRIBERS`] subscribers in another, one message each:
/// the bytes of every segment file in the channel directory, each rounded up to whole pages
/// (what tmpfs holds once every page is touched).
fn fan_once(ctx: &Ctx, dir: &Path, name: String) -> Result<u64> {
    let link = link(Mech::MmipcDefault, dir, name.clone(), FAN_SUBSCRIBERS);
    let (mut peers, subs, p) = start_pair(ctx, &link, [Role::FanSubs, Role::FanPub])?;
    let deadline = Instant::now() + 2 * SETUP_TIMEOUT;
    peers.done(p, deadline)?;
    match peers.done(subs, deadline)? {
        PeerResult::Count { messages } if messages == FAN_SUBSCRIBERS as u64 => {}
        other => bail!("the subscribers reported {other:?}"),
    }
    let segments = crate::os::segments(&dir.join(format!("{name}-down")))?;
    peers.finish(Instant::now() + EXIT_TIMEOUT)?;
    let rings = segments.iter().filter(|g| g.is_ring()).count();
    let bells = segments.iter().filter(|g| g.is_bell()).count();
    ensure!(
        rings == FAN_SUBSCRIBERS && bells == FAN_SUBSCRIBERS,
        "expected {FAN_SUBSCRIBERS} rings and doorbells, found {rings} and {bells}"
    );
    Ok(segments.iter().map(Segment::pages_bytes).sum())
}

// ---------------------------------------------------------------------------------------------
// Idle
// ---------------------------------------------------------------------------------------------

/// CPU time, as a percentage of one core, of an mmipc subscriber process blocked in
/// `recv_timeout` for [`Settings::idle`] with nothing sent (default wait strategy), and of
/// its connected publisher process over the same time.
pub fn idle_cpu(ctx: &Ctx, s: &Settings) -> Result<Vec<Row>> {
    let mechs = s.mechs_among(&[Mech::MmipcDefault, Mech::MmipcAsync]);
    if !s.wants(Group::Idle) || mechs.is_empty() {
        return Ok(Vec::new());
    }
    let secs = s.idle.as_secs_f64();
    #[rustfmt::skip]
    let [mut sub, mut publ] = scalar_rows(IDLE, "% of a core", [
        ("idle-subscriber-cpu-pct", format!("subscriber process blocked in `recv_timeout({secs} s)` (async: awaiting `recv_async` under a {secs} s tokio timeout), nothing sent")),
        ("idle-publisher-cpu-pct", "its publisher process meanwhile (connected, publishing nothing)".into()),
    ]);
    let started = Instant::now();
    for round in 0..s.rounds {
        for &mech in &mechs {
            let outcome = fresh(ctx, |dir, name| idle_once(ctx, mech, s.idle, dir, name));
            progress(started, "idle", round, s, mech, &outcome_text(&outcome));
            match outcome {
                Ok((p, q)) => {
                    publ.add(mech, Ok(Sample::Scalar(p)));
                    sub.add(mech, Ok(Sample::Scalar(q)));
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    publ.add(mech, Err(e.clone()));
                    sub.add(mech, Err(e));
                }
            }
        }
    }
    Ok(vec![sub, publ])
}

/// One idle period: (publisher %, subscriber %) of one core.
fn idle_once(
    ctx: &Ctx,
    mech: Mech,
    idle: Duration,
    dir: &Path,
    name: String,
) -> Result<(f64, f64)> {
    let link = link(mech, dir, name, 1);
    let (mut peers, p, sub) = start_pair_for(ctx, &link, [Role::IdlePub, Role::IdleSub], idle, 0)?;
    let setup = Instant::now() + 2 * SETUP_TIMEOUT;
    peers.expect(p, &PeerLine::Accepted, setup)?;
    peers.expect(sub, &PeerLine::Accepted, setup)?;
    let deadline = Instant::now() + idle + RUN_SLACK;
    let pct = |r: PeerResult| -> Result<f64> {
        match r {
            PeerResult::Idle { cpu_ns, wall_ns } if wall_ns > 0 => {
                Ok(cpu_ns as f64 * 100.0 / wall_ns as f64)
            }
            other => bail!("an idle peer reported {other:?}"),
        }
    };
    let q = pct(peers.done(sub, deadline)?)?;
    let p = pct(peers.done(p, deadline)?)?;
    peers.finish(Instant::now() + EXIT_TIMEOUT)?;
    Ok((p, q))
}

/// All of the above, in report order.
pub fn extra_rows(ctx: &Ctx, s: &Settings) -> Result<Vec<Row>> {
    let mut rows = software_path(ctx, s)?;
    rows.extend(connect_time(ctx, s)?);
    rows.extend(crash_detection(ctx, s)?);
    rows.extend(memory(ctx, s)?);
    rows.extend(idle_cpu(ctx, s)?);
    Ok(rows)
}
