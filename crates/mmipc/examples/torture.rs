//! Standing fault-injection program: real processes, `kill -9`, `SIGSTOP`, connection churn and
//! a hostile producer scribbling on live rings, each trial checking what the library promises
//! (nothing torn, duplicated, reordered or lost; crashes noticed; no hang, crash or leak).
//!
//! `cargo run --release -p mmipc --example torture -- [--seconds N] [--skip T,..] [--only T,..]`
//!
//! Trials `T`: `pubkill`, `subkill`, `stop`, `churn`, `hostile` (see each `trial_*`). They share
//! the time budget (default 60 s), except `churn`, which always runs 1,000 cycles (~3 s). Progress
//! goes to stderr, the table of counts to stdout; the exit status is 1 if an invariant failed.
//! The program re-executes itself as its children (`torture child ROLE ...`), which die with it
//! (`PR_SET_PDEATHSIG`). Each trial has a private root directory (0700, on /dev/shm).
//!
//! A message is `seq u64 | len u64 | hash u64 | body`, the body a pseudo-random stream seeded by
//! `seq`: the receiver regenerates it, so any torn or misplaced byte is caught.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use memmap2::MmapMut;
use mmipc::{DisconnectReason, EndpointId, Event, Message, OnFull, Publisher, Subscriber};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const HB: Duration = Duration::from_millis(50);
const PEER_TIMEOUT: Duration = Duration::from_millis(400);
/// Bound on anything that should take milliseconds: reaching it is a hang.
const WATCHDOG: Duration = Duration::from_secs(10);
const HEADER: usize = 24;
const KIB: u64 = 1024;
const TRIALS: [&str; 5] = ["pubkill", "subkill", "stop", "churn", "hostile"];

/// Slots of a status page: u64 counters in a small shared file, written by one process and read
/// by another (they survive a `kill -9`). `CHECKED..=ERRORS` are a [`Checker`]'s tally.
#[rustfmt::skip]
mod slot {
    pub const READY: usize = 0; pub const BEAT: usize = 1; pub const STOP: usize = 2;
    pub const TARGET: usize = 3; pub const CHECKED: usize = 4; pub const TORN: usize = 5;
    pub const DUP: usize = 6; pub const REORDER: usize = 7; pub const LOST: usize = 8;
    pub const GAPS: usize = 9; pub const LAST: usize = 11;
    pub const ERRORS: usize = 12; pub const PUBLISHED: usize = 13; pub const CONNECTED: usize = 14;
    pub const TIMEDOUT: usize = 15; pub const VIOLATIONS: usize = 16; pub const CRASHED: usize = 17;
    pub const CLOSED: usize = 18; pub const MUTATIONS: usize = 19; pub const ROUNDS: usize = 20;
    pub const JUNK: usize = 21; pub const ID: usize = 22; /* and 23 */ pub const SLOTS: usize = 24;
}
use slot::*;

struct Status(MmapMut);

impl Status {
    fn open(path: &Path, create: bool) -> Res<Status> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(create);
        let file = options.mode(0o600).open(path)?;
        if create {
            file.set_len(SLOTS as u64 * 8)?;
        }
        // SAFETY: a private file of ours, only ever accessed through atomics (`slot`).
        Ok(Status(unsafe { MmapMut::map_mut(&file)? }))
    }
    fn slot(&self, i: usize) -> &AtomicU64 {
        assert!(i < SLOTS && self.0.len() >= SLOTS * 8);
        // SAFETY: in bounds (checked), 8-aligned (mappings are page-aligned), valid while `self`
        // lives; every process accesses these bytes through atomics only.
        unsafe { AtomicU64::from_ptr(self.0.as_ptr().add(i * 8) as *mut u64) }
    }
    fn get(&self, i: usize) -> u64 {
        self.slot(i).load(SeqCst)
    }
    fn set(&self, i: usize, v: u64) {
        self.slot(i).store(v, SeqCst)
    }
    fn add(&self, i: usize, v: u64) {
        self.slot(i).fetch_add(v, SeqCst);
    }
    fn set_id(&self, id: EndpointId) {
        let v = u128::from_str_radix(&id.to_string(), 16).unwrap_or(0);
        self.set(ID, v as u64);
        self.set(ID + 1, (v >> 64) as u64);
    }
    fn id(&self) -> EndpointId {
        let v = u128::from(self.get(ID)) | (u128::from(self.get(ID + 1)) << 64);
        format!("{v:032x}").parse().expect("32 hex digits")
    }
}

/// splitmix64: small and seedable; picks sizes and delays and makes message bodies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, max: u64) -> Duration {
        Duration::from_micros(self.below(max * 1000))
    }
}

/// Sizes 0..=max: a quarter of them at most 256 bytes, a quarter at most 16 KiB.
fn msg_size(rng: &mut Rng, max: u64) -> usize {
    let limit = [256, 16 * KIB, max, max][rng.below(4) as usize];
    rng.below(limit.min(max) + 1) as usize
}

fn mix(h: u64, chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..chunk.len()].copy_from_slice(chunk);
    let h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x100_0000_01B3);
    h.rotate_left(29)
}

