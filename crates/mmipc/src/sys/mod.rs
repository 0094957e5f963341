//! The platform layer: everything that talks to the operating system lives here, and nothing
//! outside this module says `target_os`.
//!
//! # Contract each backend provides
//!
//! | function | Linux | macOS | Windows | others |
//! |---|---|---|---|---|
//! | [`Segment::create`]: create a named shared segment exclusively (mode 0600, or 0660 for [`Access::Group`]; never through a symlink), size it, map it | file on tmpfs, `O_EXCL`, `O_NOFOLLOW` (`unix.rs`) | as Linux (`unix.rs`), a plain file beside the records | file under the per-user root (temporary attribute), file mapping | `Unsupported` |
//! | [`Segment::open`]: open an existing segment without following symlinks, check that it is a regular file (Unix: owned by us, or of the channel's group, closed to other users) of `min_len..=max_len` bytes (so a short file cannot fault us), map it | yes | yes (`unix.rs`) | yes (privacy from the root's ACL) | `Unsupported` |
//! | [`Segment::waker`] → [`Waker`] `wait(word, expected, timeout)` / `wake(word)`: sleep on / wake sleepers of a 32-bit word of the mapping, across processes; the sleeper resets or re-checks so that a wake between its check and its sleep is not lost | futex without `FUTEX_PRIVATE_FLAG` (zero-sized) | `os_sync_wait_on_address` / `os_sync_wake_by_address_all` with the `SHARED` flags (macOS 14.4+, looked up with `dlsym`), else `__ulock_wait` / `__ulock_wake` with `UL_COMPARE_AND_WAIT_SHARED` (zero-sized; the word is checked before sleeping) | a named manual-reset event per word (`Local\mmipc-<file name>-<offset>`), opened lazily: reset, re-check, wait | sleeps 1 ms, reports a wake-up |
//! | [`unlink_segment`] / [`remove_file`]: remove a segment's (a file's) name at once; mappings stay valid | unlink | unlink | renamed to a hidden tombstone, then deleted (Windows keeps a deleted file's name while it is mapped) | `Unsupported` / std |
//! | [`reserve_segment`]: make the file system back a range of a segment before it is written through a mapping (a full tmpfs then fails the call instead of `SIGBUS`) | `posix_fallocate` | no-op (files on disk) | no-op (files on disk) | no-op |
//! | [`LockFile::acquire`]: an exclusive lock held for a process's lifetime and released by the OS when it dies; [`probe_lock`]: non-blocking test of someone else's | `flock` | `flock` | `LockFileEx` | `Unsupported` |
//! | [`is_memory_fs`]: whether segments may live in a directory (else they go to a per-user tmpfs directory) | tmpfs/ramfs | always (no tmpfs; segments beside the records) | always | `false` |
//! | [`write_file`] / [`read_small_file`]: small files (records) written 0600 (0660 for a group) and read without following symlinks (for a group: only of the group, not writable by others) | yes | yes | std, no reparse points | std |
//! | [`current_uid`]: the effective user id (names the per-user directory) | yes | yes | 0 (the root is per-user by location) | 0 |
//! | [`platform_root`]: a default root of the platform's own | none | `$TMPDIR/mmipc` when `TMPDIR` is an absolute directory (per-user, 0700) | `%LOCALAPPDATA%\mmipc` | none |
//! | [`ensure_private_dir`]: create a directory 0700 (with parents) and refuse one owned by another user, writable by others, or a symlink | yes | yes | create; refuse a symlink or junction | `Unsupported` |
//! | [`ensure_group_dir`]: create a directory 2770 of a group (with parents) and refuse one of another group, open to others, not writable by the group, or a symlink | yes | yes | `Unsupported` | `Unsupported` |
//! | [`dir_access`]: whether an existing channel directory is private or shared with a group (for inspection tools) | yes | yes | private | private |
//!
//! Linux and macOS share everything but the wake-up and the file system test (`unix.rs`).
//! The module `contract_tests` below checks the contract on every backend that implements it
//! (Linux natively, Windows under Wine in CI; on macOS it is compiled and linted, not yet
//! run); the loom model of the ring uses a fake with the same `wait`/`wake` shape
//! (`ring::wait::LoomFutex`).
//!
//! Mappings are exposed only as raw pointers ([`Segment::as_ptr`]), never as `&mut [u8]`:
//! another process writes the same memory concurrently, so Rust references to it would be
//! unsound. Typed access goes through atomics.

