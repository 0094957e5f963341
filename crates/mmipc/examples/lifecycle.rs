//! Measures the life-cycle figures of a connection between real processes:
//!
//! * **connect**: from the moment a new subscriber process starts building its `Subscriber`
//!   until (a) the publisher's `Connected` event, (b) the subscriber's
//!   `wait_for_publishers` returns, (c) it holds its first message (the publisher publishes
//!   as soon as it sees `Connected`);
//! * **crash**: from `kill -9` of a peer process until the survivor's
//!   `Disconnected { Crashed }` event, for a killed publisher and for a killed subscriber;
//! * **memory**: the shared memory one connection uses with default options (segment sizes
//!   and the tmpfs pages actually allocated), and the total for one publisher with 16
//!   subscribers.
//!
//! Default options everywhere (heartbeat 1 s, peer timeout 5 s): crash detection does not
//! come from timeouts but from the kernel releasing the dead process's lock file.
//!
//! `cargo run --release -p mmipc --example lifecycle [-- ROUNDS]` (default 20 rounds).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mmipc::{DisconnectReason, Event, Publisher, Subscriber};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const CHANNEL: &str = "lifecycle";
const DEADLINE: Duration = Duration::from_secs(20);

/// Wall-clock nanoseconds: the one clock two processes can compare without a handshake.
fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child-sub") => return child_sub(Path::new(&args[2])),
        Some("child-pub") => return child_pub(Path::new(&args[2])),
        Some("child-idle-sub") => return child_idle_sub(Path::new(&args[2])),
        Some("child-many-subs") => return child_many(Path::new(&args[2]), &args[3], true),
        Some("child-many-pubs") => return child_many(Path::new(&args[2]), &args[3], false),
        _ => {}
    }
    let rounds: usize = match args.get(1) {
        Some(s) => s
            .parse()
            .map_err(|_| format!("ROUNDS must be a number, not {s:?}"))?,
        None => 20,
    };
    // Records and segments on tmpfs, so the segment sizes can be read off the directory.
    let dir = tempfile::Builder::new()
        .prefix("mmipc-lifecycle")
        .tempdir_in("/dev/shm")?;
    println!(
        "mmipc lifecycle: {rounds} rounds, default options, directory {}",
        dir.path().display()
    );

    let mut connected_event = Vec::new();
    let mut connected_sub = Vec::new();
    let mut first_msg = Vec::new();
    let mut kill_pub = Vec::new();
    let mut kill_sub = Vec::new();
    let mut memory = None;
    for _ in 0..rounds {
        let c = connect_round(dir.path())?;
        connected_event.push(c.event);
        connected_sub.push(c.sub_connected);
        first_msg.push(c.first_message);
        memory.get_or_insert(c.memory);
        kill_pub.push(kill_publisher_round(dir.path())?);
        kill_sub.push(kill_subscriber_round(dir.path())?);
    }

    println!();
    println!("| what ({rounds} rounds, fresh processes) | p50 | p90 | max |");
    println!("|---|---|---|---|");
    row(
        "subscriber start → publisher's `Connected`",
        &mut connected_event,
    );
    row(
        "subscriber start → `wait_for_publishers` returns",
        &mut connected_sub,
    );
    row("subscriber start → first message in hand", &mut first_msg);
    row(
        "`kill -9` publisher → subscriber's `Disconnected`",
        &mut kill_pub,
    );
    row(
        "`kill -9` subscriber → publisher's `Disconnected`",
        &mut kill_sub,
    );

    if let Some(m) = memory {
        println!();
        println!("Shared memory per connection, default options:");
        println!(
            "  ring segment {} B (header + {} B data), subscriber doorbell segment {} B \
             (one page, shared by all of that subscriber's connections)",
            m.ring_size,
            mmipc::DEFAULT_RING_CAPACITY,
            m.bell_size
        );
        println!(
            "  tmpfs pages allocated after 1 message: ring {} KiB, doorbell {} KiB",
            m.ring_allocated / 1024,
            m.bell_allocated / 1024
        );
    }
    println!();
    println!(
        "| `build()` with N live peers in another process ({rounds} rounds) | p50 | p90 | max |"
    );
    println!("|---|---|---|---|");
    for n in [0, 1, 16] {
        let (mut p, mut s) = build_costs(dir.path(), n, rounds)?;
        row(&format!("`Publisher::build`, {n} live subscribers"), &mut p);
        row(&format!("`Subscriber::build`, {n} live publishers"), &mut s);
    }
    let (files, size, allocated) = sixteen_subscribers(dir.path())?;
    println!(
        "One publisher with 16 subscribers: {files} segments, {:.2} MiB mapped; {:.2} MiB \
         allocated once every ring has wrapped",
        size as f64 / (1 << 20) as f64,
        allocated as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// Holds `n` subscribers (or publishers) on the build channel until killed.
fn child_many(dir: &Path, n: &str, subscribers: bool) -> Res<()> {
    let n: usize = n.parse()?;
    let mut subs = Vec::new();
    let mut pubs = Vec::new();
    for _ in 0..n {
        if subscribers {
            subs.push(Subscriber::builder("lifecycle-build").dir(dir).build()?);
        } else {
            pubs.push(Publisher::builder("lifecycle-build").dir(dir).build()?);
        }
    }
    println!("ready");
    std::thread::sleep(DEADLINE);
    Ok(())
}

/// How long `Publisher::build` takes with `n` live subscribers in another process (it
/// connects to each before returning), and `Subscriber::build` with `n` live publishers (it
/// waits until each has connected).
fn build_costs(dir: &Path, n: usize, rounds: usize) -> Res<(Vec<u128>, Vec<u128>)> {
    let (mut p, mut s) = (Vec::new(), Vec::new());
    for (role, out) in [("child-many-subs", &mut p), ("child-many-pubs", &mut s)] {
        let child = Command::new(std::env::current_exe()?)
            .arg(role)
            .arg(dir)
            .arg(n.to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut peer = Peer(child);
        peer.line()?;
        for _ in 0..rounds {
            let start = Instant::now();
            if role == "child-many-subs" {
                let publisher = Publisher::builder("lifecycle-build").dir(dir).build()?;
                out.push(start.elapsed().as_nanos());
                if publisher.num_active_connections() != n {
                    return Err(
                        "Publisher::build returned before connecting every subscriber".into(),
                    );
                }
            } else {
                let subscriber = Subscriber::builder("lifecycle-build").dir(dir).build()?;
                out.push(start.elapsed().as_nanos());
                if subscriber.num_active_connections() != n {
                    return Err(
                        "Subscriber::build returned before every publisher connected".into(),
                    );
                }
            }
        }
    }
    Ok((p, s))
}

fn row(what: &str, ns: &mut [u128]) {
    ns.sort_unstable();
    let pick = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize];
    let ms = |v: u128| format!("{:.2} ms", v as f64 / 1e6);
    println!(
        "| {what} | {} | {} | {} |",
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(pick(1.0))
    );
}

/// Kills the child on drop, so an error path leaves no process behind.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    fn spawn(role: &str, dir: &Path) -> Res<Peer> {
        let child = Command::new(std::env::current_exe()?)
            .arg(role)
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()?;
        Ok(Peer(child))
    }

    /// The child's next stdout line.
    fn line(&mut self) -> Res<String> {
        let out = self.0.stdout.as_mut().ok_or("no stdout")?;
        let mut line = String::new();
        // One byte at a time so nothing is buffered away from later calls.
        let mut reader = BufReader::with_capacity(1, out);
        reader.read_line(&mut line)?;
        if line.is_empty() {
            return Err("child exited early".into());
        }
        Ok(line.trim().to_owned())
    }

    fn kill9(&mut self) -> Res<u128> {
        let at = wall_ns();
        // SIGKILL on Unix, TerminateProcess on Windows: no chance to clean up either way.
        self.0.kill()?;
        Ok(at)
    }
}