fn make_msg(buf: &mut Vec<u8>, seq: u64, len: usize) {
    buf.clear();
    buf.resize(HEADER + len, 0);
    let (mut body, mut h) = (Rng(seq ^ 0x5EED), 0xCBF2_9CE4_8422_2325);
    for chunk in buf[HEADER..].chunks_mut(8) {
        let n = chunk.len();
        chunk.copy_from_slice(&body.next().to_le_bytes()[..n]);
        h = mix(h, chunk);
    }
    for (i, v) in [seq, len as u64, h].into_iter().enumerate() {
        buf[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// The message's sequence number if it is whole, else what is wrong with it.
fn verify(p: &[u8]) -> Result<u64, &'static str> {
    let word = |i: usize| u64::from_le_bytes(p[i * 8..i * 8 + 8].try_into().unwrap());
    if p.len() < HEADER || p.len() as u64 != HEADER as u64 + word(1) {
        return Err("length differs from the header's");
    }
    let (mut body, mut h) = (Rng(word(0) ^ 0x5EED), 0xCBF2_9CE4_8422_2325);
    for chunk in p[HEADER..].chunks(8) {
        if chunk != &body.next().to_le_bytes()[..chunk.len()] {
            return Err("body bytes differ");
        }
        h = mix(h, chunk);
    }
    (h == word(2)).then_some(word(0)).ok_or("hash differs")
}

/// Checks received messages, per publisher: whole, once, in order, nothing missing.
struct Checker {
    /// A publisher's first message must be number 1 (it waited for this subscriber).
    from_one: bool,
    /// Forward gaps are expected (the subscriber timed out and reconnected): not counted lost.
    gaps_ok: bool,
    quiet: bool,
    last: HashMap<EndpointId, u64>,
    n: [u64; SLOTS],
}

impl Checker {
    fn new(flags: &str) -> Checker {
        let flag = |f| flags.contains(f);
        let (from_one, gaps_ok, quiet) = (flag("from_one"), flag("gaps_ok"), flag("quiet"));
        let (last, n) = (HashMap::new(), [0; SLOTS]);
        Checker {
            from_one,
            gaps_ok,
            quiet,
            last,
            n,
        }
    }
    fn check(&mut self, m: &Message) {
        let (id, n, say) = (m.publisher_id(), &mut self.n, !self.quiet);
        n[CHECKED] += 1;
        let seq = match verify(m.payload()) {
            Ok(seq) if seq == m.sequence() => seq,
            v => {
                n[TORN] += 1;
                let why = v.err().unwrap_or("number differs from the library's");
                let (seq, len) = (m.sequence(), m.len());
                if say && n[TORN] <= 5 {
                    eprintln!("torture: TORN message #{seq} ({len} B): {why}");
                }
                return;
            }
        };
        n[LAST] = seq;
        let first = if self.from_one { 0 } else { seq - 1 };
        let last = self.last.entry(id).or_insert(first);
        if seq <= *last {
            n[if seq == *last { DUP } else { REORDER }] += 1;
            if say && n[DUP] + n[REORDER] <= 5 {
                eprintln!("torture: message #{seq} after #{} from {id}", *last);
            }
            return;
        }
        let gap = seq - *last - 1;
        n[if self.gaps_ok { GAPS } else { LOST }] += gap;
        if say && gap > 0 && !self.gaps_ok {
            eprintln!("torture: LOST {gap} message(s) before #{seq} from {id}");
        }
        *last = seq;
    }
    fn last_of(&self, id: EndpointId) -> u64 {
        self.last.get(&id).copied().unwrap_or(0)
    }
}

/// Receives one message (waiting at most `wait`) into the checker.
fn recv_into(sub: &mut Subscriber, ck: &mut Checker, wait: Duration) {
    if let Ok(m) = sub.recv_timeout(wait) {
        ck.check(&m);
    }
}

/// Counts an endpoint's connection events into a status page, on a thread of its own.
fn count_events(rx: mmipc::Events, st: Arc<Status>) {
    std::thread::spawn(move || {
        for ev in rx {
            let slot = match ev {
                Event::Connected { .. } => CONNECTED,
                Event::Disconnected { reason, .. } => match reason {
                    DisconnectReason::TimedOut => TIMEDOUT,
                    DisconnectReason::ProtocolViolation => VIOLATIONS,
                    DisconnectReason::Crashed => CRASHED,
                    _ => CLOSED,
                },
                _ => continue,
            };
            st.add(slot, 1);
        }
    });
}

fn publisher(root: &Path, ch: &str, cap: u64, on_full: OnFull) -> mmipc::Result<Publisher> {
    let b = Publisher::builder(ch).dir(root).heartbeat_interval(HB);
    let b = b.peer_timeout(PEER_TIMEOUT).on_full(on_full);
    b.ring_capacity(cap as usize).build()
}

fn subscriber(root: &Path, ch: &str) -> mmipc::Result<Subscriber> {
    let b = Subscriber::builder(ch).dir(root).heartbeat_interval(HB);
    b.peer_timeout(PEER_TIMEOUT).build()
}

// ------------------------------------------------------------------------------ children

fn child_main(args: &[String]) -> Res<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // Had the parent died before the prctl, nobody would kill us.
    let parent = std::os::unix::process::parent_id().to_string();
    if std::env::var("TORTURE_PARENT").ok() != Some(parent) {
        std::process::exit(3);
    }
    let [role, root, ch, status, seed, rest @ ..] = args else {
        return Err("usage: torture child ROLE ROOT CHANNEL STATUS SEED [K=V..]".into());
    };
    let opt = |key: &str, default: u64| {
        let kv = rest.iter().filter_map(|a| a.split_once('='));
        let mut v = kv.filter(|(k, _)| *k == key).map(|(_, v)| v.parse());
        v.next().and_then(Result::ok).unwrap_or(default)
    };
    let root = PathBuf::from(root);
    let st = Arc::new(Status::open(Path::new(status), false)?);
    let mut rng = Rng(seed.parse()?);
    match role.as_str() {
        "pub" => {
            let p = publisher(&root, ch, opt("cap", 256 * KIB), OnFull::Block)?;
            st.set_id(p.id());
            count_events(p.events(), Arc::clone(&st));
            p.wait_for_subscribers(opt("subs", 1) as usize, WATCHDOG)?;
            st.set(READY, 1);
            let (pace, max) = (opt("pace_us", 0), opt("max", 300 * KIB));
            let mut buf = Vec::new();
            for seq in 1.. {
                if st.get(STOP) != 0 {
                    break;
                }
                make_msg(&mut buf, seq, msg_size(&mut rng, max));
                p.publish(&buf)?;
                st.set(PUBLISHED, seq); // only once `publish` returned
                st.add(BEAT, 1);
                sleep(Duration::from_micros(pace));
            }
        }
        "sub" => {
            let mut sub = subscriber(&root, ch)?;
            st.set_id(sub.id());
            count_events(sub.events(), Arc::clone(&st));
            let mut ck = Checker::new(&rest.join(" "));
            st.set(READY, 1);
            // When told to stop, it first receives up to message TARGET (within the watchdog).
            let mut stop = None;
            while st.get(STOP) == 0
                || (ck.n[LAST] < st.get(TARGET)
                    && stop.get_or_insert_with(Instant::now).elapsed() < WATCHDOG)
            {
                st.add(BEAT, 1);
                recv_into(&mut sub, &mut ck, Duration::from_millis(50));
                (CHECKED..=ERRORS).for_each(|i| st.set(i, ck.n[i]));
            }
        }
        "hostile" => child_hostile(&root, ch, &st, &mut rng, &rest[0])?,
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}

/// Rounds of: a real publisher connects to the victim subscriber and publishes while this
/// process maps the connection's ring and writes random values into its header and records;
/// then, one round in three, a copy of the damaged ring (sometimes cut short) is planted under a
/// name addressed to the victim, as if left by a publisher that died.
fn child_hostile(root: &Path, ch: &str, st: &Status, rng: &mut Rng, sub: &str) -> Res<()> {
    st.set(READY, 1);
    while st.get(STOP) == 0 {
        st.add(ROUNDS, 1);
        let cap = [4 * KIB, 64 * KIB, 256 * KIB][rng.below(3) as usize];
        let p = publisher(root, ch, cap, OnFull::BlockFor(Duration::from_millis(50)))?;
        p.wait_for_subscribers(1, WATCHDOG)?;
        // A new publisher's first connection is generation 1.
        let path = root.join(ch).join(format!("ring-{}-{sub}-1", p.id()));
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue; // that connection already ended
        };
        // SAFETY: accessed only through atomics (`poke`, `peek`), bounds-checked.
        let map = unsafe { MmapMut::map_mut(&file)? };
        let (stop, mut pub_rng) = (AtomicBool::new(false), Rng(rng.next()));
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = Vec::new();
                for seq in (1..).take_while(|_| !stop.load(Relaxed)) {
                    make_msg(&mut buf, seq, msg_size(&mut pub_rng, 64 * KIB));
                    let _ = p.publish(&buf);
                }
            });
            let until = Instant::now() + rng.ms(300) + Duration::from_millis(20);
            while Instant::now() < until && map.len() as u64 == 256 + cap {
                sleep(rng.ms(3));
                mutate(&map, cap, rng);
                st.add(MUTATIONS, 1);
                st.add(BEAT, 1);
            }
            stop.store(true, Relaxed);
        });
        if rng.below(3) == 0 {
            let fake = format!("{:016x}{:016x}", rng.next(), rng.next());
            let tmp = root.join(ch).join(".torture-copy");
            std::fs::copy(format!("/proc/self/fd/{}", file.as_raw_fd()), &tmp)?;
            if rng.below(4) == 0 {
                OpenOptions::new()
                    .write(true)
                    .open(&tmp)?
                    .set_len(rng.below(256 + cap))?;
            }
            std::fs::rename(&tmp, root.join(ch).join(format!("ring-{fake}-{sub}-1")))?;
            st.add(JUNK, 1);
        }
    }
    Ok(())
}

