//! Publishing on tokio (the `tokio` feature): a publish that waits for room in a full ring
//! without blocking the executor thread.
//!
//! A large message is first written once into the payload segment if a block can be had now
//! (`Sending::enter_large`): a descriptor to each subscriber with room and budget, the payload
//! inline to the others. Otherwise the message is written at once to every ring with room. Either
//! way the rings without room are owed it (the publisher's backlog, see `Backlog`), and the publish
//! registers on their space bells and waits for its wake-up source (`source`): on Unix the
//! publisher's wake-up pipe (`pub-<id>.wake`), which a subscriber writes to when it frees room
//! while the ring's `space_listen` flag is set; on Windows the space bells' named events
//! themselves, plus an event of its own for wake-ups from this process. Fragments of a message
//! larger than the
//! ring go in as room appears.

use std::time::{Duration, Instant};

use super::{Backlog, Delivery, Out, Publisher, Sending};
use crate::connection::framing;
use crate::endpoint::Core;
use crate::error::PublishError;
use crate::options::OnFull;
use crate::ring::{SAFETY_RECHECK, count_rescued};
use crate::runtime;
use crate::sync::{AtomicU32, Ordering};

/// How long a publish that finds the publisher busy in a sync publish on another thread
/// (which may be waiting for room) waits before looking again, doubling up to
/// [`CONTENDED_MAX`].
const CONTENDED_FIRST: Duration = Duration::from_micros(100);
const CONTENDED_MAX: Duration = Duration::from_millis(10);

/// The async side of a publisher: its wake-up source, and how many publishes wait on it.
#[derive(Default)]
pub(super) struct AsyncState {
    pub(super) source: source::Source,
    waiters: AtomicU32,
}

impl AsyncState {
    /// Wakes the async publishes of this process (a connection ended, or a publish that
    /// others may wait behind finished).
    pub(super) fn wake_self(&self) {
        self.source.wake_self();
    }

    /// Removes the wake-up source (the publisher closes).
    pub(super) fn close(&self) {
        self.source.close();
    }
}

impl Publisher {
    /// Sends `msg` like [`Publisher::publish`], waiting for room without blocking the
    /// thread: under [`OnFull::Block`] it waits as long as it takes, under
    /// [`OnFull::BlockFor`] up to that long per subscriber (then that subscriber counts a
    /// drop); under the other policies it never waits and is `publish`. Needs a tokio
    /// runtime with IO and time enabled.
    ///
    /// **Cancellation**: a future dropped after the message went to some subscribers and not
    /// yet to others still delivers it to the others, first thing in the next publish on
    /// this publisher (sync or async), so every subscriber sees the same order; a future
    /// dropped before that sent nothing.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs")
    ///     .dir(dir.path())
    ///     .deliver_to_same_process(true)
    ///     .on_full(mmipc::OnFull::Block)
    ///     .build()?;
    /// let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// publisher.wait_for_subscribers_async(1, Duration::from_secs(10)).await?;
    /// publisher.publish_async(b"hello").await?;
    /// assert_eq!(subscriber.recv_async().await.payload(), b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish_async(&self, msg: &[u8]) -> Result<(), PublishError> {
        self.publish_parts_async(&[msg]).await
    }

    /// As [`Publisher::publish_async`], for a message made of `parts` concatenated.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// publisher.publish_parts_async(&[b"head", b"body"]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish_parts_async(&self, parts: &[&[u8]]) -> Result<(), PublishError> {
        let core = &*self.core;
        let s = &core.role;
        if !matches!(s.on_full, OnFull::Block | OnFull::BlockFor(_)) {
            return self.publish_parts(parts);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > core.common.max_message_size {
            return Err(PublishError::MessageTooLarge {
                len,
                max: core.common.max_message_size,
            });
        }
        // Made on the first wait (a publish that finds room costs nothing more).
        let mut waiting: Option<Waiting> = None;
        // The sequence number of our message once it is written to some rings.
        let mut ours: Option<u64> = None;
        let mut timer_fired = false;
        let mut contended = CONTENDED_FIRST;
        loop {
            let (wakeup, deadline) =
                match s.attempt(core, parts, len, &mut ours, timer_fired, &mut waiting) {
                    Step::Done(result) => return result,
                    Step::Again => {
                        timer_fired = false;
                        continue;
                    }
                    Step::Busy => {
                        // A sync publish on another thread holds the publisher, perhaps
                        // waiting for room: never block the executor thread behind it.
                        tokio::time::sleep(contended).await;
                        contended = (contended * 2).min(CONTENDED_MAX);
                        continue;
                    }
                    Step::Wait { wakeup, deadline } => (wakeup, deadline),
                };
            contended = CONTENDED_FIRST;
            let period = if wakeup.is_real() {
                SAFETY_RECHECK
            } else {
                source::NO_SOURCE_RECHECK
            };
            let recheck = Instant::now() + period;
            let until = deadline.map_or(recheck, |d| d.min(recheck));
            let woke = wakeup.wait(&s.aio.source, until).await;
            timer_fired = !woke && deadline.is_none_or(|d| until < d);
        }
    }
}