#[cfg(any(target_os = "linux", target_os = "macos"))]
#[allow(dead_code)]
mod unix;

use crate::error::{Error, Result};

#[cfg(target_os = "linux")]
#[allow(dead_code)]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(target_os = "macos")]
#[allow(dead_code)]
mod macos;
#[cfg(target_os = "macos")]
use macos as imp;

#[cfg(windows)]
#[allow(dead_code)]
mod windows;
#[cfg(windows)]
use windows as imp;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
#[allow(dead_code)]
mod unsupported;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
use unsupported as imp;

#[cfg(any(target_os = "linux", target_os = "macos"))]
pub(crate) use imp::{Waker, is_memory_fs};
/// Wake-up pipes for event loops (a FIFO beside the doorbell).
#[cfg(any(target_os = "linux", target_os = "macos"))]
mod pipe;
#[cfg(any(target_os = "linux", target_os = "macos"))]
#[cfg_attr(not(feature = "tokio"), allow(unused_imports))]
pub(crate) use pipe::{Listener, Notifier, drain};
/// The POSIX parts of the Unix backends; the platform module adds its wake-up and file system
/// test.
#[cfg(any(target_os = "linux", target_os = "macos"))]
#[allow(unused_imports)]
pub(crate) use unix::{
    ExitWatch, LockFile, Segment, current_uid, dir_access, ensure_group_dir, ensure_private_dir,
    probe_lock, read_small_file, remove_file, reserve_segment, unlink_segment, watch_exit,
    write_file,
};

/// The waitable event of a shared word, for waiters in an event loop.
#[cfg(windows)]
#[cfg_attr(not(feature = "tokio"), allow(unused_imports))]
pub(crate) use imp::{EventWatch, Listener};
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
#[allow(unused_imports)]
pub(crate) use imp::{
    ExitWatch, LockFile, Segment, Waker, current_uid, dir_access, ensure_group_dir,
    ensure_private_dir, is_memory_fs, probe_lock, read_small_file, remove_file, reserve_segment,
    unlink_segment, watch_exit, write_file,
};

/// Locks a freshly opened lock file exclusively without blocking, for the backends whose
/// lock is std's `File::try_lock` (`flock`, `LockFileEx`). Another process probing whether the
/// lock is held takes it for a moment: a new lock file that is "held" is being probed, so it
/// retries for ~20 ms before giving up.
#[allow(dead_code)]
fn take_lock(file: std::fs::File, path: &std::path::Path) -> Result<std::fs::File> {
    use std::fs::TryLockError;
    let mut locked = file.try_lock();
    for _ in 0..200 {
        if !matches!(locked, Err(TryLockError::WouldBlock)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
        locked = file.try_lock();
    }
    match locked {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::io(
            "lock",
            path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another live process holds this lock",
            ),
        )),
        Err(TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
    }
}

/// Whether someone holds the lock of `opened` (the backend's non-blocking, no-follow open of
/// `path`): refuses anything but a regular file, and takes the lock for a moment at most
/// (dropping the file releases it).
#[allow(dead_code)]
fn probe_opened_lock(
    opened: std::io::Result<std::fs::File>,
    path: &std::path::Path,
) -> Result<LockState> {
    use std::fs::TryLockError;
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockState::Missing),
        Err(e) => return Err(Error::io("open lock file", path, e)),
    };
    let regular = file
        .metadata()
        .is_ok_and(|m| m.file_type().is_file() && !m.file_type().is_symlink());
    if !regular {
        return Err(Error::io(
            "probe lock",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file"),
        ));
    }
    match file.try_lock() {
        Ok(()) => Ok(LockState::Free),
        Err(TryLockError::WouldBlock) => Ok(LockState::Held),
        Err(TryLockError::Error(e)) => Err(Error::io("probe lock", path, e)),
    }
}

/// Whether a directory watch keeps its directory from being removed (Windows: the watch
/// holds a handle on it), so that a watched directory cannot have been removed and made anew.
pub(crate) const WATCH_PINS_DIRECTORY: bool = cfg!(windows);