struct ConnectRound {
    event: u128,
    sub_connected: u128,
    first_message: u128,
    memory: Memory,
}

struct Memory {
    ring_size: u64,
    ring_allocated: u64,
    bell_size: u64,
    bell_allocated: u64,
}

fn connect_round(dir: &Path) -> Res<ConnectRound> {
    let publisher = Publisher::builder(CHANNEL).dir(dir).build()?;
    let events = publisher.events();
    let mut child = Peer::spawn("child-sub", dir)?;
    let connected_at = loop {
        match events.recv_timeout(DEADLINE).ok_or("no event in time")? {
            Event::Connected { .. } => break wall_ns(),
            other => println!("unexpected event {other:?}"),
        }
    };
    publisher.publish(b"first")?;
    let line = child.line()?;
    let nums: Vec<u128> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad child line {line:?}"))?;
    let [start, connected, first] = nums[..] else {
        return Err(format!("bad child line {line:?}").into());
    };
    let memory = segment_memory(dir)?;
    Ok(ConnectRound {
        event: connected_at.saturating_sub(start),
        sub_connected: connected.saturating_sub(start),
        first_message: first.saturating_sub(start),
        memory,
    })
}

fn segment_memory(dir: &Path) -> Res<Memory> {
    let (mut ring, mut bell) = (None, None);
    for entry in std::fs::read_dir(dir.join(CHANNEL))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        let sizes = (meta.len(), allocated(&meta));
        if name.starts_with("ring-") {
            ring = Some(sizes);
        } else if name.ends_with(".bell") {
            bell = Some(sizes);
        }
    }
    let (ring, bell) = (ring.ok_or("no ring segment")?, bell.ok_or("no doorbell")?);
    Ok(Memory {
        ring_size: ring.0,
        ring_allocated: ring.1,
        bell_size: bell.0,
        bell_allocated: bell.1,
    })
}

