//! Latency and throughput of the shared-memory ring between two processes, with a Unix domain
//! socket measured in the same run as a reference.
//!
//! ```text
//! cargo run --release -p mmipc --example ring_bench                  # full run, about a minute
//! cargo run --release -p mmipc --example ring_bench -- --quick       # smoke run, a few seconds
//! cargo run --release -p mmipc --example ring_bench -- --sizes 8,64 --modes spin,park
//! cargo run --release -p mmipc --example ring_bench -- --help
//! ```
//!
//! The program re-executes itself (`std::env::current_exe()`) as the peer process, passing a
//! hidden first argument with the role, the segment or socket path, the wait mode, the payload
//! size and the run time. Every row gets a fresh peer and fresh rings.
//!
//! * **Ping-pong**: the parent writes a message on a 1 MiB ring, the child echoes it back on a
//!   second 1 MiB ring; the parent records each round trip (`Instant` before the write, after
//!   the reply arrived) in an HDR histogram, after a warm-up that is not recorded.
//! * **Throughput**: the child writes messages as fast as it can for a fixed time, then an end
//!   marker carrying its count and checksum; the parent reads, checks and counts them.
//! * Each for the wait modes `spin`, `default` and `park` (both sides alike), then over a Unix
//!   domain socket (u32 length prefix, blocking `write_all`/`read_exact`), per size, so that
//!   drift of the machine affects both.
//! * Every message carries its sequence number in its first and (from 16 bytes) last 8 bytes,
//!   checked on every message; every 1000th message is filled with a pattern checked byte by
//!   byte, outside the timed interval.
//! * The two processes are pinned to different CPUs when at least two are available.
//!
//! `--spin-sweep` measures 64-byte ping-pong with `WaitStrategy::SpinThenPark` windows from 0
//! to 200 µs instead, back to back and with 1 ms pauses, with the CPU time and the sleeps it
//! costs: the data for choosing `mmipc::ring::DEFAULT_SPIN` (`--windows 0,10,30` picks other
//! windows, in µs).

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    bench::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("ring_bench needs a Unix system (shared memory files and Unix domain sockets)");
}

#[cfg(unix)]
mod bench {
    use std::cell::Cell;
    use std::error::Error;
    use std::ffi::OsString;
    use std::fmt::Write as _;
    use std::io::{BufReader, ErrorKind, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitCode, Stdio};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use hdrhistogram::Histogram;
    use mmipc::ring::{DEFAULT_SPIN, RingError, RingSegment, WaitStrategy};

    type Res<T> = Result<T, Box<dyn Error>>;

    /// Hidden first argument of the re-executed peer, followed by `key=value` pairs.
    const PEER_ARG: &str = "--ring-bench-peer";
    /// Capacity of every ring unless `--capacity` says otherwise.
    const RING_CAPACITY: usize = 1 << 20;
    /// Every this many messages, the whole payload is a pattern checked byte by byte.
    const SAMPLE_EVERY: u64 = 1000;
    /// First word of the end-of-stream marker of a throughput run (never a sequence number).
    const END_MARK: u64 = u64::MAX;
    /// Length of the end marker: `END_MARK`, message count, checksum.
    const END_LEN: usize = 24;
    /// Longest wait for the peer outside the timed part (start-up, exit, a stalled read).
    const IO_TIMEOUT: Duration = Duration::from_secs(20);
    /// Read buffer of the socket reader.
    const SOCKET_BUFFER: usize = 256 << 10;
    /// Largest payload accepted on the command line.
    const MAX_SIZE: usize = 64 << 20;
    /// Pause between pings in the "sparse" part of the spin sweep.
    const SPARSE_GAP: Duration = Duration::from_millis(1);