/// Whether the directory watch may lose events (seen under Wine: `ReadDirectoryChangesW`
/// missed a change now and then), so that watched directories are also checked on the clock
/// for a changed modification time.
pub(crate) const WATCH_MAY_LOSE_EVENTS: bool = cfg!(windows);

/// The platform's default root directory, where it has one of its own (Windows:
/// `%LOCALAPPDATA%\mmipc`, macOS: `$TMPDIR/mmipc`); `None` where the root is chosen under
/// `/dev/shm` or `$XDG_RUNTIME_DIR`.
pub(crate) fn platform_root() -> Option<std::path::PathBuf> {
    #[cfg(any(windows, target_os = "macos"))]
    {
        imp::platform_root()
    }
    #[cfg(not(any(windows, target_os = "macos")))]
    {
        None
    }
}

/// Who may use a channel's files. Every file is created with the mode this implies (set
/// explicitly, whatever the umask) and checked against it when opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Access {
    /// This user only: directories 0700, files 0600, every file owned by us.
    #[default]
    Private,
    /// The members of one group: directories 2770 of group `gid`, files 0660 of that group,
    /// nothing for other users. Files may be owned by any member.
    Group {
        /// The group's id (the channel directory's group).
        gid: u32,
    },
}

impl Access {
    /// The permission bits of a new file.
    #[cfg_attr(not(any(target_os = "linux", target_os = "macos")), allow(dead_code))]
    pub(crate) fn file_mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Group { .. } => 0o660,
        }
    }
}

/// What a [`Waker::wait`] observed.
#[cfg_attr(not(any(target_os = "linux", target_os = "macos")), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken by [`Waker::wake`], by a signal, or spuriously; the caller re-checks its condition.
    Woken,
    /// The word did not hold the expected value, so the call returned at once.
    ValueChanged,
    /// The timeout elapsed.
    TimedOut,
}

#[allow(dead_code)]
/// State of another endpoint's lock file, as seen by [`probe_lock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockState {
    /// Someone holds the lock: the owner is alive.
    Held,
    /// No one holds it: the owner died (or closed without removing the file).
    Free,
    /// The file does not exist.
    Missing,
}

/// The contract every backend keeps, as tests that run on each (Linux natively, Windows under
/// Wine; macOS compiled, not yet run): two mappings of one segment share memory, a sleeper on a word is woken through
/// another mapping's waker, lock files are exclusive and probed, files are removed at once.
#[cfg(all(test, any(target_os = "linux", target_os = "macos", windows)))]
mod contract_tests {
    use super::*;
    use crate::sync::{FutexWord, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn two_mappings_of_a_segment_share_memory_and_its_name_goes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let a = Segment::create(&path, 4096, Access::Private).unwrap();
        let b = Segment::open(&path, 4096, 4096, Access::Private).unwrap();
        // SAFETY: both mappings are 4096 bytes long and alive; single-threaded test.
        unsafe {
            a.as_ptr().add(100).write_volatile(42);
            assert_eq!(b.as_ptr().add(100).read_volatile(), 42);
        }
        assert!(
            Segment::create(&path, 4096, Access::Private).is_err(),
            "create is exclusive"
        );
        assert!(Segment::open(&path, 8192, 1 << 20, Access::Private).is_err());
        // Removed while both mappings live: the name is free at once (Windows keeps a
        // deleted file's name while it is mapped unless it is renamed away first).
        assert!(unlink_segment(&path).unwrap());
        assert!(!path.exists());
        let c = Segment::create(&path, 4096, Access::Private).unwrap();
        // SAFETY: as above.
        unsafe { assert_eq!(c.as_ptr().add(100).read_volatile(), 0, "a new file") };
        drop((a, b, c));
    }