/// Writes `v` (4 or 8 bytes) at `off` of the mapping, atomically (nothing if out of bounds).
fn poke(map: &MmapMut, off: u64, v: u64, wide: bool) {
    let size = if wide { 8 } else { 4 };
    let off = off as usize & !(size - 1);
    if off + size <= map.len() {
        let p = map.as_ptr().wrapping_add(off) as *mut u8;
        // SAFETY: in bounds and aligned (checked above; mappings are page-aligned); the other
        // processes access these bytes with atomics or volatile copies.
        unsafe {
            match wide {
                true => AtomicU64::from_ptr(p.cast()).store(v, Relaxed),
                false => AtomicU32::from_ptr(p.cast()).store(v as u32, Relaxed),
            }
        }
    }
}

fn peek(map: &MmapMut, off: usize) -> u64 {
    assert!(off.is_multiple_of(8) && off + 8 <= map.len());
    // SAFETY: as in `poke`.
    unsafe { AtomicU64::from_ptr(map.as_ptr().add(off) as *mut u64) }.load(Relaxed)
}

/// One random mutation of a live ring (layout: docs/PROTOCOL.md section 1).
fn mutate(map: &MmapMut, cap: u64, rng: &mut Rng) {
    let mut near = |pos: u64| {
        let d = [8, 1, cap, cap + 8, rng.below(cap) & !7, rng.next()][rng.below(6) as usize];
        [pos.wrapping_add(d), pos.wrapping_sub(d)][rng.below(2) as usize]
    };
    let (ppos, cpos) = (near(peek(map, 64)), near(peek(map, 128)));
    let data = |off: u64| 256 + off % cap; // data-area offsets wrap like positions
    let rec = peek(map, 128) & !7; // the record the consumer reads next
    let weird = [0, 7, cap - 8, cap, 2 * cap, rng.next()][rng.below(6) as usize];
    match rng.below(15) {
        0 => poke(map, 0, rng.next(), true),          // magic
        1 => poke(map, 8, rng.below(4), false),       // version
        2 => poke(map, 12, rng.next(), false),        // header_len
        3 => poke(map, 16, 1 << rng.below(64), true), // capacity
        4 => poke(map, 64, ppos, true),               // producer.pos
        5 => poke(map, 32, rng.below(4), false),      // producer.closed
        6 => poke(map, 128, cpos, true),              // consumer.pos
        7 => poke(map, 144, rng.below(4), false),     // consumer.closed
        8 => poke(map, 192 + 4 * rng.below(4), rng.next(), false), // bells: seq, waiters
        9 => poke(map, 72 + 64 * rng.below(2), rng.next(), true), // heartbeats
        10 => poke(map, data(rec), weird, false),     // record len
        11 => poke(map, data(rec + 4), rng.below(9), false), // record kind and lap tag
        12 => poke(map, data(rec + 8), weird, true),  // fragment total or frame seq
        13 => poke(map, data(rec + 8), rng.below(4), true), // a frame seq going backwards
        _ => poke(map, data(rng.below(cap)), rng.next(), true), // payload bytes
    }
}

