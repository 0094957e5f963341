//! The harness: what a run is ([`Settings`]), where its peers run ([`Ctx`]: a private
//! directory on tmpfs, the CPUs), one measurement in fresh peer processes with the check of
//! what they report ([`Ctx::measure`]), the plan of rows and rounds of the measured groups
//! ([`run_rows`]), and the peer processes of one measurement ([`Peers`]: started, read,
//! told to go, killed when they hang). `compare`, `ring` and the hooks all measure through
//! it.

use std::cell::Cell as StdCell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hdrhistogram::Histogram;

use crate::os;
use crate::peer::{PeerLine, PeerResult, PeerSpec, Role};
use crate::rows::{Group, Row, Sample, mmipc_ring_for};
use crate::transport::{LinkSpec, Mech, Pattern, SETUP_TIMEOUT};

/// Longest wait for a responder's `ready` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack on top of the planned run time before a measurement counts as hung.
pub const RUN_SLACK: Duration = Duration::from_secs(30);
/// Longest wait for peers to exit once they reported.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep at most this much of a peer's stderr for error messages.
const STDERR_KEEP: usize = 16 << 10;

/// How a run is done.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rounds per row; each round measures every mechanism once, in rotating order.
    pub rounds: usize,
    /// Unrecorded start of each ping-pong, and its recorded part.
    pub latency: (Duration, Duration),
    /// Uncounted start of each throughput or fan-out run, and its counted part.
    pub throughput: (Duration, Duration),
    /// Mechanisms to measure.
    pub mechs: Vec<Mech>,
    /// Row groups to measure.
    pub groups: Vec<Group>,
    /// Pin the initiator and the responders to different CPUs.
    pub pin: bool,
    /// mmipc ring capacity forced for every row (`None`: [`mmipc_ring_for`] the row's
    /// message size).
    pub mmipc_ring: Option<usize>,
    /// How long the idle rows wait.
    pub idle: Duration,
    /// Payload sizes of every measured row instead of each group's own ([`Group::sizes`]).
    pub sizes: Option<Vec<usize>>,
    /// A `--quick` run: the groups' [`Group::quick_sizes`].
    pub quick: bool,
    /// Pause of the pinger between two round trips (none: back to back).
    pub gap: Duration,
    /// mmipc wait strategy `SpinThenPark(window)` instead of the mechanism's (ring alone).
    pub spin_window: Option<Duration>,
    /// The pinger checks echoes by their sequence words and every 1024th whole, instead of
    /// comparing every echo whole.
    pub sampled_check: bool,
}

impl Settings {
    /// The mmipc ring capacity of rows of `size`-byte messages.
    pub fn mmipc_ring(&self, size: usize) -> usize {
        self.mmipc_ring.unwrap_or_else(|| mmipc_ring_for(size))
    }

    /// Payload sizes of the rows of `group`.
    pub fn sizes(&self, group: Group) -> &[usize] {
        match &self.sizes {
            Some(sizes) if !group.sizes().is_empty() => sizes,
            _ if self.quick => group.quick_sizes(),
            _ => group.sizes(),
        }
    }

    /// Whether rows of `group` are to be measured.
    pub fn wants(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }

    /// Which of `mechs` are to be measured.
    pub fn mechs_among(&self, mechs: &[Mech]) -> Vec<Mech> {
        mechs
            .iter()
            .copied()
            .filter(|m| self.mechs.contains(m))
            .collect()
    }

    fn timing(&self, group: Group) -> (Duration, Duration) {
        match group {
            Group::Latency => self.latency,
            _ => self.throughput,
        }
    }
}

/// Where and how peers run.
pub struct Ctx {
    exe: PathBuf,
    root: tempfile::TempDir,
    tag: String,
    next: StdCell<u64>,
    /// CPU of the initiator, CPU of the responders.
    pub cpus: Option<(usize, usize)>,
}

