//! End-to-end tests of the `mmipc` binary: real processes, a private root directory each.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// No test waits longer than this for anything.
const WATCHDOG: Duration = Duration::from_secs(60);

fn mmipc(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmipc"));
    cmd.arg("--dir").arg(root);
    cmd
}

fn root() -> tempfile::TempDir {
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::Builder::new()
            .prefix("mmipc-cli")
            .tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    };
    base.expect("temporary directory")
}

/// Runs to completion under the watchdog.
fn run(cmd: &mut Command) -> Output {
    finish(spawn(cmd))
}

/// A spawned `mmipc`, killed if still running when dropped: a failing test leaves no
/// process behind (a `sub` without `--count` would run for ever).
struct Proc(Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `read`, which reads a pipe of `child`, on a thread and waits for it under the
/// watchdog: a child that never writes (or never closes its output) is killed and the test
/// fails, instead of the read hanging the test run.
fn bounded<T: Send + 'static>(
    child: &mut Child,
    what: &str,
    read: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("watchdog: {what}: nothing from mmipc for {WATCHDOG:?}");
        }
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the reading thread failed"),
    }
}

/// Reads a whole pipe on a thread; the result comes through the returned channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// What a drained pipe held, waiting until `deadline` at most: after the child has exited, a
/// pipe still open is held by a process it left behind.
fn drained(rx: &mpsc::Receiver<Vec<u8>>, deadline: Instant, what: &str) -> Vec<u8> {
    let left = deadline.saturating_duration_since(Instant::now());
    rx.recv_timeout(left).unwrap_or_else(|_| {
        panic!("watchdog: mmipc's {what} stayed open (a process it started still holds it)")
    })
}

/// Waits for a spawned child under the watchdog and collects its output (read while it
/// runs, so that a child writing more than a pipe holds does not block).
fn finish(mut child: Proc) -> Output {
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + WATCHDOG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
            panic!("watchdog: mmipc did not finish; stderr: {}", text(&stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The child has exited: its pipes close now, unless it left a process holding them.
    let deadline = Instant::now() + WATCHDOG;
    Output {
        status,
        stdout: drained(&out, deadline, "stdout"),
        stderr: drained(&err, deadline, "stderr"),
    }
}

fn spawn(cmd: &mut Command) -> Proc {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    Proc(spawn_retrying(cmd).expect("spawn mmipc"))
}

/// Spawns `cmd`, trying again a few times when Wine's `CreateProcess` fails with
/// ERROR_INTERNAL_ERROR (1359), which it does now and then under load (seen in CI); any other
/// error, or that one five times, is returned.
pub fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if cfg!(windows) && e.raw_os_error() == Some(1359) && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ls_json(root: &Path) -> Value {
    let out = run(mmipc(root).args(["ls", "--json"]));
    assert!(out.status.success(), "ls failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ls --json is JSON")
}

/// The endpoints `ls --json` lists on `channel`, as (kind, alive) pairs.
fn endpoints(root: &Path, channel: &str) -> Vec<(String, bool)> {
    let v = ls_json(root);
    v["channels"]
        .as_array()
        .expect("channels array")
        .iter()
        .filter(|c| c["name"] == channel)
        .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["alive"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !cond() {
        assert!(Instant::now() < deadline, "watchdog: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn code(s: ExitStatus) -> Option<i32> {
    s.code()
}

#[test]
fn three_published_arguments_come_out_in_order() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "greetings", "--count", "3"]));
    // `pub` waits for one subscriber by default, so nothing goes into the void.
    let out = run(mmipc(root.path()).args(["pub", "greetings", "hello", "two words", "3"]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(sub);
    assert!(out.status.success(), "sub: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\ntwo words\n3\n");
}

#[test]
fn json_format_parses_and_carries_the_payload() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "j", "--count", "2", "--format", "json"]));
    let out = run(mmipc(root.path()).args(["pub", "j", "first", ""]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(sub);
    assert!(out.status.success(), "sub: {}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["payload"], "Zmlyc3Q="); // base64 of "first"
    assert_eq!(lines[0]["len"], 5);
    assert_eq!(lines[1]["len"], 0);
    assert_eq!(lines[0]["sequence"], 1);
    assert_eq!(lines[1]["sequence"], 2);
    assert_eq!(lines[0]["publisher"].as_str().map(str::len), Some(32));
    assert!(lines[0]["pid"].as_u64().is_some());
}

#[test]
fn stdin_lines_and_hex_format() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "lines", "--count", "2", "--format", "hex"]));
    let mut publ = spawn(
        mmipc(root.path())
            .args(["pub", "lines", "--wait-subscribers", "1"])
            .stdin(Stdio::piped()),
    );
    publ.stdin
        .take()
        .expect("stdin")
        .write_all(b"AB\n\x01\xff\n")
        .expect("write stdin");
    let out = finish(publ);
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(sub);
    assert_eq!(text(&out.stdout), "4142\n01ff\n");
}