// ------------------------------------------------------------------------------ parent

/// Pids of children not yet reaped, for killing them however the parent ends.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn kill_all() {
    for &pid in LIVE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        for sig in [libc::SIGCONT, libc::SIGKILL] {
            // SAFETY: kill(2) on a child of ours not yet reaped (so the pid is still ours).
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// A child process and its status page; killed when dropped.
struct Kid {
    child: Child,
    st: Status,
    exit: Option<ExitStatus>,
}

impl Kid {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn signal(&self, sig: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on our child, not yet reaped (so the pid is still ours).
            unsafe { libc::kill(self.pid(), sig) };
        }
    }
    /// Its exit status if it has ended within `within`.
    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                LIVE.lock().unwrap().retain(|&p| p != self.pid());
            } else if Instant::now() >= deadline {
                break;
            } else {
                sleep(Duration::from_millis(1));
            }
        }
        self.exit
    }
    fn kill9(&mut self) -> Option<ExitStatus> {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGKILL);
        self.wait_exit(WATCHDOG)
    }
    /// Waits until `slot` reaches `v`; false if it does not within `within` or the child ended.
    fn wait_slot(&mut self, slot: usize, v: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.st.get(slot) < v {
            if Instant::now() >= deadline || self.wait_exit(Duration::ZERO).is_some() {
                return self.st.get(slot) >= v;
            }
            sleep(Duration::from_millis(1));
        }
        true
    }
    /// Waits until `slot` moves on from its present value.
    fn wait_more(&mut self, slot: usize) -> bool {
        self.wait_slot(slot, self.st.get(slot) + 1, WATCHDOG)
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn describe(s: Option<ExitStatus>) -> String {
    match s.map(|s| (s.code(), s.signal())) {
        None => "did not exit (hang)".into(),
        Some((Some(101), _)) => "panicked (exit status 101)".into(),
        Some((Some(c), _)) => format!("exited with status {c}"),
        Some((_, sig)) => format!("was killed by signal {}", sig.unwrap_or(0)),
    }
}

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse().ok()).unwrap_or(0);
    field(11) + field(12) // utime and stime, fields 14 and 15 of the line
}

/// Everything but directories under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type().is_ok_and(|t| t.is_dir()) {
            true => out.extend(files_under(&e.path())),
            false => out.push(e.path()),
        }
    }
    out
}

/// A new directory on /dev/shm, mode 0700, removed when dropped.
fn private_dir(prefix: &str) -> Res<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/dev/shm")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// (open fds, mappings, RSS in KiB) of this process.
fn footprint() -> (usize, usize, u64) {
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
    let rss = rss.and_then(|v| v.split_whitespace().next()?.parse().ok());
    (fds, maps, rss.unwrap_or(0))
}

#[derive(Default)]
struct Row {
    trial: &'static str,
    iters: u64,
    kills: u64,
    /// Checkers' tallies (indexed by slot).
    n: [u64; SLOTS],
    cleaned: usize,
    leaked: usize,
    notes: String,
}

impl Row {
    fn add(&mut self, n: impl Fn(usize) -> u64) {
        (CHECKED..=ERRORS).for_each(|i| self.n[i] += n(i));
    }
}

