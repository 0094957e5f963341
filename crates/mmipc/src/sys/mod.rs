//! The platform layer: everything that talks to the operating system lives here, and nothing
//! outside this module says `target_os`.
//!
//! # Contract each backend provides
//!
//! | function | Linux | macOS | Windows |
//! |---|---|---|---|
//! | [`Segment::create`]: create a named shared segment exclusively (mode 0600, `O_EXCL`, `O_NOFOLLOW`), size it, map it | yes | `Unsupported` | `Unsupported` |
//! | [`Segment::open`]: open an existing segment without following symlinks, check with `fstat` that it is a regular file owned by us and at least `min_len` bytes (so a short file cannot `SIGBUS` us), map it | yes | `Unsupported` | `Unsupported` |
//! | [`unlink_segment`]: remove a segment's name (mappings stay valid) | yes | `Unsupported` | `Unsupported` |
//! | [`futex_wait`] / [`futex_wake`]: sleep on / wake sleepers of a 32-bit word in shared memory, across processes (no `FUTEX_PRIVATE_FLAG`) | yes | sleeps 1 ms and reports a wake-up (callers re-check); wake is a no-op | same |
//! | [`LockFile::acquire`]: an exclusive lock held for a process's lifetime and released by the kernel when it dies; [`probe_lock`]: non-blocking test of someone else's | yes | `Unsupported` | `Unsupported` |
//! | [`is_memory_fs`]: whether a directory is on tmpfs/ramfs (where segments may live) | yes | `false` | `false` |
//! | [`write_private_file`] / [`read_small_file`]: small files (records) written 0600 and read without following symlinks | yes | plain std | plain std |
//! | [`current_uid`]: the effective user id (names the per-user directory) | yes | 0 | 0 |
//! | [`ensure_private_dir`]: create a directory 0700 (with parents) and refuse one owned by another user, writable by others, or a symlink | yes | `Unsupported` | `Unsupported` |
//!
//! Mappings are exposed only as raw pointers ([`Segment::as_ptr`]), never as `&mut [u8]`:
//! another process writes the same memory concurrently, so Rust references to it would be
//! unsound. Typed access goes through atomics.

#[cfg(target_os = "linux")]
#[allow(dead_code)]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
#[allow(dead_code)]
mod unsupported;
#[cfg(not(target_os = "linux"))]
use unsupported as imp;

// Lock files and private directories are used by the discovery layer built on top of the ring.
#[allow(unused_imports)]
pub(crate) use imp::{
    LockFile, Segment, current_uid, ensure_private_dir, futex_wait, futex_wake, is_memory_fs,
    probe_lock, read_small_file, unlink_segment, write_private_file,
};

/// What [`futex_wait`] observed.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken by [`futex_wake`], by a signal, or spuriously; the caller re-checks its condition.
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