impl Publisher {
    /// As [`Publisher::wait_for_subscribers`], without blocking the thread.
    ///
    /// # Errors
    /// As [`Publisher::wait_for_subscribers`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::time::Duration;
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// publisher.wait_for_subscribers_async(1, Duration::from_secs(5)).await?;
    /// publisher.publish_async(b"nobody misses this").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_subscribers_async(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<usize, crate::WaitError> {
        let result = self.core.wait_for_peers_async(n, timeout).await;
        self.with_same_process_hint(result)
    }
}

/// What one look of an async publish came to.
enum Step {
    Done(Result<(), PublishError>),
    /// Look again at once (room appeared while registering).
    Again,
    /// The publisher is held by a publish on another thread.
    Busy,
    /// Wait for the wake-up source until the backlog's deadline (if any).
    Wait {
        wakeup: source::Wakeup,
        deadline: Option<Instant>,
    },
}

impl Sending {
    /// One look of an async publish, under the publisher's lock (taken without waiting):
    /// deliver what fits of the backlog, then enter our message, then register for room in
    /// the rings still owed.
    fn attempt<'s>(
        &'s self,
        core: &Core<Sending>,
        parts: &[&[u8]],
        len: usize,
        ours: &mut Option<u64>,
        timer_fired: bool,
        waiting: &mut Option<Waiting<'s>>,
    ) -> Step {
        let mut out = match self.out.try_lock() {
            Ok(out) => out,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Step::Busy,
        };
        if runtime::Endpoint::is_closed(core) {
            return Step::Done(Err(PublishError::Closed));
        }
        if let Some(mut new) = self.pending.take() {
            out.conns.append(&mut new);
        }
        let before = owed_bytes(&out);
        let rung = timer_fired && self.aio.source.rung(&mut out);
        let backlog = self.advance_backlog(core, &mut out);
        if timer_fired && !rung && owed_bytes(&out) != before {
            // The safety timer, not a ring, found the room.
            count_rescued();
        }
        match *ours {
            Some(seq) if out.backlog.as_ref().is_none_or(|b| b.seq != seq) => {
                return Step::Done(Ok(()));
            }
            None if !backlog => {
                let seq = self.enter(core, &mut out, parts, len);
                if out.backlog.is_none() {
                    return Step::Done(Ok(()));
                }
                *ours = Some(seq);
            }
            _ => {}
        }
        // Wait for room in the rings owed the backlog: register on their space bells, then
        // look once more (a subscriber that freed room before our registration was seen by
        // this look).
        waiting.get_or_insert_with(|| Waiting::new(self));
        let wakeup = self.aio.source.prepare(core, &mut out);
        for c in out.conns.iter_mut().filter(|c| c.owed.is_some()) {
            if !c.space_armed {
                c.space_armed = true;
                c.producer.register_space_waiter(true);
            }
        }
        if !self.advance_backlog(core, &mut out) {
            return Step::Again;
        }
        Step::Wait {
            wakeup,
            deadline: out.backlog.as_ref().and_then(|b| b.deadline),
        }
    }

    /// Writes a new message to every connection, never waiting: the rings without room
    /// are owed it (the backlog). Returns its sequence number.
    fn enter(&self, core: &Core<Sending>, out: &mut Out, parts: &[&[u8]], len: usize) -> u64 {
        out.seq += 1;
        let seq = out.seq;
        // A large message is written once (a descriptor to each subscriber), if a block of
        // the payload segment can be had now.
        if let Some(frame) = self.enter_large(core, out, seq, parts, len) {
            if let Some(frame) = frame {
                out.backlog = Some(Backlog {
                    seq,
                    frame,
                    len,
                    deadline: self.backlog_deadline(),
                });
            }
            return seq;
        }
        let mut owed = false;
        framing::with_frame(seq, parts, |frame| {
            let Out { conns, payload, .. } = &mut *out;
            conns.retain_mut(|c| {
                let stays = c.info.is_live()
                    && (c.too_large(len, &core.events) || {
                        let mut done = 0;
                        let result = c.producer.write_some(frame, &mut done);
                        match c.settle(result, len, &core.events) {
                            Delivery::Done => true,
                            Delivery::NoRoom => {
                                c.owed = Some(done);
                                owed = true;
                                true
                            }
                            Delivery::Ended => false,
                        }
                    });
                // A connection dropped here lets go of its blocks of the payload segment
                // (descriptors that sync publishes sent it).
                if !stays {
                    c.forget(payload, &core.dirs);
                }
                stays
            });
            if owed {
                out.backlog = Some(Backlog {
                    seq,
                    frame: frame.concat(),
                    len,
                    deadline: self.backlog_deadline(),
                });
            }
        });
        seq
    }

    /// When the connections owed a new backlog message drop it: under [`OnFull::BlockFor`],
    /// that long from now.
    fn backlog_deadline(&self) -> Option<Instant> {
        match self.on_full {
            OnFull::BlockFor(d) => crate::options::deadline_after(d),
            _ => None,
        }
    }
}