struct Ctx {
    trial: &'static str,
    exe: PathBuf,
    status_dir: tempfile::TempDir,
    roots: Vec<(&'static str, tempfile::TempDir, Instant)>,
    rng: Rng,
    spawned: u64,
    failures: Vec<String>,
    warnings: Vec<String>,
}

impl Ctx {
    /// A library defect that loses nothing (such as a wrong disconnect reason).
    fn warn(&mut self, what: String) {
        eprintln!("torture: WARNING [{}] {what}", self.trial);
        self.warnings.push(format!("[{}] {what}", self.trial));
    }
    fn fail(&mut self, what: impl std::fmt::Display) {
        eprintln!("torture: FAIL [{}] {what}", self.trial);
        self.failures.push(format!("[{}] {what}", self.trial));
    }
    /// The current trial's private root directory.
    fn root(&mut self) -> Res<PathBuf> {
        let dir = private_dir("mmipc-torture-")?;
        let path = dir.path().to_path_buf();
        self.roots.push((self.trial, dir, Instant::now()));
        Ok(path)
    }
    fn status(&mut self, role: &str) -> Res<(Status, PathBuf)> {
        self.spawned += 1;
        let name = format!("{role}-{}", self.spawned);
        let path = self.status_dir.path().join(name);
        Ok((Status::open(&path, true)?, path))
    }
    /// Starts `torture child ROLE ROOT CHANNEL STATUS SEED OPTS..` on the trial's channel.
    fn spawn(&mut self, role: &str, root: &Path, opts: &[&str]) -> Res<Kid> {
        let (st, path) = self.status(role)?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["child", role])
            .arg(root)
            .arg(self.trial)
            .arg(&path);
        cmd.arg(self.rng.next().to_string()).args(opts);
        cmd.env("TORTURE_PARENT", std::process::id().to_string());
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn()?;
        LIVE.lock().unwrap().push(child.id() as i32);
        let exit = None;
        Ok(Kid { child, st, exit })
    }
    /// Spawns a child and waits until it is ready.
    fn ready(&mut self, role: &str, root: &Path, opts: &[&str]) -> Res<Kid> {
        let mut kid = self.spawn(role, root, opts)?;
        if !kid.wait_slot(READY, 1, WATCHDOG) {
            let why = describe(kid.wait_exit(Duration::ZERO));
            return Err(format!("{role} child {opts:?} never got ready: it {why}").into());
        }
        Ok(kid)
    }
    /// Tells a child to stop (a subscriber after receiving up to `target`); it must exit 0.
    fn finish(&mut self, kid: &mut Kid, who: &str, target: u64) {
        kid.st.set(TARGET, target);
        kid.st.set(STOP, 1);
        let exit = kid.wait_exit(WATCHDOG * 2);
        if !exit.is_some_and(|s| s.success()) {
            self.fail(format!("{who} {}", describe(exit)));
        }
    }
    /// Fails unless `kid` lives and its `BEAT` moved within 3 s of `seen`.
    fn alive(&mut self, kid: &mut Kid, who: &str, seen: &mut (u64, Instant)) -> bool {
        let (exit, beat) = (kid.wait_exit(Duration::ZERO), kid.st.get(BEAT));
        if beat != seen.0 {
            *seen = (beat, Instant::now());
        }
        let hung = seen.1.elapsed() > Duration::from_secs(3);
        if exit.is_some() {
            self.fail(format!("{who} {}", describe(exit)));
        } else if hung {
            self.fail(format!("{who} made no progress for 3 s (hang)"));
        }
        exit.is_none() && !hung
    }
    fn pick(&mut self, of: [u64; 3]) -> u64 {
        of[self.rng.below(3) as usize]
    }
}

// ------------------------------------------------------------------------------ trials

/// Stops the publisher, then each subscriber once it has received up to the publisher's last
/// message; adds up their tallies. The first (a bystander) must have got everything.
fn wind_up(ctx: &mut Ctx, row: &mut Row, publisher: &mut Kid, subs: &mut [&mut Kid]) -> u64 {
    ctx.finish(publisher, "publisher", 0);
    let sent = publisher.st.get(PUBLISHED);
    for (i, sub) in subs.iter_mut().enumerate() {
        ctx.finish(sub, &format!("subscriber {i}"), sent);
        row.add(|slot| sub.st.get(slot));
    }
    let got = subs[0].st.get(LAST);
    if got < sent {
        row.n[LOST] += sent - got;
        ctx.fail(format!("the bystander got up to #{got} of {sent}"));
    }
    sent
}

/// Publishers (`kill -9`ed at random points) publish to this process. Everything `publish`
/// returned for before the kill must arrive whole, once, in order, from message 1 on (they wait
/// for the subscriber), including what was left in the dead publisher's ring; each killed
/// connection must be reported `Crashed`.
fn trial_pubkill(ctx: &mut Ctx, budget: Duration, row: &mut Row) -> Res<()> {
    let root = ctx.root()?;
    let mut sub = subscriber(&root, ctx.trial)?;
    let ev = Arc::new(ctx.status("parent")?.0);
    count_events(sub.events(), Arc::clone(&ev));
    let (mut ck, start) = (Checker::new("from_one"), Instant::now());
    while start.elapsed() < budget {
        row.iters += 1;
        let cap = format!("cap={}", ctx.pick([4 * KIB, 64 * KIB, 256 * KIB]));
        let mut kid = ctx.spawn("pub", &root, &[&cap])?;
        let span = ctx.pick([5, 250, 250]);
        let kill_at = Instant::now() + ctx.rng.ms(span);
        while let Some(left) = kill_at.checked_duration_since(Instant::now()) {
            recv_into(&mut sub, &mut ck, left.min(Duration::from_millis(20)));
        }
        if let Some(s) = kid.wait_exit(Duration::ZERO) {
            ctx.fail(format!("publisher {} before the kill", describe(Some(s))));
        }
        kid.kill9();
        row.kills += 1;
        let (hi, id) = (kid.st.get(PUBLISHED), kid.st.id());
        let deadline = Instant::now() + WATCHDOG;
        while ck.last_of(id) < hi && Instant::now() < deadline {
            recv_into(&mut sub, &mut ck, Duration::from_millis(50));
        }
        let got = ck.last_of(id);
        if got < hi {
            ck.n[LOST] += hi - got;
            ctx.fail(format!("killed publisher had published #{hi}; got #{got}"));
        }
        if row.kills.is_multiple_of(100) {
            eprintln!("torture: [pubkill] {} kills", row.kills);
        }
    }
    // Every connection must end, once, reported `Crashed`.
    let deadline = Instant::now() + WATCHDOG;
    let ends = || [CRASHED, CLOSED, TIMEDOUT, VIOLATIONS].map(|i| ev.get(i));
    while ev.get(CONNECTED) != ends().iter().sum::<u64>() && Instant::now() < deadline {
        recv_into(&mut sub, &mut ck, Duration::from_millis(20));
    }
    let (conns, ended): (u64, u64) = (ev.get(CONNECTED), ends().iter().sum());
    let [crashed, closed, timedout] = [CRASHED, CLOSED, TIMEDOUT].map(|i| ev.get(i));
    if conns != ended {
        ctx.fail(format!("{conns} Connected events but {ended} Disconnected"));
    }
    if timedout > 0 {
        ctx.fail(format!(
            "{timedout} killed publishers: TimedOut, not Crashed"
        ));
    }
    if closed > 0 {
        ctx.warn(format!("{closed} killed publishers: Closed, not Crashed"));
    }
    row.add(|i| ck.n[i]);
    row.notes = format!("{conns} connections: {crashed} Crashed, {closed} Closed");
    Ok(())
}