impl Ctx {
    /// The private directory of this run (on tmpfs when there is one).
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// This executable, which the peers run.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Prepares a run: a private directory on tmpfs, and the CPUs to pin to.
    pub fn new(pin: bool) -> Result<Ctx> {
        let shm = Path::new("/dev/shm");
        let builder = tempfile::Builder::new()
            .prefix("mmipc-bench-")
            .tempdir_in(shm);
        let root = match builder {
            Ok(dir) => dir,
            Err(_) => tempfile::Builder::new()
                .prefix("mmipc-bench-")
                .tempdir()
                .context("temporary directory")?,
        };
        let cpus = mmipc_benchkit::os::cpu_pair(pin);
        Ok(Ctx {
            exe: std::env::current_exe().context("path of this executable")?,
            root,
            tag: format!("b{}", std::process::id()),
            next: StdCell::new(0),
            cpus,
        })
    }

    /// "initiator on CPU 0, responders on CPU 1" or "not pinned".
    pub fn pinning(&self) -> String {
        match self.cpus {
            Some((a, b)) => format!("initiator on CPU {a}, responders on CPU {b}"),
            None => "not pinned".into(),
        }
    }

    /// A fresh private directory and a unique name for one measurement.
    pub fn fresh(&self) -> Result<(PathBuf, String)> {
        use std::os::unix::fs::DirBuilderExt;
        let n = self.next.get();
        self.next.set(n + 1);
        let name = format!("{}-{n}", self.tag);
        let dir = self.root.path().join(&name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("create {}", dir.display()))?;
        Ok((dir, name))
    }

    /// One measurement of `mech` for the row of `group` and `size` (to the group's first
    /// number of receivers), in fresh processes.
    pub fn measure(&self, s: &Settings, group: Group, size: usize, mech: Mech) -> Result<Sample> {
        self.measure_fan(s, (group, size, group.fan_outs()[0]), mech)
    }