    pub fn main() -> ExitCode {
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let result = if args.first().is_some_and(|a| a == PEER_ARG) {
            peer_main(&args[1..])
        } else {
            parent_main(&args)
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let who = if args.first().is_some_and(|a| a == PEER_ARG) {
                    "ring_bench peer"
                } else {
                    "ring_bench"
                };
                eprintln!("{who}: error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Wait modes, payloads, checks
    // ---------------------------------------------------------------------------------------

    /// A ring wait mode, used by both sides of a row.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Spin,
        Default,
        Park,
        /// `SpinThenPark` with an explicit window (the spin sweep).
        SpinFor(Duration),
    }

    impl Mode {
        fn strategy(self) -> WaitStrategy {
            match self {
                Mode::Spin => WaitStrategy::Spin,
                Mode::Default => WaitStrategy::default(),
                Mode::Park => WaitStrategy::Park,
                Mode::SpinFor(d) => WaitStrategy::SpinThenPark(d),
            }
        }

        /// The name on the command line and in the peer's arguments.
        fn arg(self) -> String {
            match self {
                Mode::Spin => "spin".into(),
                Mode::Default => "default".into(),
                Mode::Park => "park".into(),
                Mode::SpinFor(d) => format!("spin{}ns", d.as_nanos()),
            }
        }

        fn parse(s: &str) -> Option<Mode> {
            match s {
                "spin" => Some(Mode::Spin),
                "default" => Some(Mode::Default),
                "park" => Some(Mode::Park),
                _ => {
                    let ns = s.strip_prefix("spin")?.strip_suffix("ns")?.parse().ok()?;
                    Some(Mode::SpinFor(Duration::from_nanos(ns)))
                }
            }
        }
    }

    fn word(b: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(w)
    }

    /// Byte `i` of the pattern of message `seq`.
    #[inline]
    fn pattern_byte(seq: u64, i: usize) -> u8 {
        let i = i as u64;
        ((i ^ (i >> 8) ^ (i >> 16))
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(seq.wrapping_mul(0x85EB_CA6B))
            >> 24) as u8
    }

    /// End of the patterned body: the tail word is written from 16 bytes on.
    fn body_end(size: usize) -> usize {
        if size >= 16 { size - 8 } else { size }
    }

    /// Writes the sequence number into `buf` (head, and inverted tail from 16 bytes), and the
    /// byte pattern of `seq` into the body if `full`.
    fn stamp(buf: &mut [u8], seq: u64, full: bool) {
        let n = buf.len();
        if full {
            for (i, b) in buf[8..body_end(n)].iter_mut().enumerate() {
                *b = pattern_byte(seq, i + 8);
            }
        }
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        if n >= 16 {
            buf[n - 8..].copy_from_slice(&(!seq).to_le_bytes());
        }
    }

    /// Checks a message stamped by [`stamp`].
    fn check(msg: &[u8], size: usize, seq: u64, full: bool) -> Res<()> {
        if msg.len() != size {
            return Err(format!("message {seq}: {} bytes, expected {size}", msg.len()).into());
        }
        let head = word(msg, 0);
        if head != seq {
            return Err(format!("message {seq}: sequence number {head} in the head").into());
        }
        if size >= 16 && word(msg, size - 8) != !seq {
            return Err(format!("message {seq}: tail word does not match").into());
        }
        if full {
            let end = body_end(size);
            if let Some(i) = (8..end).find(|&i| msg[i] != pattern_byte(seq, i)) {
                return Err(format!("message {seq}: byte {i} differs from what was sent").into());
            }
        }
        Ok(())
    }

    /// One term of the running checksum of sequence numbers.
    fn mix(seq: u64) -> u64 {
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
    }

    /// How many messages between two looks at the clock in a throughput loop.
    fn clock_every(size: usize) -> u64 {
        ((1usize << 20) / size.max(1)).clamp(1, 1024) as u64
    }

    // ---------------------------------------------------------------------------------------
    // OS helpers: CPU time, pinning, machine description
    // ---------------------------------------------------------------------------------------

    /// CPU time and context switches of this thread (Linux) or process.
    #[derive(Debug, Default, Clone, Copy)]
    struct Usage {
        cpu_ns: u64,
        /// Voluntary context switches: here, almost only futex sleeps.
        vcsw: u64,
        ivcsw: u64,
    }

    impl Usage {
        fn now() -> Usage {
            #[cfg(target_os = "linux")]
            let who = libc::RUSAGE_THREAD;
            #[cfg(not(target_os = "linux"))]
            let who = libc::RUSAGE_SELF;
            let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: `ru` is a writable `rusage` that outlives the call; getrusage only
            // writes into it.
            if unsafe { libc::getrusage(who, ru.as_mut_ptr()) } != 0 {
                return Usage::default();
            }
            // SAFETY: `rusage` is plain integers, so the zeroed value is initialised, and
            // getrusage succeeded in filling it.
            let ru = unsafe { ru.assume_init() };
            let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
            Usage {
                cpu_ns: tv(ru.ru_utime) + tv(ru.ru_stime),
                vcsw: ru.ru_nvcsw as u64,
                ivcsw: ru.ru_nivcsw as u64,
            }
        }

        fn since(self, before: Usage) -> Usage {
            Usage {
                cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
                vcsw: self.vcsw.saturating_sub(before.vcsw),
                ivcsw: self.ivcsw.saturating_sub(before.ivcsw),
            }
        }

        fn to_line(self, msgs: u64) -> String {
            format!(
                "usage cpu_ns={} vcsw={} ivcsw={} msgs={msgs}",
                self.cpu_ns, self.vcsw, self.ivcsw
            )
        }

        fn from_line(out: &str) -> Option<(Usage, u64)> {
            let line = out.lines().find(|l| l.starts_with("usage "))?;
            let mut u = Usage::default();
            let mut msgs = 0;
            for kv in line.split_whitespace().skip(1) {
                let (k, v) = kv.split_once('=')?;
                let v: u64 = v.parse().ok()?;
                match k {
                    "cpu_ns" => u.cpu_ns = v,
                    "vcsw" => u.vcsw = v,
                    "ivcsw" => u.ivcsw = v,
                    "msgs" => msgs = v,
                    _ => {}
                }
            }
            Some((u, msgs))
        }
    }

    /// CPUs this process may run on.
    #[cfg(target_os = "linux")]
    fn allowed_cpus() -> Vec<usize> {
        let mut set = std::mem::MaybeUninit::<libc::cpu_set_t>::zeroed();
        // SAFETY: `set` is a writable cpu_set_t of the size passed; the kernel writes at most
        // that many bytes.
        let r = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set.as_mut_ptr())
        };
        if r != 0 {
            return Vec::new();
        }
        // SAFETY: a cpu_set_t is a plain bit array: zeroed is initialised, and the call filled it.
        let set = unsafe { set.assume_init() };
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `c` is below CPU_SETSIZE, the number of bits in the set.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }

    #[cfg(not(target_os = "linux"))]
    fn allowed_cpus() -> Vec<usize> {
        Vec::new()
    }

    /// Pins the calling thread to `cpu`; false if the system refused.
    #[cfg(target_os = "linux")]
    fn pin_to(cpu: usize) -> bool {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let set = std::mem::MaybeUninit::<libc::cpu_set_t>::zeroed();
        // SAFETY: a zeroed cpu_set_t is the empty set; `cpu` is below CPU_SETSIZE (checked
        // above), so CPU_SET stays within the bit array.
        let set = unsafe {
            let mut set = set.assume_init();
            libc::CPU_SET(cpu, &mut set);
            set
        };
        // SAFETY: `set` is a valid cpu_set_t of the size passed; the kernel only reads it.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
    }

    #[cfg(not(target_os = "linux"))]
    fn pin_to(_cpu: usize) -> bool {
        false
    }

    /// Kills this peer if the parent dies, so that an interrupted run leaves nothing spinning.
    fn die_with_parent() {
        #[cfg(target_os = "linux")]
        // SAFETY: PR_SET_PDEATHSIG takes a signal number; no memory is passed.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
    }