/// Subscriber processes `kill -9`ed at random points while a publisher process publishes to
/// them and to a bystander subscriber: the publisher must go on at once (each killed connection
/// reported `Crashed`), the bystander gets everything.
fn trial_subkill(ctx: &mut Ctx, budget: Duration, row: &mut Row) -> Res<()> {
    let root = ctx.root()?;
    let mut bystander = ctx.ready("sub", &root, &["from_one"])?;
    let mut publisher = ctx.ready("pub", &root, &["subs=1"])?;
    let (start, mut stall) = (Instant::now(), Duration::ZERO);
    while start.elapsed() < budget {
        row.iters += 1;
        let mut victim = ctx.spawn("sub", &root, &[])?;
        let span = ctx.pick([10, 300, 300]);
        sleep(ctx.rng.ms(span));
        if let Some(s) = victim.wait_exit(Duration::ZERO) {
            ctx.fail(format!("subscriber {} before the kill", describe(Some(s))));
        }
        victim.kill9();
        row.kills += 1;
        row.add(|i| victim.st.get(i));
        let t0 = Instant::now();
        if !publisher.wait_more(PUBLISHED) {
            ctx.fail("the publisher stalled after a subscriber was killed");
            break;
        }
        stall = stall.max(t0.elapsed());
        if !ctx.alive(&mut bystander, "bystander", &mut (0, start)) {
            break;
        }
        if row.kills.is_multiple_of(100) {
            eprintln!("torture: [subkill] {} kills", row.kills);
        }
    }
    let sent = wind_up(ctx, row, &mut publisher, &mut [&mut bystander]);
    let [crashed, timedout, closed] = [CRASHED, TIMEDOUT, CLOSED].map(|i| publisher.st.get(i));
    if timedout > 0 {
        ctx.fail(format!(
            "{timedout} killed subscribers: TimedOut, not Crashed"
        ));
    }
    if closed > 0 {
        ctx.warn(format!("{closed} killed subscribers: Closed, not Crashed"));
    }
    row.notes = format!(
        "publisher: {sent} sent, {crashed} Crashed, {timedout} TimedOut, {closed} Closed, \
         longest wait for a publish after a kill {stall:.0?}"
    );
    Ok(())
}