    /// One measurement of `mech` for the row of `group`, `size` and `receivers`, in fresh
    /// processes.
    pub fn measure_fan(
        &self,
        s: &Settings,
        row: (Group, usize, usize),
        mech: Mech,
    ) -> Result<Sample> {
        let (dir, name) = self.fresh()?;
        let result = self.measure_in(s, row, mech, &dir, name);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn measure_in(
        &self,
        s: &Settings,
        (group, size, receivers): (Group, usize, usize),
        mech: Mech,
        dir: &Path,
        name: String,
    ) -> Result<Sample> {
        let (warm, measure) = s.timing(group);
        let link = LinkSpec {
            mech,
            pattern: group.pattern(),
            size,
            receivers,
            dir: dir.to_path_buf(),
            name,
            index: 0,
            mmipc_ring: Some(s.mmipc_ring(size)),
            spin_window_ns: s.spin_window.map(|w| w.as_nanos() as u64),
        };
        let run = warm + measure;
        let limit = READY_TIMEOUT + 2 * SETUP_TIMEOUT + run + RUN_SLACK;
        let spec = |role: Role, index: usize, cpu: Option<usize>, peers: Vec<String>| PeerSpec {
            role,
            link: LinkSpec {
                index,
                ..link.clone()
            },
            cpu,
            warm_ms: warm.as_millis() as u64,
            measure_ms: measure.as_millis() as u64,
            limit_ms: limit.as_millis() as u64,
            peers,
            count: 0,
            gap_us: s.gap.as_micros() as u64,
            sampled_check: s.sampled_check,
        };
        let (responder, initiator) = match group.pattern() {
            Pattern::PingPong => (Role::Echo, Role::Ping),
            Pattern::OneWay => (Role::Receive, Role::Send),
        };
        let mut peers = Peers::new();
        let mut infos = Vec::new();
        for i in 0..receivers {
            let label = format!("{} {responder:?} peer {i}", mech.id());
            let id = peers.spawn(
                &self.exe,
                &spec(responder, i, self.cpus.map(|c| c.1), vec![]),
                label,
            )?;
            match peers.next(id, Instant::now() + READY_TIMEOUT)? {
                PeerLine::Ready { info } => infos.push(info),
                other => bail!("expected a ready line, got {other:?}"),
            }
        }
        let init = peers.spawn(
            &self.exe,
            &spec(initiator, 0, self.cpus.map(|c| c.0), infos),
            format!("{} {initiator:?} peer", mech.id()),
        )?;
        let setup = Instant::now() + 2 * SETUP_TIMEOUT;
        peers.expect(init, &PeerLine::Connected, setup)?;
        for i in 0..receivers {
            peers.expect(i, &PeerLine::Accepted, setup)?;
        }
        peers.go(init)?;
        let deadline = Instant::now() + run + RUN_SLACK;
        let sent = peers.done(init, deadline)?;
        let mut got = Vec::new();
        for i in 0..receivers {
            got.push(peers.done(i, deadline)?);
        }
        peers.finish(Instant::now() + EXIT_TIMEOUT)?;
        evaluate(sent, got, size)
    }
}

/// Checks what the peers of one measurement reported against each other.
fn evaluate(sent: PeerResult, got: Vec<PeerResult>, size: usize) -> Result<Sample> {
    match (sent, got.as_slice()) {
        (
            PeerResult::Pinged { count, hist, cpu },
            [
                PeerResult::Echoed {
                    count: echoed,
                    cpu: echo_cpu,
                },
            ],
        ) => {
            ensure!(
                *echoed == count,
                "the echoer echoed {echoed} messages, the pinger sent {count}"
            );
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
            for (v, n) in hist {
                h.record_n(v, n).context("histogram value")?;
            }
            ensure!(!h.is_empty(), "no round trip was recorded");
            Ok(Sample::Latency {
                hist: h,
                round_trips: count,
                cpu: [cpu, *echo_cpu],
            })
        }
        (
            PeerResult::Sent {
                count,
                sum,
                measured: sent_measured,
                cpu_ns,
            },
            receivers,
        ) if !receivers.is_empty() => {
            let mut rates = Vec::new();
            let mut measured = u64::MAX;
            for (i, r) in receivers.iter().enumerate() {
                let PeerResult::Received {
                    count: c,
                    sum: s,
                    measured_msgs,
                    measured_ns,
                } = r
                else {
                    bail!("receiver {i} reported {r:?}");
                };
                ensure!(
                    *c == count,
                    "receiver {i} got {c} messages, the sender sent {count}"
                );
                ensure!(
                    *s == sum,
                    "receiver {i}: checksum differs from the sender's"
                );
                ensure!(*measured_ns > 0, "receiver {i} measured no time");
                rates.push(*measured_msgs as f64 * 1e9 / *measured_ns as f64);
                measured = measured.min(*measured_msgs);
            }
            let rate = rates.iter().copied().fold(f64::INFINITY, f64::min);
            Ok(Sample::Throughput {
                msgs_per_s: rate,
                bytes_per_s: rate * size as f64,
                per_receiver: rates,
                messages: count,
                measured,
                sender_cpu_ns: per_message(cpu_ns, sent_measured),
            })
        }
        (sent, got) => bail!("unexpected reports: {sent:?} and {got:?}"),
    }
}

/// CPU time per message, ns: `cpu_ns` over `messages` (none without messages or time).
pub fn per_message(cpu_ns: u64, messages: u64) -> Option<f64> {
    (messages > 0 && cpu_ns > 0).then(|| cpu_ns as f64 / messages as f64)
}

/// Plans and runs every row: per row, `rounds` rounds, each measuring every mechanism once in
/// rotating order.
pub fn run_rows(ctx: &Ctx, s: &Settings) -> Vec<Row> {
    let plan = plan(s);
    let total: usize = plan.iter().map(|(_, m)| m.len() * s.rounds).sum();
    let started = Instant::now();
    let mut done = 0;
    let mut rows = Vec::new();
    for ((group, size, receivers), mechs) in plan {
        let mut row = Row::measured(group, size, receivers);
        for round in 0..s.rounds {
            for k in 0..mechs.len() {
                let mech = mechs[(k + round) % mechs.len()];
                let outcome = ctx.measure_fan(s, (group, size, receivers), mech);
                done += 1;
                let what = match &outcome {
                    Ok(sample) => sample.describe(),
                    Err(e) => format!("FAILED: {e:#}"),
                };
                eprintln!(
                    "[{done:>3}/{total}] {:>5.0} s  {:<14} round {}/{}  {:<14} {what}",
                    started.elapsed().as_secs_f64(),
                    row.title,
                    round + 1,
                    s.rounds,
                    mech.id(),
                );
                row.add(mech, outcome.map_err(|e| format!("{e:#}")));
            }
        }
        rows.push(row);
    }
    rows
}

/// The measured rows of a run, in order: (group, size, receivers) and the mechanisms each
/// measures (the group's, among those chosen, that can carry it).
pub fn plan(s: &Settings) -> Vec<((Group, usize, usize), Vec<Mech>)> {
    let mut plan = Vec::new();
    for &g in &s.groups {
        for &size in s.sizes(g) {
            for &n in g.fan_outs() {
                let mechs: Vec<Mech> = s
                    .mechs
                    .iter()
                    .copied()
                    .filter(|&m| g.takes(m) && m.supports(g.pattern(), n))
                    .collect();
                if !mechs.is_empty() {
                    plan.push(((g, size, n), mechs));
                }
            }
        }
    }
    plan
}

// ---------------------------------------------------------------------------------------------
// Peer processes
// ---------------------------------------------------------------------------------------------

/// What a peer's stdout reader thread passes on.
enum Msg {
    Line(PeerLine),
    Eof,
}

struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
    queue: VecDeque<PeerLine>,
    reported: bool,
    eof: bool,
    /// Killed on purpose: its end is no failure.
    killed: bool,
}