fn child_sub(dir: &Path) -> Res<()> {
    let start = wall_ns();
    let mut sub = Subscriber::builder(CHANNEL).dir(dir).build()?;
    sub.wait_for_publishers(1, DEADLINE)?;
    let connected = wall_ns();
    let msg = sub.recv_timeout(DEADLINE)?;
    let first = wall_ns();
    assert_eq!(msg.payload(), b"first");
    println!("{start} {connected} {first}");
    // Stay until the parent has looked at the segments and killed us.
    std::thread::sleep(DEADLINE);
    Ok(())
}

fn child_pub(dir: &Path) -> Res<()> {
    let publisher = Publisher::builder(CHANNEL).dir(dir).build()?;
    publisher.wait_for_subscribers(1, DEADLINE)?;
    println!("connected");
    std::thread::sleep(DEADLINE);
    Ok(())
}

fn child_idle_sub(dir: &Path) -> Res<()> {
    let mut sub = Subscriber::builder(CHANNEL).dir(dir).build()?;
    sub.wait_for_publishers(1, DEADLINE)?;
    println!("connected");
    let _ = sub.recv_timeout(DEADLINE);
    Ok(())
}

fn wait_crashed(events: &mmipc::Events) -> Res<u128> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left).ok_or("no event in time")? {
            Event::Disconnected {
                reason: DisconnectReason::Crashed,
                ..
            } => return Ok(wall_ns()),
            Event::Disconnected { reason, .. } => {
                return Err(format!("disconnected as {reason:?}, not Crashed").into());
            }
            _ => {}
        }
    }
}

fn kill_publisher_round(dir: &Path) -> Res<u128> {
    let sub = Subscriber::builder(CHANNEL).dir(dir).build()?;
    let events = sub.events();
    let mut child = Peer::spawn("child-pub", dir)?;
    child.line()?;
    sub.wait_for_publishers(1, DEADLINE)?;
    let killed = child.kill9()?;
    Ok(wait_crashed(&events)?.saturating_sub(killed))
}

fn kill_subscriber_round(dir: &Path) -> Res<u128> {
    let publisher = Publisher::builder(CHANNEL).dir(dir).build()?;
    let events = publisher.events();
    let mut child = Peer::spawn("child-idle-sub", dir)?;
    child.line()?;
    publisher.wait_for_subscribers(1, DEADLINE)?;
    let killed = child.kill9()?;
    Ok(wait_crashed(&events)?.saturating_sub(killed))
}

/// One publisher, 16 subscribers (in this process, so the publisher must deliver to its
/// own process), each ring filled once: the worst case of allocated tmpfs pages.
fn sixteen_subscribers(dir: &Path) -> Res<(usize, u64, u64)> {
    let channel = "lifecycle-16";
    let publisher = Publisher::builder(channel)
        .dir(dir)
        .deliver_to_same_process(true)
        .on_full(mmipc::OnFull::DropNewest)
        .build()?;
    let mut subs = Vec::new();
    for _ in 0..16 {
        subs.push(Subscriber::builder(channel).dir(dir).build()?);
    }
    publisher.wait_for_subscribers(16, DEADLINE)?;
    let chunk = vec![7u8; 4096];
    for _ in 0..(mmipc::DEFAULT_RING_CAPACITY / chunk.len()) * 2 {
        publisher.publish(&chunk)?;
        for s in &mut subs {
            while s.try_recv().is_some() {}
        }
    }
    let (mut files, mut size, mut allocated) = (0, 0, 0);
    for path in segment_files(&dir.join(channel))? {
        let meta = std::fs::metadata(&path)?;
        files += 1;
        size += meta.len();
        allocated += self::allocated(&meta);
    }
    Ok((files, size, allocated))
}

/// Bytes the file system allocated to a file (Windows: its length, which is what a mapping
/// of it commits).
fn allocated(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::blocks(meta) * 512
    }
    #[cfg(not(unix))]
    {
        meta.len()
    }
}

fn segment_files(dir: &Path) -> Res<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("ring-") || name.ends_with(".bell") {
            out.push(path);
        }
    }
    Ok(out)
}
