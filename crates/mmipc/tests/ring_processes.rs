//! The ring between two real processes.
//!
//! Each test re-executes this test binary as its child (`current_exe() --exact <test>
//! --nocapture`) with [`CHILD_ENV`] set to `<role>:<segment path>:<argument>`; the test
//! function notices the variable, plays the child's role and returns. The parent creates the
//! segment (in a fresh directory under `/dev/shm` when it exists), is the consumer, and never
//! blocks without a deadline: reads time out every [`POLL`], and each time-out checks that the
//! child is still alive and that the ring has not been silent for [`STALL_LIMIT`]. Children are
//! killed if the parent panics, and a child exits by itself if its parent disappears.
//!
//! Linux only: elsewhere the sys layer has no shared segments.
#![cfg(any(target_os = "linux", windows))]

mod common;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mmipc::ring::{Consumer, RingError, RingSegment, Violation, WaitStrategy};

/// `<role>:<segment path>:<argument>` in a child process.
const CHILD_ENV: &str = "MMIPC_RING_CHILD";
/// Longest single blocking read in the parent; after each, the watchdog looks at the child.
const POLL: Duration = Duration::from_millis(500);
/// The parent gives up (and kills the child) after this long without a message.
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// How long a child may take to exit once the parent has seen the ring closed.
const EXIT_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// Deterministic pseudo-random content, computed identically in both processes.

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*: small, fast, good enough to make every byte of a message unpredictable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(splitmix64(seed) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over little-endian 64-bit words, then over the trailing bytes one at a time.
fn checksum(bytes: &[u8]) -> u64 {
    let mut sum = FNV_OFFSET;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        sum = (sum ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(FNV_PRIME);
    }
    for &b in words.remainder() {
        sum = (sum ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    sum
}

/// Fills `out` with the xorshift stream for `key` and returns its [`checksum`] (computed on
/// the fly: the same value `checksum(out)` gives afterwards).
fn fill_stream(key: u64, out: &mut [u8]) -> u64 {
    let mut rng = Rng::new(key);
    let mut sum = FNV_OFFSET;
    let mut words = out.chunks_exact_mut(8);
    for w in &mut words {
        let v = rng.next_u64();
        w.copy_from_slice(&v.to_le_bytes());
        sum = (sum ^ v).wrapping_mul(FNV_PRIME);
    }
    let rest = words.into_remainder();
    let tail = rng.next_u64().to_le_bytes();
    rest.copy_from_slice(&tail[..rest.len()]);
    for &b in rest.iter() {
        sum = (sum ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    sum
}

/// Writes message `seq` into `out` (its length is the message's length). From 16 bytes on:
/// the sequence number (u64 LE), the checksum of the rest (u64 LE), then a pseudo-random body
/// derived from `seq`. Shorter messages are all pseudo-random body derived from `seq`.
fn fill_message(seq: u64, out: &mut [u8]) {
    let key = seq ^ 0x5EED_0FB0_D1CE;
    if out.len() < 16 {
        fill_stream(key, out);
        return;
    }
    let (head, body) = out.split_at_mut(16);
    let sum = fill_stream(key, body);
    head[..8].copy_from_slice(&seq.to_le_bytes());
    head[8..].copy_from_slice(&sum.to_le_bytes());
}

/// Checks `got` against message `seq` of `len` bytes, every byte; `scratch` must hold `len`.
fn verify_message(seq: u64, len: usize, got: &[u8], scratch: &mut [u8]) -> Result<(), String> {
    let header = |m: &[u8]| -> String {
        if m.len() < 16 {
            return "too short for a header".to_owned();
        }
        let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
        let sum = u64::from_le_bytes(m[8..16].try_into().unwrap());
        let ok = if checksum(&m[16..]) == sum {
            "matches"
        } else {
            "does NOT match"
        };
        format!("it carries seq {seq} and a checksum that {ok} its body")
    };
    if got.len() != len {
        return Err(format!(
            "message {seq}: {} bytes, expected {len}; {}",
            got.len(),
            header(got)
        ));
    }
    let want = &mut scratch[..len];
    fill_message(seq, want);
    if got != &want[..] {
        let at = got
            .iter()
            .zip(want.iter())
            .position(|(a, b)| a != b)
            .unwrap();
        return Err(format!(
            "message {seq} ({len} bytes) differs from byte {at} on ({:#04x}, expected {:#04x}); {}",
            got[at],
            want[at],
            header(got)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Processes.

/// A fresh directory for segments: on `/dev/shm` when there is one.
fn segment_dir() -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix("mmipc-ring-processes-");
    if Path::new("/dev/shm").is_dir() {
        b.tempdir_in("/dev/shm")
    } else {
        b.tempdir()
    }
    .expect("create a temporary directory for segments")
}

/// The child's role, segment and argument if this process is a child.
fn child_role() -> Option<(String, PathBuf, String)> {
    let v = std::env::var(CHILD_ENV).ok()?;
    let (role, rest) = v.split_once(':').expect("role:path:argument");
    let (path, arg) = rest.rsplit_once(':').expect("role:path:argument");
    Some((role.to_owned(), PathBuf::from(path), arg.to_owned()))
}

/// In a child: exits the process if the parent goes away, so that no child outlives a
/// killed test run (blocked for ever on a ring nobody reads).
/// (Unix only: a Windows process has no parent to watch; the test's watchdogs kill children.)
#[cfg(not(unix))]
fn exit_with_parent() {}

#[cfg(unix)]
fn exit_with_parent() {
    use std::os::unix::process::parent_id;
    let parent = parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if parent_id() != parent {
                eprintln!("child: parent {parent} is gone; exiting");
                std::process::exit(3);
            }
        }
    });
}

/// A child process running one role of `test`; killed on drop if still running.
struct ChildProcess {
    child: Child,
    log: PathBuf,
    what: String,
}

impl ChildProcess {
    fn spawn(test: &str, role: &str, segment: &Path, arg: &str, log: PathBuf) -> ChildProcess {
        let exe = std::env::current_exe().expect("path of the test binary");
        let out = File::create(&log).expect("create the child's log file");
        let err = out.try_clone().expect("duplicate the log file");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{role}:{}:{arg}", segment.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = common::spawn_retrying(&mut cmd).expect("spawn the child process");
        ChildProcess {
            what: format!("{role} child {} ({arg})", child.id()),
            child,
            log,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// Called when a read timed out after [`POLL`]: panics if the child died without closing
    /// its end, or if nothing arrived for [`STALL_LIMIT`].
    fn check_alive(&mut self, idle_since: Instant, waiting_for: &dyn Fn() -> String) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the {} exited ({status}) without closing the ring while the parent waited \
                 for {}; its output:\n{}",
                self.what,
                waiting_for(),
                self.output()
            );
        }
        if idle_since.elapsed() > STALL_LIMIT {
            panic!(
                "watchdog: nothing on the ring for {STALL_LIMIT:?} while waiting for {}; the \
                 {} is hung (it will be killed); its output so far:\n{}",
                waiting_for(),
                self.what,
                self.output()
            );
        }
    }

    /// Waits for the child to exit, at most [`EXIT_LIMIT`]; kills it and panics on a hang.
    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if start.elapsed() > EXIT_LIMIT => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "watchdog: the {} did not exit within {EXIT_LIMIT:?} of closing the \
                         ring; killed it. Its output:\n{}",
                        self.what,
                        self.output()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("waiting for the {}: {e}", self.what),
            }
        }
    }

    /// Waits for the child and asserts it exited with status 0.
    fn assert_success(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "the {} failed ({status}); its output:\n{}",
            self.what,
            self.output()
        );
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The two ways the consumer reads.
#[derive(Clone, Copy, Debug)]
enum ReadApi {
    /// [`Consumer::read_until`] into a `Vec`.
    Copy,
    /// [`Consumer::read_in_place`], borrowing from the ring.
    InPlace,
}

/// Receives one message with `api`, handing it to `check`; waits in [`POLL`] slices, asking
/// the watchdog after each. Returns the ring's error if it closed or failed.
fn receive<R>(
    rx: &mut Consumer,
    api: ReadApi,
    buf: &mut Vec<u8>,
    child: &mut ChildProcess,
    waiting_for: &dyn Fn() -> String,
    mut check: impl FnMut(&[u8]) -> R,
) -> Result<R, RingError> {
    let idle_since = Instant::now();
    loop {
        let deadline = Some(Instant::now() + POLL);
        match api {
            ReadApi::Copy => match rx.read_until(buf, deadline) {
                Ok(()) => return Ok(check(buf)),
                Err(RingError::Timeout) => {}
                Err(e) => return Err(e),
            },
            ReadApi::InPlace => match rx.read_in_place(deadline) {
                Ok(msg) => return Ok(check(&msg)),
                Err(RingError::Timeout) => {}
                Err(e) => return Err(e),
            },
        }
        child.check_alive(idle_since, waiting_for);
    }
}

fn strategy(mode: &str) -> WaitStrategy {
    match mode {
        "park" => WaitStrategy::Park,
        "default" => WaitStrategy::default(),
        other => panic!("unknown wait mode {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// (a) Many messages of random sizes (200,000 by default, a million in the long mode).

const MILLION_TEST: &str = "random_messages_cross_processes_intact";
/// Set to a number of messages for a longer run: `MMIPC_RING_MESSAGES=1000000 cargo test
/// --test ring_processes` (about a minute on two cores).
const MESSAGES_ENV: &str = "MMIPC_RING_MESSAGES";

/// Messages per mode: 200,000 unless [`MESSAGES_ENV`] says otherwise (an even number of at
/// least 2,048, so that both extreme sizes occur and the two read APIs split evenly).
fn message_count() -> u64 {
    std::env::var(MESSAGES_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(200_000, |n| n.max(2048) & !1)
}
const MAX_LEN: usize = 256 << 10;
const STREAM_CAPACITY: usize = 64 << 10;
const LENGTH_SEED: u64 = 0x6d6d_6970_632d_7269;

/// Length of message `seq`: 1 in 1024 is exactly 0 bytes, 1 in 1024 exactly 256 KiB; the rest
/// pick an exponent `e` in 0..=18 uniformly and a length uniformly below `2^e` (mean ≈ 14 KB,
/// median ≈ 300 bytes).
fn message_len(seq: u64) -> usize {
    let r = splitmix64(LENGTH_SEED ^ seq.wrapping_mul(0xD1B5_4A32_D192_ED03));
    match r & 1023 {
        0 => 0,
        1 => MAX_LEN,
        _ => {
            let exp = (r >> 10) % 19;
            let len = ((r >> 20) & ((1 << exp) - 1)) as usize;
            len.min(MAX_LEN)
        }
    }
}

/// Child: opens the segment and writes the whole stream, rotating through `write`,
/// `write_parts` (three parts, split at pseudo-random points) and `reserve` + `commit`.
fn million_producer(path: &Path, mode: &str) {
    exit_with_parent();
    let mut tx = RingSegment::open(path)
        .expect("child: open the segment")
        .into_producer();
    tx.set_wait_strategy(strategy(mode));
    let mut scratch = vec![0u8; MAX_LEN];
    for seq in 0..message_count() {
        let len = message_len(seq);
        let sent = match seq % 3 {
            0 => {
                let msg = &mut scratch[..len];
                fill_message(seq, msg);
                tx.write(msg)
            }
            1 => {
                let msg = &mut scratch[..len];
                fill_message(seq, msg);
                let r = splitmix64(seq);
                let a = (r % (len as u64 + 1)) as usize;
                let b = a + ((r >> 32) % ((len - a) as u64 + 1)) as usize;
                tx.write_parts(&[&msg[..a], &msg[a..b], &msg[b..]], None)
            }
            _ => tx.reserve(len, None).and_then(|mut slot| {
                fill_message(seq, &mut slot);
                slot.commit()
            }),
        };
        if let Err(e) = sent {
            panic!("child: writing message {seq} ({len} bytes) failed: {e}");
        }
    }
    drop(tx); // closes the ring: the parent sees `Closed` after the last message
    println!("child: wrote {} messages ({mode})", message_count());
}

/// Parent half of one run: creates the ring, starts the producer child, checks every byte of
/// every message, then that the ring reports `Closed` and the child exited with status 0.
fn million_messages(mode: &str) {
    let dir = segment_dir();
    let path = dir.path().join(format!("stream-{mode}"));
    let mut rx = RingSegment::create(&path, STREAM_CAPACITY)
        .expect("create the segment")
        .into_consumer();
    rx.set_wait_strategy(strategy(mode));
    let mut child = ChildProcess::spawn(
        MILLION_TEST,
        "producer",
        &path,
        mode,
        dir.path().join("producer.log"),
    );

    let started = Instant::now();
    let mut buf = Vec::new();
    let mut scratch = vec![0u8; MAX_LEN];
    let (mut bytes, mut empty, mut largest, mut in_place) = (0u64, 0u64, 0u64, 0u64);
    for seq in 0..message_count() {
        let len = message_len(seq);
        let api = if seq.is_multiple_of(2) {
            ReadApi::Copy
        } else {
            ReadApi::InPlace
        };
        let waiting_for = || format!("message {seq} ({mode} mode)");
        let checked = receive(&mut rx, api, &mut buf, &mut child, &waiting_for, |msg| {
            verify_message(seq, len, msg, &mut scratch)
        });
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => panic!("{mode} mode, read with {api:?}: {problem}"),
            Err(e) => panic!(
                "{mode} mode: reading message {seq} of {} failed: {e}; child output:\n{}",
                message_count(),
                child.output()
            ),
        }
        bytes += len as u64;
        empty += u64::from(len == 0);
        largest += u64::from(len == MAX_LEN);
        in_place += u64::from(matches!(api, ReadApi::InPlace));
    }
    // Everything arrived; the producer closes its end after the last message.
    let waiting_for = || "the end of the stream".to_owned();
    let end = receive(
        &mut rx,
        ReadApi::Copy,
        &mut buf,
        &mut child,
        &waiting_for,
        |m| m.len(),
    );
    assert_eq!(
        end,
        Err(RingError::Closed),
        "{mode} mode: expected the ring to close after message {}",
        message_count() - 1
    );
    assert_eq!(
        rx.read_in_place(Some(Instant::now())).err(),
        Some(RingError::Closed),
        "{mode} mode: a closed ring stays closed"
    );
    child.assert_success();

    assert!(
        empty > 0 && largest > 0,
        "{mode}: no 0-byte or 256 KiB messages"
    );
    assert_eq!(in_place, message_count() / 2);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{mode} mode: {} messages, {:.2} GB ({empty} empty, {largest} of 256 KiB) in \
         {secs:.1} s ({:.2} GB/s)",
        message_count(),
        bytes as f64 / 1e9,
        bytes as f64 / 1e9 / secs
    );
}

/// 200,000 messages (1,000,000 with `MMIPC_RING_MESSAGES=1000000`) of 0..=256 KiB
/// (log-skewed sizes, mean ≈ 14 KB, 1 in 1,024 each of exactly 0 and exactly 256 KiB; ≈ 2.8
/// GB, or 14 GB) from a child process to this one through a 64 KiB ring, once with
/// [`WaitStrategy::Park`] and once with [`WaitStrategy::default()`] on both sides. Every byte of every message is checked; the
/// producer rotates through `write`, `write_parts` and `reserve` + `commit`, the consumer
/// alternates `read_until` and `read_in_place`.
#[test]
fn random_messages_cross_processes_intact() {
    if let Some((role, path, mode)) = child_role() {
        assert_eq!(role, "producer", "unexpected child role");
        million_producer(&path, &mode);
        return;
    }
    for mode in ["park", "default"] {
        million_messages(mode);
    }
}

// ---------------------------------------------------------------------------------------
// (b) A child that corrupts the shared segment.

const SCRIBBLE_TEST: &str = "scribbling_child_causes_violation_not_crash";
const SCRIBBLE_CAPACITY: usize = 4 << 10;
/// Offset of the data area in the segment.
const HEADER_LEN: usize = 256;
/// Offsets of the producer's and the consumer's positions in the header (docs/PROTOCOL.md).
const PRODUCER_POS: usize = 64;
const CONSUMER_POS: usize = 128;
const SCRIBBLE_RUNS: u64 = 6;
/// A child writes at most this many messages, for at most [`SCRIBBLE_TIME`].
const SCRIBBLE_ITERATIONS: u64 = 200_000;
const SCRIBBLE_TIME: Duration = Duration::from_secs(3);
/// Messages written cleanly before the scribbling starts.
const CLEAN_PREFIX: u64 = 200;

/// Child: writes valid messages through a real producer and, after the first
/// [`CLEAN_PREFIX`], random bytes at random places of its own second mapping of the segment,
/// over the header and the data area. Stops when the ring dies, after [`SCRIBBLE_ITERATIONS`]
/// messages or [`SCRIBBLE_TIME`]; must never panic itself.
fn scribbler(path: &Path, seed: u64) {
    exit_with_parent();
    let tx = RingSegment::open(path).expect("child: open the segment");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("child: open the segment file");
    // SAFETY: the file is a live ring segment; its creator (our parent) never truncates it, so
    // the whole mapping stays backed. The other users of these bytes are the parent's mapping
    // and our own producer's, both of which validate everything they read from shared memory;
    // this mapping is only written through plain byte stores, on this thread.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("child: map the segment");
    assert_eq!(map.len(), HEADER_LEN + SCRIBBLE_CAPACITY);
    let mut tx = tx.into_producer();
    let mut rng = Rng::new(seed);
    let mut msg = vec![0u8; 2 * SCRIBBLE_CAPACITY];
    let start = Instant::now();
    let (mut sent, mut scribbles) = (0u64, 0u64);
    let mut ended = None;
    for seq in 0..SCRIBBLE_ITERATIONS {
        if start.elapsed() > SCRIBBLE_TIME {
            break;
        }
        // Log-skewed up to twice the ring: most whole, some fragmented.
        let exp = rng.below(14);
        let len = rng.below(1 << exp) as usize;
        fill_message(seq, &mut msg[..len]);
        match tx.write_until(&msg[..len], Instant::now() + Duration::from_millis(20)) {
            Ok(()) => sent += 1,
            Err(RingError::Timeout) => {}
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
        if seq >= CLEAN_PREFIX && rng.below(3) == 0 {
            let n = 1 + rng.below(32) as usize;
            // Odd seeds scribble anywhere (a quarter over the header); even seeds put half
            // of their scribbles where the consumer is about to read.
            let aim = if seed % 2 == 1 {
                rng.below(4)
            } else {
                rng.below(8)
            };
            let at = match aim {
                // Anywhere in the header: positions, closed flags, bells, padding.
                0 => rng.below(HEADER_LEN as u64) as usize,
                // Anywhere in the data area.
                1..=3 => HEADER_LEN + rng.below(SCRIBBLE_CAPACITY as u64) as usize,
                // Somewhere in the bytes published but not yet consumed, as the header
                // says: where the consumer is about to look.
                _ => {
                    let (written, read) = (word(&map, PRODUCER_POS), word(&map, CONSUMER_POS));
                    let unread = written.wrapping_sub(read).min(SCRIBBLE_CAPACITY as u64);
                    let off = read.wrapping_add(rng.below(unread + 1));
                    HEADER_LEN + (off % SCRIBBLE_CAPACITY as u64) as usize
                }
            };
            let end = (at + n).min(map.len());
            for b in &mut map[at..end] {
                *b = rng.next_u64() as u8;
            }
            scribbles += 1;
            // Give the reader a moment to trip over it before the next commit repairs the
            // producer's position.
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    drop(tx);
    drop(map);
    println!(
        "child: seed {seed}: {sent} messages, {scribbles} scribbles; producer ended with {}",
        ended.map_or("no error".to_owned(), |e| e.to_string())
    );
}

/// The native-endian `u64` at `at` in `bytes`.
fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// How one scribbling run ended for the consumer.
#[derive(Debug)]
enum Outcome {
    Violation(Violation),
    Closed,
}

/// The consumer side of one scribbling run.
fn scribbled_run(dir: &Path, seed: u64) -> Outcome {
    let path = dir.join(format!("scribbled-{seed}"));
    let mut rx = RingSegment::create(&path, SCRIBBLE_CAPACITY)
        .expect("create the segment")
        .into_consumer();
    let mut child = ChildProcess::spawn(
        SCRIBBLE_TEST,
        "scribbler",
        &path,
        &seed.to_string(),
        dir.join(format!("scribbler-{seed}.log")),
    );
    let mut buf = Vec::new();
    let mut received = 0u64;
    let end = loop {
        let api = if received.is_multiple_of(2) {
            ReadApi::Copy
        } else {
            ReadApi::InPlace
        };
        let waiting_for = || format!("message {received} of scribbling run {seed}");
        match receive(&mut rx, api, &mut buf, &mut child, &waiting_for, |m| {
            m.len()
        }) {
            Ok(len) => {
                // Payloads may be garbled; but the consumer never hands out more than its
                // limit (the default 64 MiB).
                assert!(len <= mmipc::ring::DEFAULT_MAX_MESSAGE_LEN);
                received += 1;
            }
            Err(e) => break e,
        }
    };
    let outcome = match end {
        RingError::Violation(v) => Outcome::Violation(v),
        RingError::Closed => Outcome::Closed,
        other => panic!(
            "seed {seed}: the consumer ended with {other:?}; expected a violation or closed. \
             Child output:\n{}",
            child.output()
        ),
    };
    // A failed ring stays failed, with the same error, through both read APIs.
    let again = match &outcome {
        Outcome::Violation(v) => RingError::Violation(v.clone()),
        Outcome::Closed => RingError::Closed,
    };
    assert_eq!(
        rx.read_until(&mut buf, Some(Instant::now())),
        Err(again.clone())
    );
    assert_eq!(rx.read_in_place(Some(Instant::now())).err(), Some(again));
    // Leave, so that a child still writing sees the ring closed and finishes.
    drop(rx);
    // The child must not crash either, whatever its own producer made of the corruption.
    child.assert_success();
    eprintln!(
        "scribbling run {seed}: consumer read {received} messages, then {outcome:?}; {}",
        child
            .output()
            .lines()
            .find_map(|l| l
                .split_once("child: ")
                .map(|(_, summary)| summary.to_owned()))
            .unwrap_or_default()
    );
    outcome
}

/// A child process writes through a real producer while scribbling random bytes over the
/// segment's header and data area through its own mapping. For each of [`SCRIBBLE_RUNS`]
/// seeds (one child each, in sequence), the consumer in this process must end with
/// `Err(RingError::Violation(_))` — the expected outcome — or with `Err(RingError::Closed)`,
/// which is acceptable when the scribbles happened to leave every record it read consistent
/// (or hit the producer's `closed` flag, or were caught by the child's own producer, which
/// then closes its end) and the child finished; it must never panic, hang or report anything
/// else, and the failed ring must keep reporting the same error. At least one run must end in
/// a violation.
#[test]
fn scribbling_child_causes_violation_not_crash() {
    if let Some((role, path, seed)) = child_role() {
        assert_eq!(role, "scribbler", "unexpected child role");
        scribbler(&path, seed.parse().expect("seed"));
        return;
    }
    let dir = segment_dir();
    let outcomes: Vec<Outcome> = (1..=SCRIBBLE_RUNS)
        .map(|seed| scribbled_run(dir.path(), seed))
        .collect();
    let violations = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Violation(_)))
        .count();
    assert!(
        violations > 0,
        "no scribbling run ended in a violation: {outcomes:?}"
    );
}