    /// Windows: what an event loop waits on for a word (its named event, through
    /// `Listener::watch` in the system thread pool) is woken by a `wake` through another
    /// mapping, and `clear` resets it.
    #[cfg(windows)]
    #[test]
    fn an_event_loop_waiter_is_woken_through_another_mapping_of_the_word() {
        use std::task::{Wake, Waker as TaskWaker};
        struct Flag(std::sync::Mutex<bool>, std::sync::Condvar);
        impl Wake for Flag {
            fn wake(self: std::sync::Arc<Self>) {
                *self.0.lock().unwrap() = true;
                self.1.notify_all();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bell");
        let a = Segment::create(&path, 4096, Access::Private).unwrap();
        let b = Segment::open(&path, 4096, 4096, Access::Private).unwrap();
        // SAFETY: offset 64 is inside both 4096-byte mappings, which outlive the references;
        // the word is only accessed atomically.
        let (wa, wb): (&FutexWord, &FutexWord) = unsafe {
            (
                &*a.as_ptr().add(64).cast::<FutexWord>(),
                &*b.as_ptr().add(64).cast::<FutexWord>(),
            )
        };
        let listener = a.waker().listener(wa).expect("the word's event");
        assert!(!listener.clear(), "a new event is not set");
        let flag = std::sync::Arc::new(Flag(
            std::sync::Mutex::new(false),
            std::sync::Condvar::new(),
        ));
        let watch = listener
            .watch(&TaskWaker::from(std::sync::Arc::clone(&flag)))
            .expect("a registered wait");
        assert!(!watch.fired());
        wb.store(1, Ordering::Release);
        b.waker().wake(wb);
        let woken = flag
            .1
            .wait_timeout_while(flag.0.lock().unwrap(), Duration::from_secs(10), |w| !*w)
            .unwrap();
        assert!(*woken.0, "the task was woken");
        drop(woken);
        assert!(watch.fired());
        drop(watch);
        assert!(listener.clear(), "the event stays set until cleared");
        assert!(!listener.clear());
    }

    #[test]
    fn a_sleeper_is_woken_through_another_mapping_of_the_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bell");
        let a = Segment::create(&path, 4096, Access::Private).unwrap();
        let b = Segment::open(&path, 4096, 4096, Access::Private).unwrap();
        // SAFETY: offset 64 is inside both 4096-byte, page-aligned mappings, which outlive
        // the references (joined below); the word is only accessed atomically.
        let (wa, wb): (&'static FutexWord, &'static FutexWord) = unsafe {
            (
                &*a.as_ptr().add(64).cast::<FutexWord>(),
                &*b.as_ptr().add(64).cast::<FutexWord>(),
            )
        };
        let (waker_a, waker_b) = (a.waker(), b.waker());
        assert_eq!(waker_a.wait(wa, 1, None), FutexWait::ValueChanged);
        let t = Instant::now();
        assert_eq!(
            waker_a.wait(wa, 0, Some(Duration::from_millis(20))),
            FutexWait::TimedOut
        );
        assert!(
            t.elapsed() >= Duration::from_millis(15),
            "{:?}",
            t.elapsed()
        );
        let sleeper = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut sleeps = 0;
            while wa.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                waker_a.wait(wa, 0, Some(Duration::from_secs(10)));
                sleeps += 1;
            }
            (wa.load(Ordering::Acquire), sleeps)
        });
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        wb.store(7, Ordering::Release);
        waker_b.wake(wb);
        let (value, sleeps) = sleeper.join().unwrap();
        assert_eq!(value, 7);
        assert!(sleeps <= 2, "woken, not timed out ({sleeps} sleeps)");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "woken promptly: {:?}",
            t.elapsed()
        );
        drop((a, b));
    }

    #[test]
    fn lock_files_are_exclusive_probed_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        assert_eq!(probe_lock(&path).unwrap(), LockState::Missing);
        let held = LockFile::acquire(&path, Access::Private).unwrap();
        assert_eq!(probe_lock(&path).unwrap(), LockState::Held);
        assert!(LockFile::acquire(&path, Access::Private).is_err());
        drop(held);
        assert_eq!(probe_lock(&path).unwrap(), LockState::Free);
        remove_file(&path).unwrap();
        assert_eq!(probe_lock(&path).unwrap(), LockState::Missing);
    }

    #[test]
    fn private_directories_are_made_and_small_files_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("b");
        ensure_private_dir(&dir).unwrap();
        ensure_private_dir(&dir).unwrap();
        let f = dir.join("rec.json");
        write_file(&f, b"{\"x\":1}", Access::Private).unwrap();
        assert_eq!(
            read_small_file(&f, 64, Access::Private).unwrap(),
            b"{\"x\":1}"
        );
        assert!(
            read_small_file(&f, 3, Access::Private).is_err(),
            "too large"
        );
        let not_dir = root.path().join("file");
        std::fs::write(&not_dir, b"x").unwrap();
        assert!(ensure_private_dir(&not_dir).is_err());
    }
}