/// A subscriber process stopped (SIGSTOP) past the peer timeout: the publisher reports it
/// `TimedOut` and goes on; after SIGCONT it reconnects. While it is stopped, the publisher's and
/// a bystander subscriber's CPU use must stay under 10% of a core.
fn trial_stop(ctx: &mut Ctx, budget: Duration, row: &mut Row) -> Res<()> {
    let root = ctx.root()?;
    let mut bystander = ctx.ready("sub", &root, &["from_one"])?;
    let mut victim = ctx.ready("sub", &root, &["from_one gaps_ok"])?;
    let mut publisher = ctx.ready("pub", &root, &["subs=2", "pace_us=20000"])?;
    // SAFETY: sysconf has no preconditions.
    let hz = (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64;
    let (start, window) = (Instant::now(), Duration::from_millis(1500));
    let mut worst = [0f64; 2];
    while row.iters == 0 || start.elapsed() + window * 2 < budget {
        row.iters += 1;
        if !victim.wait_more(CHECKED) {
            ctx.fail("the subscriber to be stopped receives nothing");
            break;
        }
        let [timeouts, conns] = [TIMEDOUT, CONNECTED].map(|i| publisher.st.get(i));
        let got = bystander.st.get(CHECKED);
        let pids = [publisher.pid(), bystander.pid()];
        victim.signal(libc::SIGSTOP);
        let (cpu, t0) = (pids.map(cpu_ticks), Instant::now());
        sleep(window);
        let secs = t0.elapsed().as_secs_f64() * hz;
        let used = |i: usize| cpu_ticks(pids[i]).saturating_sub(cpu[i]) as f64;
        let [p, b] = [0, 1].map(|i| used(i) / secs * 100.0);
        worst = [worst[0].max(p), worst[1].max(b)];
        eprintln!("torture: [stop] peer stopped: CPU publisher {p:.1}%, bystander {b:.1}%");
        if p > 10.0 || b > 10.0 {
            ctx.fail(format!("CPU: publisher {p:.1}%, bystander {b:.1}%"));
        }
        if !publisher.wait_slot(TIMEDOUT, timeouts + 1, WATCHDOG) {
            ctx.fail("no TimedOut event for the stopped subscriber");
        }
        if bystander.st.get(CHECKED) == got {
            ctx.fail("the bystander received nothing while the peer was stopped");
        }
        victim.signal(libc::SIGCONT);
        row.kills += 1;
        if !publisher.wait_slot(CONNECTED, conns + 1, WATCHDOG) || !victim.wait_more(CHECKED) {
            ctx.fail("the resumed subscriber did not reconnect and receive");
        }
    }
    wind_up(ctx, row, &mut publisher, &mut [&mut bystander, &mut victim]);
    let (timeouts, skipped) = (publisher.st.get(TIMEDOUT), victim.st.get(GAPS));
    let [p, b] = worst;
    row.notes = format!(
        "{timeouts} TimedOut; CPU while stopped (max): publisher {p:.1}%, bystander {b:.1}%; \
         the resumed subscriber missed {skipped} while disconnected"
    );
    Ok(())
}

/// 1,000 cycles of creating and dropping, in this process, a subscriber against a live
/// publisher process and a publisher against a live subscriber process. Nothing may leak.
fn trial_churn(ctx: &mut Ctx, row: &mut Row) -> Res<()> {
    let (ch, root) = (ctx.trial, ctx.root()?);
    let mut sink = ctx.ready("sub", &root, &["from_one"])?;
    let mut source = ctx.ready("pub", &root, &["subs=1", "pace_us=2000", "max=1024"])?;
    let (mut ck, mut buf, mut published) = (Checker::new(""), Vec::new(), 0);
    let mut cycle = |i: u64| -> Res<()> {
        if i.is_multiple_of(2) {
            let mut s = subscriber(&root, ch)?;
            s.wait_for_publishers(1, WATCHDOG)?;
            ck.check(&s.recv_timeout(WATCHDOG)?);
            ck.last.clear(); // the next subscriber starts anywhere in the stream
        } else {
            let p = publisher(&root, ch, 256 * KIB, OnFull::Block)?;
            p.wait_for_subscribers(1, WATCHDOG)?;
            make_msg(&mut buf, 1, (i % 512) as usize);
            p.publish(&buf)?;
            published += 1;
        }
        Ok(())
    };
    let files = || files_under(&root.join(ch)).len();
    for i in 0..10 {
        cycle(i)?; // warm-up: the runtime thread, its watch
    }
    sleep(Duration::from_millis(300));
    let (before, files_before, t0) = (footprint(), files(), Instant::now());
    for i in 0..1000 {
        row.iters += 1;
        if let Err(e) = cycle(i) {
            ctx.fail(format!("cycle {i}: {e}"));
            break;
        }
    }
    let took = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(3);
    while files() > files_before && Instant::now() < deadline {
        sleep(Duration::from_millis(10));
    }
    let (after, files_after) = (footprint(), files());
    let ((f0, m0, r0), (f1, m1, r1)) = (before, after);
    eprintln!("torture: [churn] 1000 cycles in {took:.1?}");
    if f1 > f0 + 3 || m1 > m0 + 8 {
        ctx.fail(format!("grew: fds {f0} -> {f1}, mappings {m0} -> {m1}"));
    }
    if files_after > files_before {
        ctx.fail(format!("channel files {files_before} -> {files_after}"));
    }
    ctx.finish(&mut source, "publisher", 0);
    // The sink gets every message of the publisher process and one of each churned publisher.
    let want = source.st.get(PUBLISHED) + published;
    sink.wait_slot(CHECKED, want, WATCHDOG);
    ctx.finish(&mut sink, "subscriber", 0);
    row.add(|i| sink.st.get(i) + ck.n[i]);
    let got = sink.st.get(CHECKED);
    if got < want {
        row.n[LOST] += want - got;
        ctx.fail(format!("the subscriber process got {got} of {want}"));
    }
    row.notes = format!(
        "{took:.1?}; fds {f0}->{f1}, mappings {m0}->{m1}, RSS {r0}->{r1} KiB, \
         channel files {files_before}->{files_after}"
    );
    Ok(())
}

/// A hostile producer mutates the rings of a live subscriber process while it reads, and plants
/// damaged rings: the subscriber must neither crash nor hang, each broken connection must end
/// (mostly as a protocol violation) and the next one work.
fn trial_hostile(ctx: &mut Ctx, budget: Duration, row: &mut Row) -> Res<()> {
    let root = ctx.root()?;
    let mut victim = ctx.ready("sub", &root, &["gaps_ok quiet"])?;
    let id = victim.st.id().to_string();
    let mut hostile = ctx.ready("hostile", &root, &[&id])?;
    let (start, mut seen) = (Instant::now(), [(0, Instant::now()); 2]);
    while start.elapsed() < budget
        && ctx.alive(&mut victim, "victim subscriber", &mut seen[0])
        && ctx.alive(&mut hostile, "hostile producer", &mut seen[1])
    {
        sleep(Duration::from_millis(50));
    }
    let who = "hostile producer (a Publisher facing its own damaged ring)";
    ctx.finish(&mut hostile, who, 0);
    ctx.finish(&mut victim, "victim subscriber", 0);
    let (v, h) = (&victim.st, &hostile.st);
    row.add(|i| if i == TORN { 0 } else { v.get(i) });
    (row.iters, row.kills) = (h.get(ROUNDS), h.get(MUTATIONS));
    let [conns, violations, torn] = [CONNECTED, VIOLATIONS, TORN].map(|i| v.get(i));
    let other: u64 = [CLOSED, CRASHED, TIMEDOUT].map(|i| v.get(i)).iter().sum();
    row.notes = format!(
        "{} planted rings; victim: {conns} connections, {violations} ended as violations, \
         {other} otherwise, {torn} damaged payloads (expected), {} recv errors",
        h.get(JUNK),
        v.get(ERRORS)
    );
    Ok(())
}

// ------------------------------------------------------------------------------ main

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        if let Err(e) = child_main(&args[1..]) {
            eprintln!("torture: child {:?}: {e}", args.get(1));
            std::process::exit(1);
        }
        return;
    }
    let code = match parent(&args) {
        Ok(ok) => i32::from(!ok),
        Err(e) => {
            eprintln!("torture: {e}");
            2
        }
    };
    kill_all();
    std::process::exit(code);
}