    fn cpu_model() -> String {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        };
        let model = field("model name")
            .or_else(|| field("Model"))
            .or_else(|| field("cpu model"))
            .unwrap_or_else(|| "unknown CPU".into());
        let count = info.lines().filter(|l| l.starts_with("processor")).count();
        let count = if count > 0 {
            count
        } else {
            std::thread::available_parallelism().map_or(0, |n| n.get())
        };
        format!("{model} ({count} CPUs)")
    }

    /// The current UTC date and time, `YYYY-MM-DD HH:MM:SS UTC`.
    fn utc_now() -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }

    fn fmt_size(n: usize) -> String {
        if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            format!("{} MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            format!("{} KiB", n >> 10)
        } else {
            format!("{n} B")
        }
    }

    /// `8`, `64B`, `1k`, `4KiB`, `1m`, `1MiB` (case-insensitive).
    fn parse_size(s: &str) -> Option<usize> {
        let lower = s.trim().to_ascii_lowercase();
        let t = lower.strip_suffix('b').unwrap_or(&lower);
        let (num, mult) = if let Some(n) = t.strip_suffix("mi").or_else(|| t.strip_suffix('m')) {
            (n, 1 << 20)
        } else if let Some(n) = t.strip_suffix("ki").or_else(|| t.strip_suffix('k')) {
            (n, 1 << 10)
        } else {
            (t, 1)
        };
        num.trim().parse::<usize>().ok()?.checked_mul(mult)
    }

    /// Microseconds with a precision that suits the value.
    fn fmt_us(ns: f64) -> String {
        let us = ns / 1000.0;
        if us < 10.0 {
            format!("{us:.2}")
        } else if us < 1000.0 {
            format!("{us:.1}")
        } else {
            format!("{us:.0}")
        }
    }

    /// An integer with thousands separators.
    fn fmt_count(n: f64) -> String {
        let digits = format!("{:.0}", n.max(0.0));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    fn fmt_ratio(r: Option<f64>) -> String {
        match r {
            Some(r) if r.is_finite() => {
                if r < 10.0 {
                    format!("{r:.2}×")
                } else {
                    format!("{r:.1}×")
                }
            }
            _ => "–".into(),
        }
    }

    // ---------------------------------------------------------------------------------------
    // The peer process
    // ---------------------------------------------------------------------------------------

    fn peer_main(args: &[OsString]) -> Res<()> {
        die_with_parent();
        let mut kv = std::collections::HashMap::new();
        for a in args {
            let a = a.to_str().ok_or("peer argument is not UTF-8")?.to_string();
            let (k, v) = a.split_once('=').ok_or("peer argument is not key=value")?;
            kv.insert(k.to_string(), v.to_string());
        }
        let get = |k: &str| -> Res<&str> {
            kv.get(k)
                .map(String::as_str)
                .ok_or_else(|| format!("peer argument {k} missing").into())
        };
        if let Some(cpu) = kv.get("cpu") {
            pin_to(cpu.parse()?);
        }
        let path = PathBuf::from(get("a")?);
        let mode = || -> Res<Mode> {
            let m = get("mode")?;
            Mode::parse(m).ok_or_else(|| format!("bad mode {m}").into())
        };
        let size = || -> Res<usize> { Ok(get("size")?.parse()?) };
        let run = || -> Res<Duration> { Ok(Duration::from_nanos(get("run_ns")?.parse()?)) };
        let before = Usage::now();
        let msgs = match get("role")? {
            "ring-echo" => ring_echo(&path, Path::new(get("b")?), mode()?)?,
            "ring-send" => ring_send(&path, mode()?, size()?, run()?)?,
            "uds-echo" => uds_echo(&path)?,
            "uds-send" => uds_send(&path, size()?, run()?)?,
            other => return Err(format!("unknown peer role {other}").into()),
        };
        println!("{}", Usage::now().since(before).to_line(msgs));
        Ok(())
    }

    /// Echoes every message of the ring at `ping` onto the ring at `pong` until the parent
    /// closes `ping`.
    fn ring_echo(ping: &Path, pong: &Path, mode: Mode) -> Res<u64> {
        let mut rx = RingSegment::open(ping)?.into_consumer();
        let mut tx = RingSegment::open(pong)?.into_producer();
        rx.set_wait_strategy(mode.strategy());
        tx.set_wait_strategy(mode.strategy());
        tx.write(&[])?; // ready
        let mut msgs = 0;
        loop {
            let msg = match rx.read_in_place(None) {
                Ok(msg) => msg,
                Err(RingError::Closed) => return Ok(msgs),
                Err(e) => return Err(e.into()),
            };
            let mut out = tx.reserve(msg.len(), None)?;
            out.copy_from_slice(&msg);
            out.commit()?;
            drop(msg);
            msgs += 1;
        }
    }

    /// Writes `size`-byte messages onto the ring at `path` for `run`, then the end marker.
    fn ring_send(path: &Path, mode: Mode, size: usize, run: Duration) -> Res<u64> {
        let mut tx = RingSegment::open(path)?.into_producer();
        tx.set_wait_strategy(mode.strategy());
        let mut buf = vec![0u8; size];
        let every = clock_every(size);
        let end = Instant::now() + run;
        let (mut seq, mut sum) = (0u64, 0u64);
        loop {
            stamp(&mut buf, seq, seq.is_multiple_of(SAMPLE_EVERY));
            tx.write(&buf)?;
            sum = sum.wrapping_add(mix(seq));
            seq += 1;
            if seq.is_multiple_of(every) && Instant::now() >= end {
                break;
            }
        }
        tx.write(&end_marker(seq, sum))?;
        Ok(seq)
    }

    fn end_marker(count: u64, sum: u64) -> [u8; END_LEN] {
        let mut m = [0u8; END_LEN];
        m[..8].copy_from_slice(&END_MARK.to_le_bytes());
        m[8..16].copy_from_slice(&count.to_le_bytes());
        m[16..].copy_from_slice(&sum.to_le_bytes());
        m
    }

    fn connect(path: &Path) -> Res<(BufReader<UnixStream>, UnixStream)> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT * 3))?;
        let reader = BufReader::with_capacity(SOCKET_BUFFER, stream.try_clone()?);
        Ok((reader, stream))
    }

    /// Echoes length-prefixed frames on the socket at `path` until the parent hangs up.
    fn uds_echo(path: &Path) -> Res<u64> {
        let (mut reader, mut writer) = connect(path)?;
        writer.write_all(&0u32.to_le_bytes())?; // ready
        let mut frame = Vec::new();
        let mut msgs = 0;
        loop {
            let mut header = [0u8; 4];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(msgs),
                Err(e) => return Err(e.into()),
            }
            let len = u32::from_le_bytes(header) as usize;
            if len > MAX_SIZE {
                return Err(format!("frame of {len} bytes").into());
            }
            frame.resize(4 + len, 0);
            frame[..4].copy_from_slice(&header);
            reader.read_exact(&mut frame[4..])?;
            writer.write_all(&frame)?;
            msgs += 1;
        }
    }

    /// Writes `size`-byte frames on the socket at `path` for `run`, then the end marker.
    fn uds_send(path: &Path, size: usize, run: Duration) -> Res<u64> {
        let (_reader, mut writer) = connect(path)?;
        let mut frame = vec![0u8; 4 + size];
        frame[..4].copy_from_slice(&(size as u32).to_le_bytes());
        let every = clock_every(size);
        let end = Instant::now() + run;
        let (mut seq, mut sum) = (0u64, 0u64);
        loop {
            stamp(&mut frame[4..], seq, seq.is_multiple_of(SAMPLE_EVERY));
            writer.write_all(&frame)?;
            sum = sum.wrapping_add(mix(seq));
            seq += 1;
            if seq.is_multiple_of(every) && Instant::now() >= end {
                break;
            }
        }
        let mut last = (END_LEN as u32).to_le_bytes().to_vec();
        last.extend_from_slice(&end_marker(seq, sum));
        writer.write_all(&last)?;
        writer.flush()?;
        Ok(seq)
    }

    // ---------------------------------------------------------------------------------------
    // The parent: peers, transports, measurements
    // ---------------------------------------------------------------------------------------

    /// A running peer process, killed if dropped before [`Peer::finish`].
    struct Peer {
        child: Option<Child>,
    }

    impl Peer {
        /// An error if the peer already exited.
        fn check_alive(&mut self) -> Res<()> {
            if let Some(c) = &mut self.child
                && let Some(status) = c.try_wait()?
            {
                return Err(format!("peer exited early ({status})").into());
            }
            Ok(())
        }

        /// Waits for the peer to exit on its own and returns its CPU usage and message count.
        fn finish(mut self) -> Res<(Usage, u64)> {
            let mut child = self.child.take().ok_or("peer already finished")?;
            let deadline = Instant::now() + IO_TIMEOUT;
            let status = loop {
                if let Some(s) = child.try_wait()? {
                    break s;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("peer did not exit".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                stdout.read_to_string(&mut out)?;
            }
            if !status.success() {
                return Err(format!("peer failed ({status})").into());
            }
            Usage::from_line(&out).ok_or_else(|| "peer reported no usage".into())
        }
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            if let Some(c) = &mut self.child {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Where a run happens.
    struct Ctx {
        dir: tempfile::TempDir,
        exe: PathBuf,
        child_cpu: Option<usize>,
        capacity: usize,
        next_id: Cell<u32>,
    }

    impl Ctx {
        fn path(&self, what: &str) -> PathBuf {
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            self.dir.path().join(format!("{what}-{id}"))
        }

        fn spawn(&self, role: &str, a: &Path, extra: &[(&str, String)]) -> Res<Peer> {
            let mut cmd = Command::new(&self.exe);
            cmd.arg(PEER_ARG).arg(format!("role={role}"));
            let mut path_arg = OsString::from("a=");
            path_arg.push(a);
            cmd.arg(path_arg);
            for (k, v) in extra {
                cmd.arg(format!("{k}={v}"));
            }
            if let Some(cpu) = self.child_cpu {
                cmd.arg(format!("cpu={cpu}"));
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            Ok(Peer {
                child: Some(cmd.spawn()?),
            })
        }

        /// Binds a listening socket, starts the peer and accepts its connection.
        fn uds_peer(
            &self,
            role: &str,
            extra: &[(&str, String)],
        ) -> Res<(Peer, BufReader<UnixStream>, UnixStream)> {
            let path = self.path("uds");
            let listener = UnixListener::bind(&path)?;
            listener.set_nonblocking(true)?;
            let mut peer = self.spawn(role, &path, extra)?;
            let deadline = Instant::now() + IO_TIMEOUT;
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        peer.check_alive()?;
                        if Instant::now() >= deadline {
                            return Err("peer did not connect".into());
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            let reader = BufReader::with_capacity(SOCKET_BUFFER, stream.try_clone()?);
            Ok((peer, reader, stream))
        }
    }

    /// How long a row runs.
    #[derive(Debug, Clone, Copy)]
    struct Timing {
        warm: Duration,
        measure: Duration,
        /// Pause between pings (the sparse part of the spin sweep).
        gap: Option<Duration>,
    }

    /// Result of a ping-pong row.
    struct Latency {
        hist: Histogram<u64>,
        /// Round trips made, warm-up included (the basis of the per-message usage figures).
        total: u64,
        parent: Usage,
        child: Usage,
    }

    impl Latency {
        fn p(&self, q: f64) -> f64 {
            self.hist.value_at_quantile(q) as f64
        }
    }

    fn new_hist() -> Res<Histogram<u64>> {
        Ok(Histogram::new_with_bounds(1, 60_000_000_000, 3)?)
    }

    /// Runs the ping-pong loop: `send` sends one message, `receive_check` waits for the echo
    /// and hands it to the closure it is given, which stops the clock and then checks it.
    /// Returns the histogram of the measured round trips, the number of round trips (warm-up
    /// included) and this thread's CPU usage over all of them.
    fn ping_pong_loop(
        size: usize,
        t: Timing,
        mut send: impl FnMut(&[u8]) -> Res<()>,
        mut receive_check: impl FnMut(&mut dyn FnMut(&[u8]) -> Res<()>) -> Res<()>,
    ) -> Res<(Histogram<u64>, u64, Usage)> {
        let mut hist = new_hist()?;
        let mut buf = vec![0u8; size];
        let before = Usage::now();
        let start = Instant::now();
        let (warm_end, end) = (start + t.warm, start + t.warm + t.measure);
        let mut seq = 0u64;
        loop {
            let full = seq.is_multiple_of(SAMPLE_EVERY);
            stamp(&mut buf, seq, full);
            let mut t1 = None;
            let t0 = Instant::now();
            send(&buf)?;
            receive_check(&mut |msg| {
                t1 = Some(Instant::now());
                check(msg, size, seq, full)
            })?;
            let t1 = t1.ok_or("no reply")?;
            if t0 >= warm_end {
                hist.saturating_record((t1 - t0).as_nanos() as u64);
            }
            seq += 1;
            if t1 >= end {
                break;
            }
            if let Some(gap) = t.gap {
                std::thread::sleep(gap);
            }
        }
        Ok((hist, seq, Usage::now().since(before)))
    }

    fn ring_ping_pong(ctx: &Ctx, mode: Mode, size: usize, t: Timing) -> Res<Latency> {
        let (ping, pong) = (ctx.path("ping"), ctx.path("pong"));
        let mut tx = RingSegment::create(&ping, ctx.capacity)?.into_producer();
        let mut rx = RingSegment::create(&pong, ctx.capacity)?.into_consumer();
        tx.set_wait_strategy(mode.strategy());
        rx.set_wait_strategy(mode.strategy());
        let b = pong
            .to_str()
            .ok_or("temporary path is not UTF-8")?
            .to_string();
        let mut peer = ctx.spawn("ring-echo", &ping, &[("b", b), ("mode", mode.arg())])?;
        // Wait for the peer's ready message, watching that it is still alive.
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match rx.read_in_place(Some(Instant::now() + Duration::from_millis(50))) {
                Ok(hello) if hello.is_empty() => break,
                Ok(hello) => return Err(format!("ready message of {} bytes", hello.len()).into()),
                Err(RingError::Timeout) if Instant::now() < deadline => peer.check_alive()?,
                Err(e) => return Err(format!("waiting for the peer: {e}").into()),
            }
        }
        let read_deadline = Instant::now() + t.warm + t.measure + IO_TIMEOUT;
        let (hist, total, parent) = ping_pong_loop(
            size,
            t,
            |buf| Ok(tx.write(buf)?),
            |check| {
                let msg = rx.read_in_place(Some(read_deadline))?;
                check(&msg)
            },
        )?;
        drop(tx); // the peer sees the ring closed and exits
        let (child, echoed) = peer.finish()?;
        if echoed != total {
            return Err(format!("peer echoed {echoed} messages, {total} sent").into());
        }
        Ok(Latency {
            hist,
            total,
            parent,
            child,
        })
    }

    fn read_frame(reader: &mut BufReader<UnixStream>, buf: &mut Vec<u8>) -> Res<()> {
        let mut header = [0u8; 4];
        reader.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_SIZE {
            return Err(format!("frame of {len} bytes").into());
        }
        buf.resize(len, 0);
        reader.read_exact(buf)?;
        Ok(())
    }

    fn uds_ping_pong(ctx: &Ctx, size: usize, t: Timing) -> Res<Latency> {
        let (peer, mut reader, mut writer) = ctx.uds_peer("uds-echo", &[])?;
        let mut rbuf = Vec::new();
        read_frame(&mut reader, &mut rbuf)?;
        if !rbuf.is_empty() {
            return Err("bad ready frame".into());
        }
        let mut frame = Vec::with_capacity(4 + size);
        let (hist, total, parent) = ping_pong_loop(
            size,
            t,
            |buf| {
                frame.clear();
                frame.extend_from_slice(&(buf.len() as u32).to_le_bytes());
                frame.extend_from_slice(buf);
                Ok(writer.write_all(&frame)?)
            },
            |check| {
                read_frame(&mut reader, &mut rbuf)?;
                check(&rbuf)
            },
        )?;
        drop(writer);
        drop(reader); // the peer reads end-of-file and exits
        let (child, echoed) = peer.finish()?;
        if echoed != total {
            return Err(format!("peer echoed {echoed} messages, {total} sent").into());
        }
        Ok(Latency {
            hist,
            total,
            parent,
            child,
        })
    }

    /// Result of a throughput row.
    struct Throughput {
        msgs: u64,
        elapsed: Duration,
    }

    impl Throughput {
        fn per_sec(&self) -> f64 {
            self.msgs as f64 / self.elapsed.as_secs_f64()
        }
    }

    /// Checks and counts the messages of a throughput run; times the part after the warm-up.
    struct Tally {
        size: usize,
        warm: Duration,
        every: u64,
        next: u64,
        sum: u64,
        first: Option<Instant>,
        /// Time and count at the end of the warm-up.
        start: Option<(Instant, u64)>,
    }

    impl Tally {
        fn new(size: usize, warm: Duration) -> Tally {
            Tally {
                size,
                warm,
                every: clock_every(size),
                next: 0,
                sum: 0,
                first: None,
                start: None,
            }
        }

        /// Takes one message; `Some` once the end marker arrived.
        fn take(&mut self, msg: &[u8]) -> Res<Option<Throughput>> {
            if msg.len() == END_LEN && word(msg, 0) == END_MARK {
                let now = Instant::now();
                let (count, sum) = (word(msg, 8), word(msg, 16));
                if count != self.next {
                    return Err(format!("peer sent {count} messages, {} arrived", self.next).into());
                }
                if sum != self.sum {
                    return Err("checksum of sequence numbers differs".into());
                }
                let (t0, n0) = self.start.unwrap_or((self.first.unwrap_or(now), 0));
                return Ok(Some(Throughput {
                    msgs: count - n0,
                    elapsed: now - t0,
                }));
            }
            let seq = self.next;
            check(msg, self.size, seq, seq.is_multiple_of(SAMPLE_EVERY))?;
            self.sum = self.sum.wrapping_add(mix(seq));
            self.next += 1;
            if self.start.is_none() && (seq == 0 || self.next.is_multiple_of(self.every)) {
                let now = Instant::now();
                let first = *self.first.get_or_insert(now);
                if now - first >= self.warm {
                    self.start = Some((now, self.next));
                }
            }
            Ok(None)
        }
    }

    fn ring_throughput(ctx: &Ctx, mode: Mode, size: usize, t: Timing) -> Res<Throughput> {
        let path = ctx.path("data");
        let mut rx = RingSegment::create(&path, ctx.capacity)?.into_consumer();
        rx.set_wait_strategy(mode.strategy());
        let run = t.warm + t.measure;
        let peer = ctx.spawn(
            "ring-send",
            &path,
            &[
                ("mode", mode.arg()),
                ("size", size.to_string()),
                ("run_ns", run.as_nanos().to_string()),
            ],
        )?;
        let deadline = Instant::now() + run + IO_TIMEOUT;
        let mut tally = Tally::new(size, t.warm);
        let result = loop {
            let msg = rx.read_in_place(Some(deadline))?;
            if let Some(r) = tally.take(&msg)? {
                break r;
            }
        };
        peer.finish()?;
        Ok(result)
    }

    fn uds_throughput(ctx: &Ctx, size: usize, t: Timing) -> Res<Throughput> {
        let run = t.warm + t.measure;
        let (peer, mut reader, _writer) = ctx.uds_peer(
            "uds-send",
            &[
                ("size", size.to_string()),
                ("run_ns", run.as_nanos().to_string()),
            ],
        )?;
        let mut tally = Tally::new(size, t.warm);
        let mut buf = Vec::new();
        let result = loop {
            read_frame(&mut reader, &mut buf)?;
            if let Some(r) = tally.take(&buf)? {
                break r;
            }
        };
        peer.finish()?;
        Ok(result)
    }

    // ---------------------------------------------------------------------------------------
    // Command line, plan, report
    // ---------------------------------------------------------------------------------------

    struct Options {
        quick: bool,
        sizes: Option<Vec<usize>>,
        modes: Vec<Mode>,
        uds: bool,
        duration: Option<Duration>,
        spin_sweep: bool,
        /// Spin windows of the sweep, in µs.
        windows: Vec<u64>,
        capacity: usize,
        pin: bool,
    }

    const USAGE: &str = "\
usage: ring_bench [--quick] [--sizes 8,64,1k,...] [--modes spin,default,park] [--no-uds]
                  [--duration SECS] [--capacity SIZE] [--no-pin]

  --quick          short rows (a smoke run of a few seconds)
  --sizes LIST     payload sizes for both tests (suffixes k/KiB, m/MiB); default
                   ping-pong 8,64,1k,64k and throughput 64,4k,1m
  --modes LIST     ring wait modes: spin, default, park (default: all three)
  --no-uds         skip the Unix domain socket reference
  --duration SECS  measured time of each row (default 1.5 s ping-pong, 1 s throughput)
  --capacity SIZE  capacity of each ring, a power of two (default 1 MiB)
  --no-pin         do not pin the two processes to different CPUs";

    fn parse_options(args: &[OsString]) -> Res<Option<Options>> {
        let mut o = Options {
            quick: false,
            sizes: None,
            modes: vec![Mode::Spin, Mode::Default, Mode::Park],
            uds: true,
            duration: None,
            spin_sweep: false,
            windows: vec![0, 5, 20, 50, 100, 200],
            capacity: RING_CAPACITY,
            pin: true,
        };
        let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || -> Res<String> {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{name} needs a value").into())
            };
            match name.as_str() {
                "--quick" => o.quick = true,
                "--no-uds" => o.uds = false,
                "--no-pin" => o.pin = false,
                "--spin-sweep" => o.spin_sweep = true,
                "--sizes" => {
                    let mut sizes = Vec::new();
                    for s in value()?.split(',').filter(|s| !s.trim().is_empty()) {
                        let n = parse_size(s).ok_or_else(|| format!("bad size {s:?}"))?;
                        if !(8..=MAX_SIZE).contains(&n) {
                            return Err(format!("size {s} is not between 8 B and 64 MiB").into());
                        }
                        sizes.push(n);
                    }
                    if sizes.is_empty() {
                        return Err("--sizes needs at least one size".into());
                    }
                    o.sizes = Some(sizes);
                }
                "--modes" => {
                    let mut modes = Vec::new();
                    for m in value()?.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                        match m {
                            "spin" | "default" | "park" => modes.push(Mode::parse(m).ok_or(m)?),
                            _ => {
                                return Err(
                                    format!("unknown mode {m:?} (spin, default, park)").into()
                                );
                            }
                        }
                    }
                    o.modes = modes;
                }
                "--capacity" => {
                    let v = value()?;
                    o.capacity = parse_size(&v).ok_or_else(|| format!("bad capacity {v:?}"))?;
                }
                "--windows" => {
                    let v = value()?;
                    o.windows = v
                        .split(',')
                        .map(|w| w.trim().parse())
                        .collect::<Result<_, _>>()
                        .map_err(|_| format!("bad --windows {v:?} (microseconds)"))?;
                }
                "--duration" => {
                    let v = value()?;
                    let secs: f64 = v.parse().map_err(|_| format!("bad duration {v:?}"))?;
                    if !(0.001..=3600.0).contains(&secs) {
                        return Err("--duration must be between 0.001 and 3600 s".into());
                    }
                    o.duration = Some(Duration::from_secs_f64(secs));
                }
                "-h" | "--help" => return Ok(None),
                _ => return Err(format!("unknown argument {arg:?}\n{USAGE}").into()),
            }
        }
        Ok(Some(o))
    }

    fn parent_main(args: &[OsString]) -> Res<()> {
        let Some(opts) = parse_options(args)? else {
            println!("{USAGE}");
            return Ok(());
        };
        let cpus = allowed_cpus();
        let (pinned, child_cpu) = if opts.pin && cpus.len() >= 2 && pin_to(cpus[0]) {
            (
                format!("parent on CPU {}, peer on CPU {}", cpus[0], cpus[1]),
                Some(cpus[1]),
            )
        } else {
            ("not pinned".to_string(), None)
        };
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("ring-bench-")
                .tempdir_in(shm)?
        } else {
            tempfile::Builder::new().prefix("ring-bench-").tempdir()?
        };
        let ctx = Ctx {
            dir,
            exe: std::env::current_exe()?,
            child_cpu,
            capacity: opts.capacity,
            next_id: Cell::new(0),
        };
        let mut command = String::from("cargo run --release -p mmipc --example ring_bench");
        if !args.is_empty() {
            command.push_str(" --");
            for a in args {
                command.push(' ');
                command.push_str(&a.to_string_lossy());
            }
        }
        let mut header = String::new();
        writeln!(header, "# mmipc ring benchmark\n")?;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| format!("Linux {}", r.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_string());
        writeln!(
            header,
            "{} · {} · {kernel} · {pinned}",
            utc_now(),
            cpu_model()
        )?;
        writeln!(header, "\n`{command}`")?;
        eprintln!("ring_bench: {command} ({pinned})");
        let report = if opts.spin_sweep {
            spin_sweep(&ctx, &opts)?
        } else {
            full_run(&ctx, &opts)?
        };
        println!("{header}{report}");
        Ok(())
    }

    /// One measured row of the report.
    enum Row {
        Lat(Option<Mode>, Latency),
        Tput(Option<Mode>, Throughput),
    }

    fn transport(mode: Option<Mode>) -> (&'static str, String) {
        match mode {
            Some(Mode::Default) => (
                "mmipc",
                format!("default ({} µs)", DEFAULT_SPIN.as_micros()),
            ),
            Some(m) => ("mmipc", m.arg()),
            None => ("UDS", "–".into()),
        }
    }

    fn label(mode: Option<Mode>) -> String {
        mode.map_or_else(|| "UDS".into(), |m| format!("mmipc {}", m.arg()))
    }

    fn full_run(ctx: &Ctx, opts: &Options) -> Res<String> {
        let (pp_sizes, tp_sizes) = match &opts.sizes {
            Some(s) => (s.clone(), s.clone()),
            None => (vec![8, 64, 1 << 10, 64 << 10], vec![64, 4 << 10, 1 << 20]),
        };
        let (warm, pp_measure, tp_measure) = if opts.quick {
            (
                Duration::from_millis(20),
                Duration::from_millis(100),
                Duration::from_millis(100),
            )
        } else {
            (
                Duration::from_millis(200),
                Duration::from_millis(1500),
                Duration::from_secs(1),
            )
        };
        let pp = Timing {
            warm,
            measure: opts.duration.unwrap_or(pp_measure),
            gap: None,
        };
        let tp = Timing {
            measure: opts.duration.unwrap_or(tp_measure),
            ..pp
        };
        let transports: Vec<Option<Mode>> = opts
            .modes
            .iter()
            .copied()
            .map(Some)
            .chain(opts.uds.then_some(None))
            .collect();
        let rows = (pp_sizes.len() + tp_sizes.len()) * transports.len();
        let mut done = 0;
        let started = Instant::now();
        let mut progress = |what: &str, size: usize, mode: Option<Mode>, result: &str| {
            done += 1;
            let (tr, m) = transport(mode);
            eprintln!(
                "[{done:>2}/{rows}] {what:<10} {:>7} {tr:<5} {m:<16} {result}",
                fmt_size(size)
            );
        };

        let mut lat_rows: Vec<(usize, Vec<Row>)> = Vec::new();
        for &size in &pp_sizes {
            let mut rows = Vec::new();
            for &mode in &transports {
                let lat = match mode {
                    Some(m) => ring_ping_pong(ctx, m, size, pp),
                    None => uds_ping_pong(ctx, size, pp),
                }
                .map_err(|e| format!("ping-pong {} {}: {e}", fmt_size(size), label(mode)))?;
                progress(
                    "ping-pong",
                    size,
                    mode,
                    &format!("p50 {} µs", fmt_us(lat.p(0.5))),
                );
                rows.push(Row::Lat(mode, lat));
            }
            lat_rows.push((size, rows));
        }
        let mut tput_rows: Vec<(usize, Vec<Row>)> = Vec::new();
        for &size in &tp_sizes {
            let mut rows = Vec::new();
            for &mode in &transports {
                let tput = match mode {
                    Some(m) => ring_throughput(ctx, m, size, tp),
                    None => uds_throughput(ctx, size, tp),
                }
                .map_err(|e| format!("throughput {} {}: {e}", fmt_size(size), label(mode)))?;
                progress(
                    "throughput",
                    size,
                    mode,
                    &format!("{} msgs/s", fmt_count(tput.per_sec())),
                );
                rows.push(Row::Tput(mode, tput));
            }
            tput_rows.push((size, rows));
        }
        eprintln!("(rows took {:.1} s)\n", started.elapsed().as_secs_f64());

        let mut out = String::new();
        writeln!(
            out,
            "\nRings of {} in {}; per row a fresh peer process, warm-up {} ms, then {} ms \
             measured (ping-pong) / {} ms (throughput).\n",
            fmt_size(ctx.capacity),
            ctx.dir.path().parent().unwrap_or(ctx.dir.path()).display(),
            pp.warm.as_millis(),
            pp.measure.as_millis(),
            tp.measure.as_millis()
        )?;
        if !pp_sizes.is_empty() && !transports.is_empty() {
            writeln!(out, "## Ping-pong round trip (parent → peer → parent)\n")?;
            let mut table = vec![vec![
                "size".to_string(),
                "transport".into(),
                "wait".into(),
                "p50 µs".into(),
                "p99 µs".into(),
                "p99.9 µs".into(),
                "round trips".into(),
                "p50 / UDS p50".into(),
            ]];
            for (size, rows) in &lat_rows {
                let uds = rows.iter().find_map(|r| match r {
                    Row::Lat(None, l) => Some(l.p(0.5)),
                    _ => None,
                });
                for r in rows {
                    let Row::Lat(mode, l) = r else { continue };
                    let (tr, m) = transport(*mode);
                    let ratio = match mode {
                        Some(_) => uds.map(|u| l.p(0.5) / u),
                        None => None,
                    };
                    table.push(vec![
                        fmt_size(*size),
                        tr.into(),
                        m,
                        fmt_us(l.p(0.5)),
                        fmt_us(l.p(0.99)),
                        fmt_us(l.p(0.999)),
                        fmt_count(l.hist.len() as f64),
                        fmt_ratio(ratio),
                    ]);
                }
            }
            out.push_str(&markdown(&table, 3));
        }
        if !tp_sizes.is_empty() && !transports.is_empty() {
            writeln!(out, "\n## One-way throughput (peer → parent)\n")?;
            let mut table = vec![vec![
                "size".to_string(),
                "transport".into(),
                "wait".into(),
                "msgs/s".into(),
                "MB/s".into(),
                "messages".into(),
                "msgs/s / UDS".into(),
            ]];
            for (size, rows) in &tput_rows {
                let uds = rows.iter().find_map(|r| match r {
                    Row::Tput(None, t) => Some(t.per_sec()),
                    _ => None,
                });
                for r in rows {
                    let Row::Tput(mode, t) = r else { continue };
                    let (tr, m) = transport(*mode);
                    let ratio = match mode {
                        Some(_) => uds.map(|u| t.per_sec() / u),
                        None => None,
                    };
                    let mbs = t.per_sec() * *size as f64 / 1e6;
                    table.push(vec![
                        fmt_size(*size),
                        tr.into(),
                        m,
                        fmt_count(t.per_sec()),
                        if mbs < 100.0 {
                            format!("{mbs:.1}")
                        } else {
                            fmt_count(mbs)
                        },
                        fmt_count(t.msgs as f64),
                        fmt_ratio(ratio),
                    ]);
                }
            }
            out.push_str(&markdown(&table, 3));
        }
        writeln!(
            out,
            "\nmmipc: `Producer::write` (one copy in), peer echo `read_in_place` + `reserve` + \
             `commit` (one copy), parent `read_in_place` (no copy). UDS: one `write_all` of \
             length prefix + payload per message, `read_exact` through a {} KiB `BufReader`. \
             Ratios below 1× (latency) or above 1× (throughput) favour mmipc. MB = 10^6 bytes. \
             Every message's sequence number is checked, every {SAMPLE_EVERY}th message byte \
             by byte.",
            SOCKET_BUFFER >> 10
        )?;
        Ok(out)
    }

    fn spin_sweep(ctx: &Ctx, opts: &Options) -> Res<String> {
        let size = opts.sizes.as_ref().map_or(64, |s| s[0]);
        let (warm, b2b, sparse) = if opts.quick {
            (
                Duration::from_millis(20),
                Duration::from_millis(200),
                Duration::from_millis(150),
            )
        } else {
            (
                Duration::from_millis(200),
                Duration::from_millis(1500),
                Duration::from_secs(1),
            )
        };
        let b2b = Timing {
            warm,
            measure: opts.duration.unwrap_or(b2b),
            gap: None,
        };
        let sparse = Timing {
            warm: warm.min(Duration::from_millis(50)),
            measure: opts.duration.unwrap_or(sparse),
            gap: Some(SPARSE_GAP),
        };
        let mut modes = vec![Mode::Spin];
        modes.extend(
            opts.windows
                .iter()
                .map(|&us| Mode::SpinFor(Duration::from_micros(us))),
        );
        let mut table = vec![vec![
            "wait".to_string(),
            "b2b p50 µs".into(),
            "b2b p99 µs".into(),
            "b2b p99.9 µs".into(),
            "b2b sleeps/msg parent·peer".into(),
            "b2b CPU µs/msg parent·peer".into(),
            "sparse p50 µs".into(),
            "sparse p99 µs".into(),
            "sparse sleeps/msg parent·peer".into(),
            "sparse CPU µs/msg parent·peer".into(),
        ]];
        let per_msg = |l: &Latency, f: fn(&Usage) -> f64| {
            let n = l.total.max(1) as f64;
            (f(&l.parent) / n, f(&l.child) / n)
        };
        let sleeps = |u: &Usage| u.vcsw as f64;
        // The parent's pause between sparse round trips is one voluntary switch of its own.
        let sparse_sleeps = |l: &Latency| {
            let (p, c) = per_msg(l, sleeps);
            ((p - 1.0).max(0.0), c)
        };
        let cpu_us = |u: &Usage| u.cpu_ns as f64 / 1000.0;
        for (i, &mode) in modes.iter().enumerate() {
            let a = ring_ping_pong(ctx, mode, size, b2b)?;
            let b = ring_ping_pong(ctx, mode, size, sparse)?;
            let label = match mode {
                Mode::SpinFor(d) if d.is_zero() => "spin-then-park 0 µs (= park)".to_string(),
                Mode::SpinFor(d) => format!("spin-then-park {} µs", d.as_micros()),
                m => m.arg(),
            };
            eprintln!(
                "[{}/{}] {label}: b2b p50 {} µs, sparse p50 {} µs",
                i + 1,
                modes.len(),
                fmt_us(a.p(0.5)),
                fmt_us(b.p(0.5))
            );
            let pair = |(p, c): (f64, f64)| format!("{p:.2} · {c:.2}");
            let pair1 = |(p, c): (f64, f64)| format!("{p:.1} · {c:.1}");
            table.push(vec![
                label,
                fmt_us(a.p(0.5)),
                fmt_us(a.p(0.99)),
                fmt_us(a.p(0.999)),
                pair(per_msg(&a, sleeps)),
                pair1(per_msg(&a, cpu_us)),
                fmt_us(b.p(0.5)),
                fmt_us(b.p(0.99)),
                pair(sparse_sleeps(&b)),
                pair1(per_msg(&b, cpu_us)),
            ]);
        }
        let mut out = String::new();
        writeln!(
            out,
            "\n## Spin window sweep: {} ping-pong over mmipc rings\n",
            fmt_size(size)
        )?;
        out.push_str(&markdown(&table, 1));
        writeln!(
            out,
            "\nb2b: back to back, {} ms measured after {} ms warm-up. sparse: a {} ms pause \
             between round trips, {} ms measured. sleeps = voluntary context switches (futex \
             waits) per round trip, not counting the sparse pause itself; CPU = user + system time per round trip, warm-up included; \
             parent = the measuring thread, peer = the echo process.",
            b2b.measure.as_millis(),
            b2b.warm.as_millis(),
            SPARSE_GAP.as_millis(),
            sparse.measure.as_millis()
        )?;
        Ok(out)
    }

    /// A Markdown table with padded columns; columns from `numeric_from` on are right-aligned.
    fn markdown(rows: &[Vec<String>], numeric_from: usize) -> String {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            out.push('|');
            for (c, w) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                let pad = w - cell.chars().count();
                if c >= numeric_from && i > 0 {
                    out.push_str(&format!(" {}{cell} |", " ".repeat(pad)));
                } else {
                    out.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
                }
            }
            out.push('\n');
            if i == 0 {
                out.push('|');
                for (c, w) in widths.iter().enumerate() {
                    if c >= numeric_from {
                        out.push_str(&format!(" {}: |", "-".repeat(w - 1)));
                    } else {
                        out.push_str(&format!(" {} |", "-".repeat(*w)));
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}
