//! Waking a peer that waits in an event loop rather than on a futex: its wake-up pipe
//! (`sub-<id>.wake` beside its doorbell, `pub-<id>.wake` for a publisher waiting for room),
//! opened the first time it is needed and written after each ring of the bell it listens
//! to. Owns opening and writing a peer's pipe; whether the peer listens is the flag of the
//! bell's header (the doorbell's `listen`, the ring's `space_listen`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::event::lock;
use crate::sys;

/// A peer's wake-up pipe, opened on first use. A pipe that is not a FIFO of ours, or whose
/// reader is gone, is left alone for good (a peer makes its pipe before announcing it, and
/// a reader never comes back); after another failure (too many open files, a race with the
/// peer) opening is tried again after [`RETRY`].
#[derive(Debug)]
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) struct PeerPipe {
    path: PathBuf,
    access: sys::Access,
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    Unopened,
    #[cfg(unix)]
    Open(sys::Notifier),
    /// Opening failed for a reason that may pass: try again from then on.
    #[cfg(unix)]
    RetryAfter(std::time::Instant),
    Failed,
}

/// How long after a failure that may pass a pipe is opened again.
#[cfg(unix)]
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl PeerPipe {
    pub(crate) fn new(path: PathBuf, access: sys::Access) -> PeerPipe {
        PeerPipe {
            path,
            access,
            state: Mutex::new(State::Unopened),
        }
    }

    /// Writes a byte to the pipe (opening it first if need be); never blocks.
    pub(crate) fn notify(&self) {
        let mut state = lock(&self.state);
        #[cfg(unix)]
        {
            let due = match *state {
                State::Unopened => true,
                State::RetryAfter(t) => t.elapsed() >= RETRY,
                _ => false,
            };
            if due {
                *state = match sys::Notifier::open(&self.path, self.access) {
                    Ok(n) => State::Open(n),
                    Err(crate::Error::BadSegment { .. }) => State::Failed,
                    Err(_) => State::RetryAfter(std::time::Instant::now()),
                };
            }
            if let State::Open(n) = &*state
                && n.notify().is_err()
            {
                *state = State::Failed;
            }
        }
        #[cfg(not(unix))]
        {
            // Windows: the waiting side waits on the bell's named event itself.
            *state = State::Failed;
        }
    }
}

/// The wake-up pipe beside a doorbell or record file `path` (same name, `.wake`).
pub(crate) fn pipe_path(path: &Path) -> PathBuf {
    path.with_extension("wake")
}
