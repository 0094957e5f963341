//! Shared helpers for the multi-process tests: every test binary re-executes itself as the
//! child processes (`MMIPC_CHILD` names the role), and every wait has a watchdog.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous upper bound for anything a test waits for; hitting it is a hang, not slowness.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// The role this process plays, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var("MMIPC_CHILD").ok()
}

/// Spawns this test binary as a child running `test_name` with the given role and env.
pub fn spawn_child(test_name: &str, role: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env("MMIPC_CHILD", role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_retrying(&mut cmd).expect("spawn child")
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

/// Waits for a child with the watchdog; kills it and panics on a hang. Returns its stdout.
pub fn wait_child(mut child: Child, what: &str) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            use std::io::Read;
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status, out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("watchdog: {what} hung for {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads lines from a child's stdout until one contains `prefix` (the test harness prints its
/// own text first), with the watchdog; returns the line from `prefix` on, trimmed. Reads byte by
/// byte, so nothing after the line is consumed.
pub fn read_line_starting(child: &mut Child, prefix: &str) -> String {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("child stdout is piped");
    let wanted = prefix.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        let found = loop {
            match stdout.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => {
                    let text = String::from_utf8_lossy(&line).trim().to_owned();
                    // The harness may have printed "test child_process_entry ... " on the
                    // same line.
                    if let Some(at) = text.find(&wanted) {
                        break Some(text[at..].to_owned());
                    }
                    line.clear();
                }
                Ok(1) => line.push(byte[0]),
                _ => break None,
            }
        };
        let _ = tx.send((found, stdout));
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok((Some(line), stdout)) => {
            child.stdout = Some(stdout);
            line
        }
        Ok((None, _)) => panic!("the child's output ended before a line starting with {prefix:?}"),
        Err(_) => panic!("watchdog: no line starting with {prefix:?} from the child"),
    }
}

/// Reads one line from a child's stdout (used for "READY" handshakes), with the watchdog.
pub fn read_line(child: &mut Child) -> String {
    read_line_starting(child, "")
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

/// A private test root directory (0700) on tmpfs when available.
pub fn test_root() -> tempfile::TempDir {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix("mmipc-test-")
        .tempdir_in(base)
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    dir
}

/// splitmix64: deterministic pseudo-random numbers shared by parent and children.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Size of message `i` of stream `seed`: mostly small (log-uniform up to 4 KiB), one in 50
/// uniform up to `max`, with exact 0 and `max` regularly.
pub fn size_of_msg(seed: u64, i: u64, max: usize) -> usize {
    let mut r = Rng(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    match i % 97 {
        0 => 0,
        1 => max,
        _ if i % 50 == 2 => (r.next() as usize) % (max + 1),
        _ => {
            let bits = (r.next() % 13) as u32;
            ((r.next() as usize) & ((1usize << bits) - 1)).min(max)
        }
    }
}

/// Message `i` of stream `seed`: its index, then bytes derived from both.
pub fn make_msg(seed: u64, i: u64, max: usize) -> Vec<u8> {
    let len = size_of_msg(seed, i, max);
    let mut v = Vec::with_capacity(len);
    let mut r = Rng(seed.rotate_left(17) ^ i);
    let idx = i.to_le_bytes();
    while v.len() < len {
        let word = if v.is_empty() {
            u64::from_le_bytes(idx)
        } else {
            r.next()
        };
        v.extend_from_slice(&word.to_le_bytes()[..(len - v.len()).min(8)]);
    }
    v
}

/// Checks a received message against the stream; returns its index.
pub fn check_msg(seed: u64, payload: &[u8], expected_index: u64, max: usize) {
    if let Err(e) = verify_msg(seed, payload, expected_index, max) {
        panic!("{e}");
    }
}

/// As [`check_msg`], returning what is wrong instead of panicking.
pub fn verify_msg(
    seed: u64,
    payload: &[u8],
    expected_index: u64,
    max: usize,
) -> Result<(), String> {
    let want = make_msg(seed, expected_index, max);
    if payload.len() != want.len() {
        return Err(format!(
            "message {expected_index}: length {} instead of {}",
            payload.len(),
            want.len()
        ));
    }
    if payload != want.as_slice() {
        return Err(format!("message {expected_index}: content differs"));
    }
    Ok(())
}

/// Files in a directory tree (for "nothing left behind" checks).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Polls `cond` until true or the watchdog fires.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !cond() {
        assert!(Instant::now() < deadline, "watchdog: {what} never happened");
        std::thread::sleep(Duration::from_millis(2));
    }
}