#[cfg(unix)] // signals, terminals or Unix permissions
#[test]
fn ls_shows_a_live_subscriber_and_forgets_it_after_it_exits() {
    let root = root();
    let mut sub = spawn(mmipc(root.path()).args(["sub", "watched"]));
    eventually("ls shows the subscriber", || {
        endpoints(root.path(), "watched") == [("subscriber".to_owned(), true)]
    });
    // A plain-text listing names it too.
    let out = run(mmipc(root.path()).arg("ls"));
    assert!(
        text(&out.stdout).contains("subscriber"),
        "{}",
        text(&out.stdout)
    );
    // SIGINT: a clean exit that removes its files.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(sub.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + WATCHDOG;
    while sub.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "watchdog: sub ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        sub.wait().expect("wait").code(),
        Some(0),
        "Ctrl-C is a clean exit"
    );
    assert!(endpoints(root.path(), "watched").is_empty());
}

#[test]
fn clean_removes_what_a_killed_subscriber_left() {
    let root = root();
    let mut sub = spawn(mmipc(root.path()).args(["sub", "crashy"]));
    // Alive and with its record written (a pid): killed earlier, it would be an endpoint
    // that was starting, which `clean` leaves alone for 10 s.
    eventually("ls shows the subscriber with its record", || {
        endpoints(root.path(), "crashy") == [("subscriber".to_owned(), true)]
            && ls_json(root.path())["channels"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter()
                        .filter(|c| c["name"] == "crashy")
                        .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
                        .all(|e| e["pid"].is_number())
                })
    });
    sub.kill().expect("kill -9");
    sub.wait().expect("reap");
    assert_eq!(
        endpoints(root.path(), "crashy"),
        [("subscriber".to_owned(), false)],
        "a killed subscriber is listed as dead"
    );
    let mine = root.path().join("crashy").join("notes.txt");
    std::fs::write(&mine, "not ours").expect("write");
    let dry = run(mmipc(root.path()).args(["clean", "--dry-run"]));
    assert!(
        text(&dry.stdout).contains("would remove"),
        "{}",
        text(&dry.stdout)
    );
    assert_eq!(
        endpoints(root.path(), "crashy").len(),
        1,
        "dry run removes nothing"
    );
    let out = run(mmipc(root.path()).args(["clean", "--json"]));
    assert!(out.status.success(), "clean: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("clean --json is JSON");
    let removed = v["removed"].as_array().expect("removed list");
    assert!(removed.len() >= 3, "record, lock and doorbell: {removed:?}");
    assert!(endpoints(root.path(), "crashy").is_empty());
    assert!(mine.exists(), "files that are not ours are never removed");
}

