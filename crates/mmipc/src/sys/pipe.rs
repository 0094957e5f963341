//! Wake-up pipes (Unix): a named FIFO that an event loop can poll. The futex of a doorbell
//! wakes only threads sleeping in the kernel on that word; a task of an event loop (tokio,
//! mio, a C program's `poll`) waits on a descriptor instead. The waiting endpoint makes a FIFO
//! beside its doorbell and keeps its read end ([`Listener`], `AsFd`); a peer that rings the
//! doorbell while the endpoint is parked also writes one byte to the FIFO ([`Notifier`]),
//! which makes the read end readable. Level-triggered: it stays readable until
//! [`Listener::clear`] reads the bytes.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Access;
use crate::error::{Error, Result};

/// The waiting end of a wake-up pipe; removes the FIFO's name when dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    read: File,
    /// Our own write end: with it the pipe never reports end-of-file (which would make it
    /// readable for ever) while no peer has it open.
    _write: File,
    path: PathBuf,
}

impl Listener {
    /// Makes a FIFO at `path` (mode 0600, or 0660 of the group) and opens both of its ends
    /// without blocking. A stale file of ours under that name is replaced.
    pub(crate) fn create(path: &Path, access: Access) -> Result<Listener> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            Error::io(
                "make wake-up pipe",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"),
            )
        })?;
        let mode = access.file_mode() as libc::mode_t;
        let mut made = false;
        for _ in 0..2 {
            // SAFETY: `c` is a NUL-terminated path that lives across the call.
            if unsafe { libc::mkfifo(c.as_ptr(), mode) } == 0 {
                made = true;
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(Error::io("make wake-up pipe", path, e));
            }
            // Our names carry a random id: an existing one is a leftover of ours.
            let _ = std::fs::remove_file(path);
        }
        if !made {
            return Err(Error::io(
                "make wake-up pipe",
                path,
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        let opened = open_end(path, false, access).and_then(|read| {
            super::unix::apply_access(&read, access)
                .map_err(|e| Error::io("set mode of wake-up pipe", path, e))?;
            Ok((read, open_end(path, true, access)?))
        });
        match opened {
            Ok((read, write)) => Ok(Listener {
                read,
                _write: write,
                path: path.to_owned(),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Another descriptor of the read end (for a reactor that wants to own one); [`drain`]
    /// empties the pipe through it.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn duplicate(&self) -> io::Result<File> {
        self.read.try_clone()
    }

    /// Reads every byte waiting in the pipe, so that it polls readable again only after a
    /// later notification. Returns whether there was any.
    pub(crate) fn clear(&self) -> bool {
        drain(&self.read)
    }

    /// Makes our own pipe readable (a wake-up from this process).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn notify_self(&self) {
        let _ = (&self._write).write(&[1]);
    }
}

/// Reads every byte waiting in a non-blocking pipe read end; whether there was any.
pub(crate) fn drain(read: &File) -> bool {
    let mut buf = [0u8; 64];
    let mut any = false;
    loop {
        match (&*read).read(&mut buf) {
            Ok(n) if n == buf.len() => any = true,
            Ok(n) => return any || n > 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // `WouldBlock`: empty.
            Err(_) => return any,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Best effort: a cleaner may have removed it already.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

/// A peer's wake-up pipe, opened for writing.
#[derive(Debug)]
pub(crate) struct Notifier {
    write: File,
}

impl Notifier {
    /// Opens the FIFO at `path` for writing without blocking, checking that it is a FIFO of
    /// ours (or of the group). Fails if nobody holds its read end.
    pub(crate) fn open(path: &Path, access: Access) -> Result<Notifier> {
        Ok(Notifier {
            write: open_end(path, true, access)?,
        })
    }

    /// Writes one byte, never blocking: a full pipe is already readable. Fails when the
    /// reader is gone (the pipe is then useless for good).
    pub(crate) fn notify(&self) -> io::Result<()> {
        let _quiet = NoSigpipe::new();
        loop {
            return match (&self.write).write(&[1]) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }
}

/// Opens one end of the FIFO at `path` without blocking or following a symlink, and checks
/// that it is a FIFO that `access` lets us trust.
fn open_end(path: &Path, write: bool, access: Access) -> Result<File> {
    let what = if write {
        "open wake-up pipe for writing"
    } else {
        "open wake-up pipe"
    };
    let file = OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(what, path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(what, path, e))?;
    let bad = |problem: String| Error::BadSegment {
        path: path.to_owned(),
        problem,
    };
    if !meta.file_type().is_fifo() {
        return Err(bad("it is not a FIFO".into()));
    }
    if let Some(problem) = super::unix::foreign(&meta, access) {
        return Err(bad(problem));
    }
    #[cfg(target_os = "macos")]
    if write {
        // SAFETY: `file` is an open descriptor; F_SETNOSIGPIPE takes an int flag.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETNOSIGPIPE, 1) };
    }
    Ok(file)
}

/// Keeps a write to a pipe whose reader died from raising `SIGPIPE` in this thread (whose
/// default action ends the process; Rust programs ignore it, a C program embedding us may
/// not): blocks the signal for the guard's life and consumes one it raised. macOS sets
/// `F_SETNOSIGPIPE` on the descriptor instead.
struct NoSigpipe {
    #[cfg(target_os = "linux")]
    old: libc::sigset_t,
    #[cfg(target_os = "linux")]
    was_pending: bool,
}

impl NoSigpipe {
    #[cfg(target_os = "linux")]
    fn new() -> NoSigpipe {
        // SAFETY: the sets are plain data initialised by sigemptyset/sigaddset/sigpending
        // before use; pthread_sigmask only changes this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            libc::sigemptyset(&mut pending);
            libc::sigpending(&mut pending);
            let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            NoSigpipe { old, was_pending }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> NoSigpipe {
        NoSigpipe {}
    }
}

#[cfg(target_os = "linux")]
impl Drop for NoSigpipe {
    fn drop(&mut self) {
        // SAFETY: as in `new`; the zero timeout makes sigtimedwait a poll that consumes a
        // SIGPIPE our write raised (none was pending before), then the old mask returns.
        unsafe {
            if !self.was_pending {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGPIPE);
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_makes_the_listener_readable_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub.wake");
        let listener = Listener::create(&path, Access::Private).unwrap();
        assert!(!listener.clear(), "a new pipe is empty");
        let notifier = Notifier::open(&path, Access::Private).unwrap();
        for _ in 0..100_000 {
            notifier.notify().unwrap(); // a full pipe does not block
        }
        let mut fds = [libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, zero timeout.
        assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) }, 1);
        assert!(listener.clear());
        fds[0].revents = 0;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) }, 0, "cleared");
        drop(notifier); // no end-of-file: our own write end stays open
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) }, 0);
        drop(listener);
        assert!(!path.exists(), "the listener removes its name");
        assert!(Notifier::open(&path, Access::Private).is_err());
    }

    #[test]
    fn a_notifier_refuses_a_regular_file_and_survives_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wake");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            Notifier::open(&path, Access::Private),
            Err(Error::BadSegment { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        let listener = Listener::create(&path, Access::Private).unwrap();
        let notifier = Notifier::open(&path, Access::Private).unwrap();
        drop(listener);
        // The reader is gone: an error (EPIPE), not a signal that ends the process.
        assert!(notifier.notify().is_err());
    }
}
