//! Channels shared by the users of one group (`group_shared`), with real users: the test runs
//! its children as other user ids, so it needs root (CI runs as root); elsewhere it says it
//! skips. Children are this test binary, copied where every user can run it.

#![cfg(unix)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use mmipc::{Publisher, Subscriber};

const CHILD: &str = "child_process_entry";
/// The shared group and its two members; a third user outside it.
const GROUP: u32 = 60_000;
const ALICE: u32 = 60_001;
const BOB: u32 = 60_002;
const MALLORY: u32 = 60_003;
const MESSAGES: u64 = 300;
const MAX: usize = 100 * 1024;
const SEED: u64 = 0x6e0_0b5;

/// Entry point of every child process; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let Some(role) = child_role() else { return };
    let dir = PathBuf::from(env("DIR"));
    match role.as_str() {
        "pub" => {
            let publisher = Publisher::builder("shared")
                .dir(&dir)
                .group_shared(true)
                .build()
                .unwrap();
            publisher.wait_for_subscribers(1, WATCHDOG).unwrap();
            for i in 0..MESSAGES {
                publisher.publish(&make_msg(SEED, i, MAX)).unwrap();
            }
            println!("SENT {MESSAGES}");
            // Exits at once: the ring outlives us until the subscriber (another user)
            // drains and removes it.
        }
        "sub" => {
            let mut sub = Subscriber::builder("shared")
                .dir(&dir)
                .group_shared(true)
                .build()
                .unwrap();
            println!("READY");
            for i in 0..MESSAGES {
                let msg = sub.recv_timeout(WATCHDOG).unwrap();
                check_msg(SEED, &msg, i, MAX);
            }
            // Every file of the channel (the other user's record, lock and ring among them)
            // belongs to the group and is closed to other users.
            let mut checked = 0;
            for f in files_under(&dir.join("shared")) {
                let Ok(m) = std::fs::symlink_metadata(&f) else {
                    continue; // removed meanwhile
                };
                assert_eq!(m.gid(), GROUP, "{}", f.display());
                assert_eq!(m.mode() & 0o007, 0, "{} is open to others", f.display());
                checked += 1;
            }
            println!("RECEIVED {MESSAGES} CHECKED {checked}");
        }
        "outsider" => {
            let err = Subscriber::builder("shared")
                .dir(&dir)
                .group_shared(true)
                .build()
                .expect_err("a user outside the group is refused");
            println!("REFUSED {err}");
        }
        "private" => {
            let err = Subscriber::builder("shared")
                .dir(&dir)
                .build()
                .expect_err("an endpoint without group sharing refuses the group's directory");
            println!("REFUSED {err}");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A group-shared root (2770, group [`GROUP`]) and a copy of this test binary every user can
/// run, both under `/dev/shm` (a test binary under a private home is not reachable).
struct Setup {
    _base: tempfile::TempDir,
    root: PathBuf,
    exe: PathBuf,
}

fn setup() -> Setup {
    let base = tempfile::Builder::new()
        .prefix("mmipc-group-test-")
        .tempdir_in("/dev/shm")
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = base.path().join("test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(0), Some(GROUP)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o2770)).unwrap();
    Setup {
        _base: base,
        root,
        exe,
    }
}

/// Runs a child role as user `uid` with primary group `gid` (and no other groups).
fn spawn_as(setup: &Setup, role: &str, uid: u32, gid: u32) -> Child {
    let mut cmd = Command::new(&setup.exe);
    cmd.args(["--exact", CHILD, "--nocapture", "--test-threads=1"])
        .env("MMIPC_CHILD", role)
        .env("DIR", &setup.root)
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Another test thread forking while a copy of the binary was open for writing leaves
    // that descriptor in its child for a moment ("text file busy"): try again.
    let deadline = std::time::Instant::now() + WATCHDOG;
    loop {
        match cmd.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.expect("spawn child as another user"),
        }
    }
}

/// Item 12 of the usability issue: two service accounts of one group could not share a
/// channel directory (a 0775 directory was refused). Alice publishes, Bob subscribes; Bob
/// drains and removes the ring Alice left, and every file belongs to the group, closed to
/// others.
#[test]
fn members_of_a_group_share_a_channel() {
    if child_role().is_some() {
        return;
    }
    if !is_root() {
        eprintln!("skipping members_of_a_group_share_a_channel: needs root to run as other users");
        return;
    }
    let setup = setup();
    let mut sub = spawn_as(&setup, "sub", BOB, GROUP);
    assert_eq!(read_line_starting(&mut sub, "READY"), "READY");
    let publisher = spawn_as(&setup, "pub", ALICE, GROUP);
    let (status, out) = wait_child(publisher, "publisher");
    assert!(status.success(), "publisher failed: {out}");
    assert!(out.contains(&format!("SENT {MESSAGES}")), "{out}");
    let (status, out) = wait_child(sub, "subscriber");
    assert!(status.success(), "subscriber failed: {out}");
    assert!(out.contains(&format!("RECEIVED {MESSAGES}")), "{out}");
    eprintln!(
        "subscriber (uid {BOB}): {}",
        out.lines()
            .find(|l| l.contains("RECEIVED") || l.contains("REFUSED"))
            .unwrap_or("")
    );
    // Bob's record, lock and doorbell and Alice's ring had to be there to be checked.
    let checked: usize = out
        .split("CHECKED ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(checked >= 3, "only {checked} files checked: {out}");
    // Nothing is left: the members removed each other's files.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !files_under(&setup.root).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        files_under(&setup.root),
        Vec::<std::path::PathBuf>::new(),
        "files left"
    );
}

/// A user outside the group cannot join, and a member's endpoint without group sharing
/// refuses the group's directory with a hint, instead of failing on a file later.
#[test]
fn outsiders_and_private_endpoints_are_refused_with_a_reason() {
    if child_role().is_some() {
        return;
    }
    if !is_root() {
        eprintln!("skipping outsiders_and_private_endpoints_are_refused: needs root");
        return;
    }
    let setup = setup();
    let (status, out) = wait_child(spawn_as(&setup, "outsider", MALLORY, MALLORY), "outsider");
    assert!(status.success(), "{out}");
    assert!(
        out.contains("REFUSED") && out.contains("not a member"),
        "{out}"
    );
    eprintln!(
        "outsider (uid {MALLORY}): {}",
        out.lines()
            .find(|l| l.contains("RECEIVED") || l.contains("REFUSED"))
            .unwrap_or("")
    );
    let (status, out) = wait_child(spawn_as(&setup, "private", ALICE, GROUP), "private");
    assert!(status.success(), "{out}");
    assert!(
        out.contains("REFUSED") && out.contains("group sharing"),
        "{out}"
    );
    assert!(
        files_under(&setup.root).is_empty(),
        "the refused made nothing"
    );
}

/// Group sharing without a directory would use the per-user default root: refused up front.
#[test]
fn group_sharing_needs_an_explicit_directory() {
    if child_role().is_some() {
        return;
    }
    let err = Publisher::builder("x")
        .group_shared(true)
        .build()
        .expect_err("refused");
    assert!(matches!(err, mmipc::Error::InvalidOption { .. }), "{err}");
    assert!(err.to_string().contains("explicit directory"), "{err}");
}

/// A group channel of one user works as well (the first endpoint makes the root 2770 with
/// its own group), within one process.
#[test]
fn a_group_channel_made_from_scratch_works_in_one_process() {
    if child_role().is_some() {
        return;
    }
    let base = test_root();
    let root = base.path().join("made");
    let mut sub = Subscriber::builder("c")
        .dir(&root)
        .group_shared(true)
        .build()
        .unwrap();
    let publisher = Publisher::builder("c")
        .dir(&root)
        .group_shared(true)
        .deliver_to_same_process(true)
        .build()
        .unwrap();
    assert_eq!(publisher.num_active_connections(), 1);
    publisher.publish(b"hello group").unwrap();
    assert_eq!(
        &sub.recv_timeout(Duration::from_secs(10)).unwrap()[..],
        b"hello group"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&root), 0o2770);
    assert_eq!(mode(&root.join("c")), 0o2770);
    for f in files_under(&root) {
        assert_eq!(mode(&f), 0o660, "{}", f.display());
    }
}