/// Bytes of the backlog message written so far, over all connections owed it (progress).
fn owed_bytes(out: &Out) -> (usize, u64) {
    out.conns
        .iter()
        .filter_map(|c| c.owed)
        .fold((0, 0), |(n, sum), done| (n + 1, sum + done))
}

/// One async publish in progress; when it ends (or is dropped) the space registrations go
/// if no other publish waits, and the others are woken to look again.
struct Waiting<'a>(&'a Sending);

impl<'a> Waiting<'a> {
    fn new(s: &'a Sending) -> Waiting<'a> {
        s.aio.waiters.fetch_add(1, Ordering::Relaxed);
        Waiting(s)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let s = self.0;
        if s.aio.waiters.fetch_sub(1, Ordering::Relaxed) == 1 {
            // Not behind a sync publish that waits for room (the executor must not block):
            // a registration left here is ended by whoever delivers the backlog.
            if let Ok(mut out) = s.out.try_lock() {
                for c in &mut out.conns {
                    c.disarm();
                }
            }
        } else {
            s.aio.wake_self();
        }
    }
}

/// What a waiting publish waits on, on Unix: the publisher's wake-up pipe.
#[cfg(unix)]
mod source {
    use std::fs::File;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    use super::super::{Out, Sending};
    use crate::connection::segment;
    use crate::endpoint::Core;
    use crate::event::lock;
    use crate::sys;

