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
    Proc(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mmipc"),
    )
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
    eventually("ls shows the subscriber", || {
        endpoints(root.path(), "crashy") == [("subscriber".to_owned(), true)]
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
