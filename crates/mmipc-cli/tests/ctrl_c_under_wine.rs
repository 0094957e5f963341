//! Ctrl-C of the Windows build, under Wine: a Linux test that runs `mmipc.exe` (built for
//! `x86_64-pc-windows-gnu`) with `wine` and sends the process SIGINT, which Wine turns into a
//! console `CTRL_C_EVENT` for the handlers the program registered (the `ctrlc` crate's
//! `SetConsoleCtrlHandler`). A Windows program cannot send itself or a child that event under
//! Wine (`GenerateConsoleCtrlEvent` fails there), so the test drives it from this side.
//!
//! Runs when `MMIPC_WINE_EXE` names the Windows `mmipc.exe` (`.ci/run` sets it in its Wine
//! step, with the Wine prefix of `.ci/wine/env.sh`); elsewhere each test says it skipped.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

/// The Windows `mmipc.exe` to run, if the environment names one.
fn windows_exe() -> Option<PathBuf> {
    match std::env::var_os("MMIPC_WINE_EXE") {
        Some(exe) => {
            let exe = PathBuf::from(exe);
            assert!(
                exe.is_absolute() && exe.is_file(),
                "MMIPC_WINE_EXE must be the absolute path of mmipc.exe: {}",
                exe.display()
            );
            Some(exe)
        }
        None => {
            eprintln!("skipped: MMIPC_WINE_EXE does not name a Windows mmipc.exe");
            None
        }
    }
}

/// `mmipc.exe --dir <root> args…` under Wine; the root as Wine's drive Z: names it.
fn mmipc(exe: &Path, root: &Path, args: &[&str]) -> Child {
    let root = format!("Z:{}", root.display()).replace('/', "\\");
    Command::new("wine")
        .arg(exe)
        .arg("--dir")
        .arg(root)
        .args(args)
        .env("WINEDEBUG", "-all")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wine (is Wine installed? see .ci/wine/setup.sh)")
}

/// The files of `channel` under `root`.
fn files(root: &Path, channel: &str) -> Vec<String> {
    std::fs::read_dir(root.join(channel))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !done() {
        assert!(Instant::now() < deadline, "watchdog: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGINT to the Wine process running the program (Wine execs into the program's
/// process: the child's pid is its pid) and collects its output.
fn interrupt(child: Child) -> Output {
    // SAFETY: kill(2) on our own child, which has not been reaped.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "kill(SIGINT)");
    let mut child = child;
    let deadline = Instant::now() + WATCHDOG;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("watchdog: the program ignored Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// A subscriber waiting for messages ends cleanly on Ctrl-C: exit code 0, and its record,
/// lock and doorbell are gone (a killed one would leave them for a cleaner).
#[test]
fn ctrl_c_ends_a_windows_subscriber_cleanly() {
    let Some(exe) = windows_exe() else { return };
    let root = tempfile::tempdir().expect("temp dir");
    let sub = mmipc(&exe, root.path(), &["sub", "ctrlc"]);
    eventually("the subscriber's record appears", || {
        files(root.path(), "ctrlc")
            .iter()
            .any(|f| f.starts_with("sub-") && f.ends_with(".json"))
    });
    let out = interrupt(sub);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "Ctrl-C is a clean exit: {err}");
    eventually("the subscriber's files are gone", || {
        files(root.path(), "ctrlc").is_empty()
    });
}

/// A publisher repeating a message until interrupted stops at Ctrl-C, prints its summary and
/// exits 0; the subscriber got the messages.
#[test]
fn ctrl_c_ends_a_windows_publisher_with_its_summary() {
    let Some(exe) = windows_exe() else { return };
    let root = tempfile::tempdir().expect("temp dir");
    let sub = mmipc(&exe, root.path(), &["sub", "tick", "--count", "3"]);
    eventually("the subscriber's record appears", || {
        files(root.path(), "tick")
            .iter()
            .any(|f| f.starts_with("sub-") && f.ends_with(".json"))
    });
    let publ = mmipc(&exe, root.path(), &["pub", "tick", "tock", "--rate", "50"]);
    let out = sub.wait_with_output().expect("sub output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
        "tock\ntock\ntock\n"
    );
    let out = interrupt(publ);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "Ctrl-C is a clean end: {err}");
    assert!(err.contains("published "), "a summary at the end: {err}");
    eventually("the publisher's files are gone", || {
        files(root.path(), "tick").is_empty()
    });
}