    /// How often a publish without a wake-up pipe (it could not be made) looks for room.
    pub(in crate::publisher) const NO_SOURCE_RECHECK: Duration = Duration::from_millis(10);

    /// How long a publisher whose pipe could not be made waits before trying again.
    const PIPE_RETRY: Duration = Duration::from_secs(1);

    /// The publisher's wake-up pipe and its registration with a reactor.
    struct Wake {
        listener: sys::Listener,
        fd: Arc<AsyncFd<File>>,
        /// The runtime whose reactor `fd` is registered with: a publish in another runtime
        /// registers a descriptor of its own (the first runtime may be gone, whose
        /// `readable()` then fails at once, or not driving its reactor).
        runtime: tokio::runtime::Id,
    }

    /// The pipe, made on the first wait.
    #[derive(Default)]
    pub(in crate::publisher) struct Source {
        wake: Mutex<Option<Wake>>,
        /// When making the pipe last failed (not tried again for [`PIPE_RETRY`]).
        failed: Mutex<Option<Instant>>,
    }

    /// What one wait waits on: the pipe's registration (`None`: no pipe, a timed look).
    pub(in crate::publisher) struct Wakeup(Option<Arc<AsyncFd<File>>>);

    impl Source {
        pub(super) fn wake_self(&self) {
            if let Some(w) = &*lock(&self.wake) {
                w.listener.notify_self();
            }
        }

        pub(super) fn close(&self) {
            drop(lock(&self.wake).take());
        }

        /// Under the publisher's lock, before the re-check: the pipe registered with this
        /// runtime, and the rings owed the backlog told to write it (`space_listen`).
        pub(super) fn prepare(&self, core: &Core<Sending>, out: &mut Out) -> Wakeup {
            let fd = self.pipe(core);
            if fd.is_some() {
                for c in out.conns.iter().filter(|c| c.owed.is_some()) {
                    c.producer.listen_for_space();
                }
            }
            Wakeup(fd)
        }

        /// Empties the pipe; whether it held a wake-up.
        pub(super) fn rung(&self, _out: &mut Out) -> bool {
            self.drain()
        }

        fn drain(&self) -> bool {
            lock(&self.wake)
                .as_ref()
                .is_some_and(|w| sys::drain(w.fd.get_ref()))
        }

        /// The pipe registered with the current runtime, made on first use; `None` if it
        /// cannot be made (publishes then look for room every [`NO_SOURCE_RECHECK`], and it
        /// is tried again after [`PIPE_RETRY`]).
        fn pipe(&self, core: &Core<Sending>) -> Option<Arc<AsyncFd<File>>> {
            let mut wake = lock(&self.wake);
            let here = tokio::runtime::Handle::current().id();
            let register = |listener: &sys::Listener| -> Option<Arc<AsyncFd<File>>> {
                let file = listener.duplicate().ok()?;
                // SAFETY: `file` is a `File` the `AsyncFd` owns: open, and the same
                // descriptor, until the `AsyncFd` drops.
                let fd =
                    unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }.ok()?;
                Some(Arc::new(fd))
            };
            match &mut *wake {
                Some(w) if w.runtime != here => {
                    w.fd = register(&w.listener)?;
                    w.runtime = here;
                }
                Some(_) => {}
                None => {
                    let mut failed = lock(&self.failed);
                    if failed.is_some_and(|t| t.elapsed() < PIPE_RETRY) {
                        return None;
                    }
                    let path = segment::publisher_pipe_path(&core.dirs, core.id);
                    let made = sys::Listener::create(&path, core.dirs.access)
                        .ok()
                        .and_then(|l| Some((register(&l)?, l)));
                    *failed = made.is_none().then(Instant::now);
                    let (fd, listener) = made?;
                    *wake = Some(Wake {
                        listener,
                        fd,
                        runtime: here,
                    });
                }
            }
            wake.as_ref().map(|w| Arc::clone(&w.fd))
        }
    }

