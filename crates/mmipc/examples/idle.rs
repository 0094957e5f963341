//! What idle endpoints cost: CPU time of processes that hold many connected, idle endpoints,
//! and of one whose channel directory holds many junk files.
//!
//! * **N idle connections**: this process holds N subscribers (one per channel, default
//!   options: heartbeat 1 s, peer timeout 5 s); a child process holds the N publishers. Once
//!   all are connected, both processes' CPU time is measured over a window.
//! * **junk files**: one idle subscriber whose channel directory also holds 100,000 files
//!   that are not ours; its process's CPU time over the same window.
//!
//! `cargo run --release -p mmipc --example idle [-- N [SECONDS]]` (default 1000 endpoints,
//! 5 s). Prints a Markdown table; CPU is user + system time from /proc, in % of one core.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mmipc::{Publisher, Subscriber};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const DEADLINE: Duration = Duration::from_secs(120);

fn channel(i: usize) -> String {
    format!("idle-{i}")
}

/// CPU time (user + system) of process `pid` so far, from /proc.
fn cpu(pid: u32) -> Res<Duration> {
    cpu_in(&format!("/proc/{pid}/stat"))
}

/// User + system time from a /proc `stat` file.
fn cpu_in(stat_path: &str) -> Res<Duration> {
    let stat = std::fs::read_to_string(stat_path)?;
    let rest = &stat[stat.rfind(')').ok_or("bad /proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// CPU time per thread name of process `pid`.
fn threads(pid: u32) -> Vec<(String, Duration)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid: u32 = t.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
            Some((name.trim().to_owned(), cpu_task(pid, tid).ok()?))
        })
        .collect()
}

fn cpu_task(pid: u32, tid: u32) -> Res<Duration> {
    cpu_in(&format!("/proc/{pid}/task/{tid}/stat"))
}

/// Raises the open-file limit to its hard maximum (each endpoint holds a lock file open).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn child(dir: &Path, n: usize) -> Res<()> {
    raise_fd_limit();
    let publishers = (0..n)
        .map(|i| Publisher::builder(&channel(i)).dir(dir).build())
        .collect::<Result<Vec<_>, _>>()?;
    for p in &publishers {
        p.wait_for_subscribers(1, DEADLINE)?;
    }
    println!("connected");
    // Stay idle until the parent closes our stdin.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

fn pct(used: Duration, window: Duration) -> f64 {
    100.0 * used.as_secs_f64() / window.as_secs_f64()
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(Path::new(&args[2]), args[3].parse()?);
    }
    let n: usize = args.get(1).map_or(Ok(1000), |s| s.parse())?;
    let window = Duration::from_secs_f64(args.get(2).map_or(Ok(5.0), |s| s.parse())?);
    raise_fd_limit();
    let dir = tempfile::Builder::new()
        .prefix("mmipc-idle")
        .tempdir_in("/dev/shm")?;
    let subscribers = (0..n)
        .map(|i| Subscriber::builder(&channel(i)).dir(dir.path()).build())
        .collect::<Result<Vec<_>, _>>()?;
    let mut peer = Command::new(std::env::current_exe()?)
        .arg("child")
        .arg(dir.path())
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(peer.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    if line.trim() != "connected" {
        return Err(format!("the publisher process said {line:?}").into());
    }
    let started = Instant::now();
    for s in &subscribers {
        s.wait_for_publishers(1, DEADLINE)?;
    }
    eprintln!("{n} connections up; measuring {window:?}");
    let me = std::process::id();
    let (a0, b0, t0) = (cpu(me)?, cpu(peer.id())?, threads(me));
    std::thread::sleep(window);
    let (a1, b1, t1) = (cpu(me)?, cpu(peer.id())?, threads(me));
    for (name, after) in &t1 {
        let before = t0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Duration::ZERO, |t| t.1);
        eprintln!("  thread {name}: {:?}", after.saturating_sub(before));
    }
    drop(peer.stdin.take());
    let _ = peer.wait();
    let _ = started;
    drop(subscribers);

    // One idle subscriber beside 100,000 junk files.
    let junk_dir = dir.path().join("junk");
    let sub = Subscriber::builder("junk").dir(dir.path()).build()?;
    for i in 0..100_000 {
        std::fs::write(junk_dir.join(format!("junk-{i}")), b"")?;
    }
    // Let the burst of creations settle, then measure.
    std::thread::sleep(Duration::from_millis(1500));
    let j0 = cpu(me)?;
    std::thread::sleep(window);
    let j1 = cpu(me)?;
    drop(sub);

    println!(
        "| idle case ({} s) | CPU, % of one core |",
        window.as_secs_f64()
    );
    println!("|---|--:|");
    println!(
        "| process with {n} connected idle subscribers (one per channel) | {:.2} |",
        pct(a1 - a0, window)
    );
    println!(
        "| process with their {n} publishers | {:.2} |",
        pct(b1 - b0, window)
    );
    println!(
        "| one idle subscriber, 100,000 junk files in its channel directory | {:.2} |",
        pct(j1 - j0, window)
    );
    Ok(())
}
