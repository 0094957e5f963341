//! Waiting for messages in an event loop: the subscriber's wake-up pipe (Unix: a descriptor)
//! or its doorbell's event (Windows: a handle), which [`Subscriber::arm`] prepares and a
//! publisher's ring makes ready.

#[cfg(unix)]
use std::os::fd::{AsRawFd, RawFd};
#[cfg(windows)]
use std::os::windows::io::RawHandle;

use super::Subscriber;
use crate::connection::segment;
use crate::error::Result;
use crate::sync::{Ordering, fence};

impl Subscriber {
    /// Makes the wake-up source once (the pipe, or the doorbell event's handle).
    pub(super) fn listener(&mut self) -> Result<&crate::sys::Listener> {
        if self.listener.is_none() {
            let core = &*self.core;
            let bell = segment::bell_path(&core.dirs, core.id);
            let listener = core.role.doorbell.listen(&bell, core.dirs.access)?;
            self.listener = Some(listener);
        }
        Ok(self.listener.as_ref().expect("made above"))
    }

    /// Windows: a handle (of a manual-reset event) that is signalled when this subscriber may
    /// have work, for event loops that wait on handles (`WaitForMultipleObjects`,
    /// `RegisterWaitForSingleObject`); the async methods use it too. Valid while the
    /// subscriber lives; do not close it. The protocol is [`Subscriber::arm`]'s, as with the
    /// Unix `wake_fd`: receive until `None`, `arm`, and wait only if `arm` returned `false`;
    /// `arm` resets the event.
    ///
    /// # Errors
    /// [`Error::BadSegment`](crate::Error::BadSegment) if the event cannot be opened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let handle = subscriber.wake_handle()?;
    /// if !subscriber.arm() {
    ///     // wait for `handle` in the event loop, then receive
    /// }
    /// # let _ = handle;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    #[cfg(windows)]
    pub fn wake_handle(&mut self) -> Result<RawHandle> {
        Ok(self.listener()?.raw_handle())
    }

    /// A descriptor that becomes readable when this subscriber may have work, for event
    /// loops other than tokio (mio, calloop, glib, `poll(2)`); the async methods use it too.
    /// The first call makes the subscriber's wake-up pipe (a FIFO beside its doorbell); later
    /// calls return the same descriptor, valid while the subscriber lives.
    ///
    /// It is **level-triggered and armed**: it becomes readable only after
    /// [`Subscriber::arm`] returned `false`, when a publisher writes, connects or goes away
    /// (or spuriously); it stays readable until the next `arm` reads it empty. The loop is:
    /// receive with [`try_recv`](Subscriber::try_recv) until `None`, call `arm`, and wait for
    /// the descriptor only if `arm` returned `false`. Any receive call ends the arming; a
    /// subscriber that stays armed makes each publish ring it (a system call), so arm only
    /// right before waiting. Edge-triggered polling works too: `arm` empties the pipe, so
    /// every later notification is a new edge.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the pipe cannot be made (a file system that has no
    /// FIFOs, too many open files).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let fd = subscriber.wake_fd()?;
    /// let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    /// loop {
    ///     while let Some(msg) = subscriber.try_recv() {
    ///         println!("{} bytes", msg.len());
    ///     }
    ///     if subscriber.arm() {
    ///         continue; // a message came in meanwhile
    ///     }
    ///     // SAFETY: one valid pollfd.
    ///     if unsafe { libc::poll(&mut pollfd, 1, 10) } == 0 {
    ///         break; // nothing for 10 ms: this example ends
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(unix)]
    pub fn wake_fd(&mut self) -> Result<RawFd> {
        Ok(self.listener()?.as_raw_fd())
    }

    /// Prepares to wait for the descriptor of `wake_fd` (Windows: the handle of `wake_handle`):
    /// empties the wake-up pipe (resets the event), registers
    /// this subscriber as waiting (so that publishers write to the pipe), and checks once
    /// more for work. Returns `true` if there is some (a message, or a new publisher's ring,
    /// or a stop): receive instead of waiting. Returns `false` if the caller may wait for
    /// the descriptor: nothing is lost, as a publisher that writes after this check sees the
    /// registration and makes the descriptor readable. Without a wake-up pipe (no
    /// successful `wake_fd` yet) it only registers and checks.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// # #[cfg(unix)]
    /// subscriber.wake_fd()?;
    /// assert!(!subscriber.arm()); // nothing to receive: wait for the descriptor
    /// assert!(subscriber.try_recv().is_none()); // a receive call ends the arming
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn arm(&mut self) -> bool {
        if let Some(l) = &self.listener {
            l.clear();
        }
        if !self.armed {
            self.armed = true;
            let bell = self.core.role.doorbell.bell();
            bell.waiters.fetch_add(1, Ordering::Relaxed);
        }
        // SYNC POINT wake: pairs with the fence in `ring::notify` (the same Dekker pair as a
        // sleeping receive: either the ringer sees our registration, or we see its data).
        fence(Ordering::SeqCst);
        if self.ready() {
            self.disarm();
            return true;
        }
        false
    }
}