/// The peer processes of one measurement. Dropping it kills those still running.
pub struct Peers {
    procs: Vec<Proc>,
    tx: Sender<(usize, Msg)>,
    rx: Receiver<(usize, Msg)>,
}

impl Peers {
    /// No peers yet.
    pub fn new() -> Peers {
        let (tx, rx) = mpsc::channel();
        Peers {
            procs: Vec::new(),
            tx,
            rx,
        }
    }

    /// Starts a peer process for `spec`; returns its index.
    pub fn spawn(&mut self, exe: &Path, spec: &PeerSpec, label: String) -> Result<usize> {
        let json = serde_json::to_string(spec)?;
        let mut child = Command::new(exe)
            .arg("peer")
            .arg(json)
            .stdin(if spec.role.reads_stdin() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {label}"))?;
        let id = self.procs.len();
        let stdout = child.stdout.take().context("peer stdout")?;
        let mut stderr = child.stderr.take().context("peer stderr")?;
        let tx = self.tx.clone();
        let name = label.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<PeerLine>(&line) {
                    Ok(l) => {
                        if tx.send((id, Msg::Line(l))).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("{name}: {line}"),
                }
            }
            let _ = tx.send((id, Msg::Eof));
        });
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let mut t = sink.lock().unwrap_or_else(|p| p.into_inner());
                t.push_str(&String::from_utf8_lossy(&buf[..n]));
                if t.len() > STDERR_KEEP {
                    let cut = t.len() - STDERR_KEEP / 2;
                    let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                    t.drain(..cut);
                }
            }
        });
        self.procs.push(Proc {
            label,
            stdin: child.stdin.take(),
            child,
            stderr: text,
            stderr_thread: Some(stderr_thread),
            queue: VecDeque::new(),
            reported: false,
            eof: false,
            killed: false,
        });
        Ok(id)
    }

    /// The next line of peer `id`; fails if it, or another peer that had not reported yet,
    /// exits first, or at `deadline`.
    pub fn next(&mut self, id: usize, deadline: Instant) -> Result<PeerLine> {
        loop {
            if let Some(line) = self.procs[id].queue.pop_front() {
                return Ok(line);
            }
            if let Some(dead) = self.procs.iter().position(|p| p.eof && !p.reported) {
                return Err(self.failure(dead, "exited without reporting"));
            }
            if self.procs[id].eof {
                return Err(self.failure(id, "exited early"));
            }
            let now = Instant::now();
            if now >= deadline {
                let states = self.states();
                let what = format!("did not answer in time (the harness killed it; {states})");
                return Err(self.failure(id, &what));
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok((j, Msg::Line(line))) => {
                    if matches!(line, PeerLine::Done(_)) {
                        self.procs[j].reported = true;
                    }
                    self.procs[j].queue.push_back(line);
                }
                Ok((j, Msg::Eof)) => self.procs[j].eof = true,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!("peer reader threads are gone"),
            }
        }
    }

    /// Fails unless the next line of peer `id` is `want` (a line without data).
    pub fn expect(&mut self, id: usize, want: &PeerLine, deadline: Instant) -> Result<()> {
        let line = self.next(id, deadline)?;
        if std::mem::discriminant(&line) != std::mem::discriminant(want) {
            bail!("{}: expected {want:?}, got {line:?}", self.procs[id].label);
        }
        Ok(())
    }

    /// Tells the initiator `id` to start.
    pub fn go(&mut self, id: usize) -> Result<()> {
        use std::io::Write;
        let p = &mut self.procs[id];
        let stdin = p.stdin.as_mut().context("the initiator has no stdin")?;
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("telling {} to start", p.label))
    }

    /// The `done` report of peer `id`.
    pub fn done(&mut self, id: usize, deadline: Instant) -> Result<PeerResult> {
        match self.next(id, deadline)? {
            PeerLine::Done(r) => Ok(r),
            other => bail!(
                "{}: expected its report, got {other:?}",
                self.procs[id].label
            ),
        }
    }

    /// Kills peer `id` (if still running) and describes its end, with its stderr.
    fn failure(&mut self, id: usize, what: &str) -> anyhow::Error {
        let status = self.stop(id);
        let p = &mut self.procs[id];
        if let Some(t) = p.stderr_thread.take() {
            let _ = t.join();
        }
        let stderr = p.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stderr = stderr.trim();
        let status = status.map_or_else(|| "?".into(), |s| s.to_string());
        if stderr.is_empty() {
            anyhow::anyhow!("{} {what} ({status})", p.label)
        } else {
            anyhow::anyhow!("{} {what} ({status}): {stderr}", p.label)
        }
    }

    /// What every peer that is still running is doing, from /proc: per thread its state
    /// (R running, S sleeping, ...) and the kernel function it waits in.
    fn states(&mut self) -> String {
        let mut out = Vec::new();
        for p in &mut self.procs {
            if !matches!(p.child.try_wait(), Ok(None)) {
                continue;
            }
            let pid = p.child.id();
            let mut threads = Vec::new();
            if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                for task in tasks.flatten() {
                    let dir = task.path();
                    let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
                    // The state follows the parenthesised command name.
                    let state = stat
                        .rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .unwrap_or("?");
                    let wchan = std::fs::read_to_string(dir.join("wchan")).unwrap_or_default();
                    let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                    threads.push(format!("{}:{state}:{}", comm.trim(), wchan.trim()));
                }
            }
            out.push(format!("{} pid {pid} [{}]", p.label, threads.join(" ")));
        }
        out.join("; ")
    }

    /// Sends SIGKILL to peer `id` and returns the CLOCK_MONOTONIC time just before; its end
    /// counts as expected from then on.
    pub fn kill9(&mut self, id: usize) -> Result<u64> {
        let p = &mut self.procs[id];
        p.killed = true;
        p.reported = true;
        let at = os::mono_ns();
        os::kill9(p.child.id())?;
        Ok(at)
    }

    fn stop(&mut self, id: usize) -> Option<ExitStatus> {
        let child = &mut self.procs[id].child;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Releases the initiator (closes its stdin) and waits for every peer to exit cleanly
    /// (a killed one: to exit at all).
    pub fn finish(&mut self, deadline: Instant) -> Result<()> {
        for p in &mut self.procs {
            p.stdin = None;
        }
        for id in 0..self.procs.len() {
            if self.procs[id].killed {
                let _ = self.procs[id].child.wait();
                continue;
            }
            loop {
                match self.procs[id].child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(_)) => return Err(self.failure(id, "failed after reporting")),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(None) => return Err(self.failure(id, "did not exit after reporting")),
                    Err(e) => bail!("waiting for {}: {e}", self.procs[id].label),
                }
            }
        }
        Ok(())
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for id in 0..self.procs.len() {
            self.stop(id);
        }
    }
}

