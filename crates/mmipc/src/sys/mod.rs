//! The platform layer: everything that talks to the operating system lives here, and nothing
//! outside this module says `target_os`.
//!
//! # Contract each backend provides
//!
//! | function | Linux | macOS | Windows |
//! |---|---|---|---|
//! | [`Segment::create`]: create a named shared segment exclusively (mode 0600, or 0660 for [`Access::Group`]; `O_EXCL`, `O_NOFOLLOW`), size it, map it | yes | `Unsupported` | `Unsupported` |
//! | [`Segment::open`]: open an existing segment without following symlinks, check with `fstat` that it is a regular file owned by us (for [`Access::Group`]: of the channel's group), closed to other users, and at least `min_len` bytes (so a short file cannot `SIGBUS` us), map it | yes | `Unsupported` | `Unsupported` |
//! | [`unlink_segment`]: remove a segment's name (mappings stay valid) | yes | `Unsupported` | `Unsupported` |
//! | [`futex_wait`] / [`futex_wake`]: sleep on / wake sleepers of a 32-bit word in shared memory, across processes (no `FUTEX_PRIVATE_FLAG`) | yes | sleeps 1 ms and reports a wake-up (callers re-check); wake is a no-op | same |
//! | [`LockFile::acquire`]: an exclusive lock held for a process's lifetime and released by the kernel when it dies; [`probe_lock`]: non-blocking test of someone else's | yes | `Unsupported` | `Unsupported` |
//! | [`is_memory_fs`]: whether a directory is on tmpfs/ramfs (where segments may live) | yes | `false` | `false` |
//! | [`write_file`] / [`read_small_file`]: small files (records) written 0600 (0660 for a group) and read without following symlinks (for a group: only of the group, not writable by others) | yes | plain std | plain std |
//! | [`current_uid`]: the effective user id (names the per-user directory) | yes | 0 | 0 |
//! | [`ensure_private_dir`]: create a directory 0700 (with parents) and refuse one owned by another user, writable by others, or a symlink | yes | `Unsupported` | `Unsupported` |
//! | [`ensure_group_dir`]: create a directory 2770 of a group (with parents) and refuse one of another group, open to others, not writable by the group, or a symlink | yes | `Unsupported` | `Unsupported` |
//! | [`dir_access`]: whether an existing channel directory is private or shared with a group (for inspection tools) | yes | private | private |
//!
//! Mappings are exposed only as raw pointers ([`Segment::as_ptr`]), never as `&mut [u8]`:
//! another process writes the same memory concurrently, so Rust references to it would be
//! unsound. Typed access goes through atomics.

#[cfg(target_os = "linux")]
#[allow(dead_code)]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(windows)]
#[allow(dead_code)]
mod windows;
#[cfg(windows)]
use windows as imp;

#[cfg(not(any(target_os = "linux", windows)))]
#[allow(dead_code)]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows)))]
use unsupported as imp;

#[allow(unused_imports)]
pub(crate) use imp::{
    LockFile, Segment, Waker, current_uid, dir_access, ensure_group_dir, ensure_private_dir,
    is_memory_fs, probe_lock, read_small_file, unlink_segment, write_file,
};

/// The platform's default root directory, where it has one of its own (Windows:
/// `%LOCALAPPDATA%\mmipc`); `None` where the root is chosen under `/dev/shm` or
/// `$XDG_RUNTIME_DIR`.
pub(crate) fn platform_root() -> Option<std::path::PathBuf> {
    #[cfg(windows)]
    {
        imp::platform_root()
    }
    #[cfg(not(windows))]
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
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn file_mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Group { .. } => 0o660,
        }
    }
}

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