fn parent(args: &[String]) -> Res<bool> {
    let (mut seconds, mut selected) = (60u64, TRIALS.to_vec());
    for pair in args.chunks(2) {
        let list: Vec<&str> = pair.get(1).map_or(vec![], |v| v.split(',').collect());
        match pair[0].as_str() {
            "--seconds" if list.len() == 1 => seconds = list[0].parse()?,
            "--skip" => selected.retain(|t| !list.contains(t)),
            "--only" => selected.retain(|t| list.contains(t)),
            _ => Err("usage: torture [--seconds N] [--skip|--only TRIAL,..]")?,
        }
    }
    let limit = Duration::from_secs(seconds * 2 + 180);
    std::thread::spawn(move || {
        sleep(limit);
        eprintln!("torture: WATCHDOG: still running after {limit:?}; killing everything");
        kill_all();
        std::process::exit(3);
    });
    let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let mut ctx = Ctx {
        trial: "",
        exe: std::env::current_exe()?,
        status_dir: private_dir("mmipc-torture-st-")?,
        roots: Vec::new(),
        rng: Rng(epoch.as_nanos() as u64),
        spawned: 0,
        failures: Vec::new(),
        warnings: Vec::new(),
    };
    let weight = |t: &str| [3, 3, 2, 0, 2][TRIALS.iter().position(|x| *x == t).unwrap_or(3)];
    let total = selected.iter().map(|t| weight(t)).sum::<u64>().max(1);
    eprintln!("torture: {seconds} s over {selected:?}");
    let mut rows = Vec::new();
    for t in selected {
        let budget = Duration::from_secs(seconds * weight(t) / total);
        let mut row = Row::default();
        (ctx.trial, row.trial) = (t, t);
        eprintln!("torture: [{t}] starting ({budget:?})");
        let done = match t {
            "pubkill" => trial_pubkill(&mut ctx, budget, &mut row),
            "subkill" => trial_subkill(&mut ctx, budget, &mut row),
            "stop" => trial_stop(&mut ctx, budget, &mut row),
            "churn" => trial_churn(&mut ctx, &mut row),
            _ => trial_hostile(&mut ctx, budget, &mut row),
        };
        if let Err(e) = done {
            ctx.fail(format!("trial aborted: {e}"));
            row.notes = format!("ABORTED: {e}");
        }
        kill_all();
        if let Some(root) = ctx.roots.last_mut() {
            root.2 = Instant::now();
        }
        rows.push(row);
    }
    // All processes are gone: what a final clean leaves has leaked. `clean` leaves temporary
    // files alone for their first 10 s (one may be an endpoint being born), so wait that long
    // after the end of a trial that left some.
    for (t, dir, ended) in std::mem::take(&mut ctx.roots) {
        let temps = files_under(dir.path());
        let wait = Duration::from_secs(11).saturating_sub(ended.elapsed());
        if !wait.is_zero() && temps.iter().any(|f| f.to_string_lossy().ends_with(".tmp")) {
            eprintln!("torture: [{t}] waiting {wait:.1?} for the grace of temporary files");
            sleep(wait);
        }
        let row = rows.iter_mut().find(|r| r.trial == t).expect("a row");
        ctx.trial = t;
        row.cleaned = mmipc::inspect::clean(dir.path(), false)?.len();
        let left = files_under(dir.path());
        row.leaked = left.len();
        if let Some(f) = left.first() {
            let n = left.len();
            ctx.fail(format!("{n} files left after a final clean: {f:?}.."));
        }
    }
    let head = "| trial | iterations | kills/stops/mutations | messages checked | lost | torn \
                | duplicated | reordered | cleaned at end | leaked files | notes |";
    println!("{head}\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for r in &rows {
        let n = [CHECKED, LOST, TORN, DUP, REORDER].map(|i| r.n[i].to_string());
        let (t, i, k, c, l) = (r.trial, r.iters, r.kills, r.cleaned, r.leaked);
        let (n, notes) = (n.join(" | "), &r.notes);
        println!("| {t} | {i} | {k} | {n} | {c} | {l} | {notes} |");
        ctx.trial = r.trial;
        if [LOST, TORN, DUP, REORDER].iter().any(|&i| r.n[i] > 0) {
            ctx.fail("messages lost, torn, duplicated or out of order");
        }
    }
    for w in &ctx.warnings {
        println!("torture: WARNING {w}");
    }
    if ctx.failures.is_empty() {
        println!("\ntorture: all invariants held");
    } else {
        println!("\ntorture: {} FAILURE(S):", ctx.failures.len());
        ctx.failures.iter().for_each(|f| println!("  - {f}"));
    }
    Ok(ctx.failures.is_empty())
}