/// Settings for tests: one round of everything, no time, idle rows of 2 s.
#[cfg(test)]
pub(crate) fn test_settings() -> Settings {
    Settings {
        rounds: 1,
        latency: (Duration::ZERO, Duration::ZERO),
        throughput: (Duration::ZERO, Duration::ZERO),
        mechs: Mech::ALL.to_vec(),
        groups: Group::ALL.to_vec(),
        pin: false,
        mmipc_ring: None,
        idle: Duration::from_secs(2),
        sizes: None,
        quick: false,
        gap: Duration::ZERO,
        spin_window: None,
        sampled_check: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_hold_four_messages_and_never_shrink_below_the_default() {
        let default = ::mmipc::DEFAULT_RING_CAPACITY;
        assert_eq!(mmipc_ring_for(8), default);
        assert_eq!(mmipc_ring_for(64 << 10), default);
        assert_eq!(mmipc_ring_for(100 << 10), 512 << 10);
        assert_eq!(mmipc_ring_for(1 << 20), 4 << 20);
        assert_eq!(mmipc_ring_for((1 << 20) + 1), 8 << 20);
        let mut s = test_settings();
        assert_eq!(s.mmipc_ring(1 << 20), 4 << 20);
        s.mmipc_ring = Some(default);
        assert_eq!(s.mmipc_ring(1 << 20), default);
    }

    #[test]
    fn the_plan_has_a_row_per_size_and_fan_out_with_the_groups_mechanisms() {
        let mut s = test_settings();
        s.groups = vec![Group::Fanout, Group::FanoutLarge];
        let plan = plan(&s);
        let rows: Vec<_> = plan.iter().map(|(r, _)| *r).collect();
        assert_eq!(rows.len(), 2 + 3 * 3);
        assert_eq!(rows[0], (Group::Fanout, 64, 2));
        assert_eq!(rows[2], (Group::FanoutLarge, 64 << 10, 1));
        assert_eq!(rows[10], (Group::FanoutLarge, 4 << 20, 4));
        assert!(
            plan[0].1.contains(&Mech::MmipcLoan),
            "loans one way, beside iceoryx2"
        );
        assert!(!plan[0].1.contains(&Mech::MmipcLoanPark));
        assert!(plan[0].1.contains(&Mech::Iox2LoanPoll), "and iceoryx2's");
        assert!(!plan[0].1.contains(&Mech::Iox2LoanEvent));
        assert!(!plan[0].1.contains(&Mech::Floor), "a ping-pong device");
        let mut want = Group::FanoutLarge.mechs().unwrap().to_vec();
        want.sort();
        assert_eq!(plan[2].1, want, "the group's, in report order");
        s.quick = true;
        assert_eq!(super::plan(&s).len(), 2 + 3);
        s.mechs = vec![Mech::Uds];
        assert_eq!(
            super::plan(&s).len(),
            2,
            "no large rows without their mechanisms"
        );
    }

    #[test]
    fn cpu_per_message_needs_messages_and_time() {
        assert_eq!(per_message(3000, 3), Some(1000.0));
        assert_eq!(per_message(3000, 0), None);
        assert_eq!(per_message(0, 5), None);
    }

    #[test]
    fn only_measured_groups_have_sizes() {
        for g in Group::ALL {
            let measured = matches!(
                g,
                Group::Latency
                    | Group::Throughput
                    | Group::Fanout
                    | Group::FanoutLarge
                    | Group::ThresholdSweep
            );
            assert_eq!(!g.sizes().is_empty(), measured, "{g:?}");
        }
    }
}