#[test]
fn bad_channel_names_are_usage_errors_with_a_clear_message() {
    let root = root();
    for bad in ["a/b", "", "..", ".hidden"] {
        let out = run(mmipc(root.path()).args(["pub", bad, "x"]));
        assert_eq!(code(out.status), Some(2), "{bad:?}");
        let err = text(&out.stderr);
        assert!(err.contains("invalid channel name"), "{bad:?}: {err}");
    }
    let out = run(mmipc(root.path()).args(["sub", "x", "--format", "nope"]));
    assert_eq!(code(out.status), Some(2));
}

#[test]
fn runtime_failures_exit_with_code_one() {
    let root = root();
    let out = run(mmipc(root.path()).args(["sub", "quiet", "--timeout", "200ms"]));
    assert_eq!(code(out.status), Some(1));
    assert!(
        text(&out.stderr).contains("no message"),
        "{}",
        text(&out.stderr)
    );
    let out = run(mmipc(root.path()).args(["pub", "void", "x", "--timeout", "200ms"]));
    assert_eq!(code(out.status), Some(1));
    assert!(
        text(&out.stderr).contains("mmipc sub void"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_closed_stdout_ends_sub_cleanly() {
    let root = root();
    let mut sub = spawn(mmipc(root.path()).args(["sub", "firehose"]));
    let publ =
        spawn(mmipc(root.path()).args(["pub", "firehose", "--count", "100000", "--size", "100"]));
    // Read one line, then close the pipe, like `| head -1`.
    let stdout = sub.stdout.take().expect("stdout");
    let (line, stdout) = bounded(&mut sub, "sub's first line", move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).expect("a line");
        (line, stdout)
    });
    assert!(line.ends_with('\n'), "a whole line: {line:?}");
    drop(stdout);
    let out = finish(sub);
    assert!(
        out.status.success(),
        "sub must exit 0 on a closed stdout: {:?} {}",
        out.status,
        text(&out.stderr)
    );
    let out = finish(publ);
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
}

#[test]
fn generated_stream_and_file_arrive_whole() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "blob", "--count", "1", "--format", "raw"]));
    let file = root.path().join("payload.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let out = run(mmipc(root.path())
        .args(["pub", "blob", "--file"])
        .arg(&file));
    assert!(out.status.success(), "pub --file: {}", text(&out.stderr));
    let out = finish(sub);
    assert!(
        out.stdout == data,
        "a 300 kB file is one message, byte for byte"
    );

    let mut sub =
        spawn(mmipc(root.path()).args(["sub", "gen", "--count", "500", "--format", "raw"]));
    let publ = spawn(mmipc(root.path()).args([
        "pub", "gen", "--count", "500", "--size", "16", "--rate", "5000",
    ]));
    let mut stdout = sub.stdout.take().expect("stdout");
    let all = bounded(&mut sub, "sub's raw output", move || {
        let mut all = Vec::new();
        stdout.read_to_end(&mut all).expect("read");
        all
    });
    assert!(finish(sub).status.success());
    assert!(finish(publ).status.success());
    assert_eq!(all.len(), 500 * 16);
    for (i, chunk) in all.chunks(16).enumerate() {
        assert_eq!(chunk[..8], (i as u64).to_le_bytes(), "message {i} in order");
    }
}