    impl Wakeup {
        /// Whether there is something to wait on (else the caller looks again soon).
        pub(super) fn is_real(&self) -> bool {
            self.0.is_some()
        }

        /// Waits until the pipe is readable or `until`; whether it was woken.
        pub(super) async fn wait(self, source: &Source, until: Instant) -> bool {
            let Some(fd) = self.0 else {
                tokio::time::sleep_until(until.into()).await;
                return false;
            };
            let readable = async {
                match fd.readable().await {
                    Ok(mut ready) => ready.clear_ready(),
                    // The reactor is gone: never return at once (a spin).
                    Err(_) => std::future::pending().await,
                }
            };
            let woke = tokio::time::timeout_at(until.into(), readable).await;
            // Empty the pipe before looking again (a later ring makes it readable).
            source.drain();
            woke.is_ok()
        }
    }
}

/// What a waiting publish waits on, on Windows: the named events of the space bells of the
/// rings owed the backlog (set by their subscribers' releases), and an event of the
/// publisher's own for wake-ups from this process; waited on in the system thread pool.
#[cfg(windows)]
mod source {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::super::{Out, Sending};
    use crate::endpoint::Core;
    use crate::event::lock;
    use crate::sys;

    /// How often a publish with nothing to wait on looks for room.
    pub(in crate::publisher) const NO_SOURCE_RECHECK: Duration = Duration::from_millis(10);

    /// The publisher's own event, made on the first wait.
    #[derive(Default)]
    pub(in crate::publisher) struct Source {
        own: Mutex<Option<sys::Listener>>,
    }

    /// The events one wait waits on.
    pub(in crate::publisher) struct Wakeup(Vec<sys::Listener>);

    impl Source {
        pub(super) fn wake_self(&self) {
            if let Some(own) = &*lock(&self.own) {
                own.notify_self();
            }
        }

        pub(super) fn close(&self) {}

        /// Under the publisher's lock, before the re-check: resets our event and the space
        /// events of the rings owed the backlog (a ring after the reset sets them again).
        pub(super) fn prepare(&self, _core: &Core<Sending>, out: &mut Out) -> Wakeup {
            let mut events = Vec::new();
            {
                let mut own = lock(&self.own);
                if own.is_none() {
                    *own = sys::Listener::unnamed();
                }
                if let Some(own) = &*own {
                    own.clear();
                    events.push(own.clone());
                }
            }
            for c in out.conns.iter_mut().filter(|c| c.owed.is_some()) {
                if c.space_listener.is_none() {
                    c.space_listener = c.producer.space_listener();
                }
                if let Some(l) = &c.space_listener {
                    l.clear();
                    events.push(l.clone());
                }
            }
            Wakeup(events)
        }

        /// Resets the events; whether one was set.
        pub(super) fn rung(&self, out: &mut Out) -> bool {
            let own = lock(&self.own).as_ref().is_some_and(|l| l.clear());
            // Every event is reset (no short cut).
            let mut space = false;
            for l in out.conns.iter().filter_map(|c| c.space_listener.as_ref()) {
                space |= l.clear();
            }
            own || space
        }
    }

    impl Wakeup {
        /// Whether there is something to wait on (else the caller looks again soon).
        pub(super) fn is_real(&self) -> bool {
            !self.0.is_empty()
        }

        /// Waits until one of the events is set or `until`; whether it was woken.
        pub(super) async fn wait(self, _source: &Source, until: Instant) -> bool {
            let mut watches: Vec<sys::EventWatch> = Vec::new();
            let any = std::future::poll_fn(|cx| {
                if watches.is_empty() {
                    watches = self.0.iter().filter_map(|l| l.watch(cx.waker())).collect();
                }
                for w in &watches {
                    w.set_waker(cx.waker());
                }
                if watches.iter().any(|w| w.fired()) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            });
            tokio::time::timeout_at(until.into(), any).await.is_ok()
        }
    }
}