#[test]
fn bench_json_has_figures_for_each_size() {
    let root = root();
    let out =
        run(mmipc(root.path()).args(["bench", "--sizes", "64", "--duration", "1s", "--json"]));
    assert!(out.status.success(), "bench: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("bench --json is JSON");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["size"], 64);
    let p50 = rows[0]["rtt_ns"]["p50"].as_f64().expect("p50");
    let p99 = rows[0]["rtt_ns"]["p99"].as_f64().expect("p99");
    assert!(p50 > 0.0 && p99 >= p50, "{rows:?}");
    assert!(rows[0]["throughput"]["msgs_per_s"].as_f64().expect("rate") > 0.0);
    assert!(rows[0]["throughput"]["messages"].as_u64().expect("count") > 0);
    // The private channels are gone afterwards.
    assert!(
        ls_json(root.path())["channels"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

/// The lines of `s` that contain `needle`.
fn lines_with<'a>(s: &'a str, needle: &str) -> Vec<&'a str> {
    s.lines().filter(|l| l.contains(needle)).collect()
}

#[cfg(unix)] // signals, terminals or Unix permissions
/// Sends SIGINT (Ctrl-C) to a child.
fn interrupt(child: &Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
}

#[test]
fn json_flag_on_sub_is_the_json_format() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "js", "--count", "1", "--json"]));
    let out = run(mmipc(root.path()).args(["pub", "js", "hi"]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(sub);
    assert!(out.status.success(), "sub: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("sub --json prints JSON");
    assert_eq!(v["payload"], "aGk="); // base64 of "hi"
    assert_eq!(v["len"], 2);
    // Contradicting formats are a usage error.
    let out = run(mmipc(root.path()).args(["sub", "js", "--json", "--format", "hex"]));
    assert_eq!(code(out.status), Some(2), "{}", text(&out.stderr));
}

#[test]
fn json_flag_on_pub_prints_a_summary_on_stdout() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "pj", "--until-closed"]));
    let out = run(mmipc(root.path()).args(["pub", "pj", "one", "three", "--json"]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("pub --json prints JSON ({e}): {:?}", text(&out.stdout)));
    assert_eq!(v["messages"], 2);
    assert_eq!(v["bytes"], 8);
    assert_eq!(v["dropped"], 0);
    let subs = v["subscribers"].as_array().expect("subscribers");
    assert_eq!(subs.len(), 1, "{v}");
    assert_eq!(subs[0]["pid"], sub.id());
    assert_eq!(subs[0]["delivered"], 2);
    assert_eq!(subs[0]["dropped"], 0);
    let out = finish(sub);
    assert!(out.status.success(), "sub: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\nthree\n");
}

#[test]
fn json_flag_on_hz_prints_one_object_per_line_and_a_summary() {
    let root = root();
    let hz = spawn(mmipc(root.path()).args(["hz", "hj", "--duration", "3s", "--json"]));
    let out = run(mmipc(root.path()).args([
        "pub", "hj", "--count", "60", "--size", "10", "--rate", "100",
    ]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(hz);
    assert!(out.status.success(), "hz: {}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(lines.len() >= 2, "rates and a summary: {lines:?}");
    let (summary, rates) = lines.split_last().expect("lines");
    assert!(rates.iter().all(|r| r["type"] == "rate"), "{rates:?}");
    assert!(rates[0]["msgs_per_s"].as_f64().is_some(), "{rates:?}");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["messages"], 60);
    assert_eq!(summary["bytes"], 600);
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["publishers_seen"], 1);
}

/// Reads `child`'s stderr up to the first line containing `needle`, under the watchdog;
/// returns what it read and the rest of the pipe.
fn stderr_until(child: &mut Proc, needle: &str) -> (String, BufReader<std::process::ChildStderr>) {
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let needle = needle.to_owned();
    bounded(child, "sub's stderr", move || {
        let mut stderr = stderr;
        let mut seen = String::new();
        while !seen.lines().any(|l| l.contains(&needle)) {
            if stderr.read_line(&mut seen).unwrap_or(0) == 0 {
                break;
            }
        }
        (seen, stderr)
    })
}

#[test]
fn sub_events_shows_publishers_connecting_and_leaving() {
    let root = root();
    let mut sub = spawn(mmipc(root.path()).args(["sub", "ev", "--events", "--count", "3"]));
    // Before any publisher: it says it waits.
    let (mut err, rest) = stderr_until(&mut sub, "waiting for publishers on \"ev\"");
    let rest = drain(Some(rest));
    assert!(err.contains("waiting for publishers on \"ev\""), "{err}");
    // Slow enough that the subscriber sees the publisher while it runs.
    let publ = spawn(mmipc(root.path()).args(["pub", "ev", "x", "--count", "3", "--rate", "10"]));
    let pid = publ.id();
    let out = finish(publ);
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(sub);
    assert!(out.status.success(), "sub: {err}");
    assert_eq!(text(&out.stdout), "x\nx\nx\n", "events never go to stdout");
    err += &text(&drained(&rest, Instant::now() + WATCHDOG, "stderr"));
    let connected = lines_with(&err, "connected: publisher ");
    assert!(
        connected
            .iter()
            .any(|l| l.starts_with("connected:") && l.ends_with(&format!(" pid {pid}"))),
        "{err}"
    );

    // `-v` is the short form; a publisher that leaves is reported with its reason.
    let sub = spawn(mmipc(root.path()).args(["sub", "ev", "-v", "--until-closed"]));
    let publ = spawn(mmipc(root.path()).args(["pub", "ev", "y", "--count", "2", "--rate", "10"]));
    let pid = publ.id();
    assert!(finish(publ).status.success());
    let out = finish(sub);
    assert!(out.status.success(), "sub: {}", text(&out.stderr));
    let err = text(&out.stderr);
    let gone = lines_with(&err, "disconnected: publisher ");
    assert_eq!(gone.len(), 1, "{err}");
    assert!(gone[0].ends_with(&format!(" pid {pid} (closed)")), "{err}");
}

#[cfg(unix)] // signals, terminals or Unix permissions
/// A pseudo-terminal: (master, slave).
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on a descriptor we own; ptsname's buffer is copied before any
    // other call can overwrite it.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0, "grantpt");
        assert_eq!(libc::unlockpt(master), 0, "unlockpt");
        let name = libc::ptsname(master);
        assert!(!name.is_null(), "ptsname");
        let name = std::ffi::CStr::from_ptr(name).to_owned();
        let master = std::fs::File::from_raw_fd(master);
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(std::ffi::OsStr::from_encoded_bytes_unchecked(
                name.to_bytes(),
            ))
            .expect("open the pty's slave");
        (master, slave)
    }
}

#[cfg(unix)] // signals, terminals or Unix permissions
#[test]
fn sub_says_it_is_waiting_when_stderr_is_a_terminal() {
    let root = root();
    let (master, slave) = pty();
    let mut sub = Proc(
        mmipc(root.path())
            .args(["sub", "tty"])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("spawn mmipc"),
    );
    // The command holds the only other copy of the slave: dropped with it after the spawn.
    let seen = bounded(&mut sub, "sub's stderr on a terminal", move || {
        let mut master = master;
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while !text(&all).contains('…') {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        text(&all)
    });
    assert!(
        seen.contains(&format!(
            "waiting for publishers on \"tty\" in {}…",
            root.path().display()
        )),
        "{seen:?}"
    );
    interrupt(&sub);
    // Not a terminal, no --events: stderr says nothing while waiting.
    let out = run(mmipc(root.path()).args(["sub", "quiet", "--timeout", "300ms"]));
    assert!(
        !text(&out.stderr).contains("waiting"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn text_format_keeps_each_message_on_one_line() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "esc", "--count", "3"]));
    let out = run(mmipc(root.path()).args([
        "pub",
        "esc",
        "line one\nline two",
        "tab\there\r",
        "back\\slash \u{1b}[31m",
    ]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(sub);
    assert!(out.status.success(), "sub: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "line one\\nline two\ntab\\there\\r\nback\\\\slash \\x1b[31m\n"
    );
    // Bytes that are not UTF-8 are shown as \xNN, not replaced.
    let sub = spawn(mmipc(root.path()).args(["sub", "esc", "--count", "1"]));
    let mut publ = spawn(
        mmipc(root.path())
            .args(["pub", "esc", "--wait-subscribers", "1"])
            .stdin(Stdio::piped()),
    );
    publ.stdin
        .take()
        .expect("stdin")
        .write_all(b"\xffok\x00\n")
        .expect("write stdin");
    assert!(finish(publ).status.success());
    assert_eq!(text(&finish(sub).stdout), "\\xffok\\x00\n");
}

#[test]
fn pub_repeats_its_arguments_at_a_rate() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "rep", "--count", "5"]));
    let start = Instant::now();
    let out =
        run(mmipc(root.path()).args(["pub", "rep", "a", "b", "--rate", "20", "--count", "5"]));
    let took = start.elapsed();
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    // The fifth message is due 4/20 s after the first.
    assert!(
        took >= Duration::from_millis(200),
        "5 messages at 20/s took {took:?}"
    );
    let out = finish(sub);
    assert_eq!(text(&out.stdout), "a\nb\na\nb\na\n");
    // --count without a rate: as fast as possible.
    let sub = spawn(mmipc(root.path()).args(["sub", "rep", "--count", "4"]));
    let out = run(mmipc(root.path()).args(["pub", "rep", "x", "--count", "4"]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    assert_eq!(text(&finish(sub).stdout), "x\nx\nx\nx\n");
    // --size is for generated messages only.
    let out = run(mmipc(root.path()).args(["pub", "rep", "x", "--count", "4", "--size", "9"]));
    assert_eq!(code(out.status), Some(2), "{}", text(&out.stderr));
}

#[cfg(unix)] // signals, terminals or Unix permissions
#[test]
fn pub_with_a_rate_and_no_count_repeats_until_interrupted() {
    let root = root();
    let sub = spawn(mmipc(root.path()).args(["sub", "tick", "--count", "3"]));
    let publ = spawn(mmipc(root.path()).args(["pub", "tick", "tock", "--rate", "50"]));
    let out = finish(sub);
    assert!(out.status.success(), "sub: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tock\ntock\ntock\n");
    interrupt(&publ);
    let out = finish(publ);
    assert_eq!(
        code(out.status),
        Some(0),
        "Ctrl-C is a clean end: {}",
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(err.contains("published "), "a summary at the end: {err}");
}

#[test]
fn pub_prints_a_summary_per_subscriber_on_stderr() {
    let root = root();
    let a = spawn(mmipc(root.path()).args(["sub", "sum", "--until-closed"]));
    let b = spawn(mmipc(root.path()).args(["sub", "sum", "--until-closed"]));
    let out =
        run(mmipc(root.path()).args(["pub", "sum", "hello", "world!", "--wait-subscribers", "2"]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the summary is not on stdout");
    let err = text(&out.stderr);
    assert!(
        err.contains("published 2 message(s), 11 bytes, on \"sum\": 2 subscriber(s), 0 dropped"),
        "{err}"
    );
    for sub in [&a, &b] {
        let line = lines_with(&err, &format!("subscriber pid {} ", sub.id()));
        assert_eq!(line.len(), 1, "{err}");
        assert!(line[0].ends_with("delivered 2, dropped 0"), "{err}");
    }
    assert!(finish(a).status.success());
    assert!(finish(b).status.success());
    // -q: no summary.
    let sub = spawn(mmipc(root.path()).args(["sub", "sum", "--count", "1"]));
    let out = run(mmipc(root.path()).args(["pub", "sum", "x", "-q"]));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        text(&out.stderr)
    );
    assert!(finish(sub).status.success());
}

#[test]
fn hz_prints_totals_at_the_end() {
    let root = root();
    let hz = spawn(mmipc(root.path()).args(["hz", "tot", "--duration", "3s"]));
    let out = run(mmipc(root.path()).args([
        "pub", "tot", "--count", "40", "--size", "5", "--rate", "200",
    ]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(hz);
    assert!(out.status.success(), "hz: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("total: 40 messages, 200 bytes in "),
        "{stdout}"
    );
    assert!(last.contains("lost 0, publishers seen 1"), "{stdout}");
}

#[test]
fn sub_until_closed_reads_a_raw_stream_to_its_end() {
    let root = root();
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 31 + i / 7) as u8).collect();
    let file = root.path().join("in.bin");
    std::fs::write(&file, &data).expect("write");
    let sub = spawn(mmipc(root.path()).args(["sub", "pipe", "--format", "raw", "--until-closed"]));
    let publ = spawn(
        mmipc(root.path())
            .args(["pub", "pipe", "--raw", "--wait-subscribers", "1"])
            .stdin(std::fs::File::open(&file).expect("open")),
    );
    // Ends by itself (under the watchdog), reading its output meanwhile.
    let out = finish(sub);
    assert_eq!(code(out.status), Some(0), "{}", text(&out.stderr));
    assert!(
        out.stdout == data,
        "{} bytes out of {}",
        out.stdout.len(),
        data.len()
    );
    let out = finish(publ);
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    // It waits for a first publisher, within --timeout.
    let out = run(mmipc(root.path()).args(["sub", "none", "--until-closed", "--timeout", "300ms"]));
    assert_eq!(code(out.status), Some(1));
    assert!(
        text(&out.stderr).contains("no message"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pub_fails_when_a_message_is_too_large_for_a_subscriber() {
    let root = root();
    let small = spawn(mmipc(root.path()).args([
        "sub",
        "big",
        "--max-message-size",
        "1K",
        "--until-closed",
    ]));
    let roomy = spawn(mmipc(root.path()).args(["sub", "big", "--until-closed"]));
    let fits = "f".repeat(1024);
    let too_large = "x".repeat(1025);
    let out = run(mmipc(root.path()).args([
        "pub",
        "big",
        fits.as_str(),
        too_large.as_str(),
        "end",
        "--wait-subscribers",
        "2",
    ]));
    assert_eq!(code(out.status), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let errors = lines_with(&err, "mmipc: error:");
    assert_eq!(errors.len(), 1, "only the small subscriber: {err}");
    assert!(
        errors[0].contains(&format!(
            "1 of 3 message(s) not delivered to subscriber pid {}",
            small.id()
        )) && errors[0].contains("larger than its max message size of 1 KiB"),
        "{err}"
    );
    let small = finish(small);
    assert!(small.status.success(), "{}", text(&small.stderr));
    assert_eq!(text(&small.stdout), format!("{fits}\nend\n"));
    let roomy = finish(roomy);
    assert_eq!(text(&roomy.stdout), format!("{fits}\n{too_large}\nend\n"));
    // A bad size is a usage error.
    let out = run(mmipc(root.path()).args(["sub", "big", "--max-message-size", "lots"]));
    assert_eq!(code(out.status), Some(2));
}

#[cfg(unix)] // signals, terminals or Unix permissions
/// Item 12 of the usability issue: `--group` shares a channel directory with the directory's
/// group (2770); without it the group's directory is refused with a hint; `ls` reads a group
/// channel by itself, rings included.
#[test]
fn group_flag_shares_the_directory_with_its_group() {
    use std::os::unix::fs::PermissionsExt;
    let base = root();
    let shared = base.path().join("shared");
    let sub = spawn(
        mmipc(&shared)
            .args(["--group", "sub", "g", "--count", "2"])
            .stderr(Stdio::null()),
    );
    eventually("the subscriber registers", || {
        endpoints(&shared, "g").contains(&("subscriber".to_owned(), true))
    });
    let mode = std::fs::metadata(&shared)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o2770);
    let out = run(mmipc(&shared).args(["--group", "pub", "g", "one", "two"]));
    assert!(out.status.success(), "pub: {}", text(&out.stderr));
    let out = finish(sub);
    assert!(out.status.success(), "sub: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\n");
    // Without --group, the group's directory is refused, saying what to do.
    let out = run(mmipc(&shared).args(["sub", "g", "--count", "1", "--timeout", "1s"]));
    assert_eq!(code(out.status), Some(1));
    assert!(
        text(&out.stderr).contains("--group"),
        "{}",
        text(&out.stderr)
    );
    // --group needs --dir: the default root is private to each user.
    let out = run(Command::new(env!("CARGO_BIN_EXE_mmipc")).args(["--group", "ls"]));
    assert_eq!(code(out.status), Some(2), "{}", text(&out.stderr));
}
