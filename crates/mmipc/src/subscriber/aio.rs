//! Receiving on tokio (the `tokio` feature): futures and a stream that wait, on Unix, on the
//! subscriber's wake-up pipe through the reactor, and on Windows on its doorbell's named
//! event through the system thread pool, so that any number of subscribers wait in one task
//! set without a thread each.
//!
//! A receive first looks for a message like [`Subscriber::try_recv`] (no system call when
//! one is there), then, under [`WaitStrategy::SpinThenPark`](crate::WaitStrategy), gives the
//! executor back and looks again for the spin window (the task wakes itself: other tasks
//! run meanwhile, and a peer that answers within microseconds is seen at once), then arms
//! ([`Subscriber::arm`]) and waits for the pipe to become readable. A timer re-checks every
//! 500 ms as a safety net (a re-check that finds a message nobody rang for is counted by
//! [`ring::rescued_wakeups`](crate::ring::rescued_wakeups)).

#[cfg(unix)]
use std::fs::File;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[cfg(unix)]
use tokio::io::Interest;
#[cfg(unix)]
use tokio::io::unix::AsyncFd;

use super::Subscriber;
use crate::WaitStrategy;
use crate::message::{Message, MessageRef};
use crate::ring::{SAFETY_RECHECK, count_rescued};
use crate::sync::spin_hint;

/// Looks for a message per poll in the spin window before yielding to the executor (about
/// a microsecond or two).
const SPINS_PER_POLL: u32 = 64;

/// How often a receive without a wake-up pipe (it could not be made) looks for messages.
const NO_PIPE_RECHECK: Duration = Duration::from_millis(10);

/// The wake-up pipe registered with the reactor of the runtime that first waited on it
/// (through a descriptor of its own for the same pipe).
#[cfg(unix)]
pub(super) enum Reactor {
    /// Registered with the reactor of runtime `.1` (re-registered when a receive runs in
    /// another runtime: the first one may be gone, or alive but not driving its reactor).
    Pipe(AsyncFd<File>, tokio::runtime::Id),
    /// The pipe or its registration failed: receives look every [`NO_PIPE_RECHECK`].
    Unavailable,
}

impl Subscriber {
    /// Waits for the next message without blocking the thread: the async
    /// [`Subscriber::recv`]. **Cancellation-safe**: a future dropped before it completes
    /// (in `tokio::select!`, under `tokio::time::timeout`) took nothing; the message is
    /// there for the next receive. Needs a tokio runtime with IO and time enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
    /// subscriber.wait_for_publishers(1, Duration::from_secs(10))?;
    /// publisher.publish(b"ping")?;
    /// let msg = subscriber.recv_async().await;
    /// assert_eq!(msg.payload(), b"ping");
    /// // Bounded waits and cancellation lose nothing:
    /// tokio::select! {
    ///     msg = subscriber.recv_async() => println!("{msg:?}"),
    ///     _ = tokio::time::sleep(Duration::from_millis(10)) => println!("quiet"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_async(&mut self) -> Message {
        self.recv_ref_async().await.to_message()
    }

    /// As [`Subscriber::recv_async`], lending the message in place like
    /// [`Subscriber::recv_ref`] (no copy; the publisher gets the space back when the
    /// [`MessageRef`] drops). Cancellation-safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), mmipc::Error> {
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let msg = subscriber.recv_ref_async().await;
    /// println!("{} bytes, no copy", msg.len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_ref_async(&mut self) -> MessageRef<'_> {
        let found = Find {
            sub: self,
            wait: Wait::default(),
        }
        .await;
        self.take(found)
    }

    /// The messages as a [`Stream`](futures_core::Stream) (it never ends). Dropping the
    /// stream, or a `next()` future of it, loses nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), mmipc::Error> {
    /// use tokio_stream::StreamExt;
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let mut messages = subscriber.messages();
    /// while let Some(msg) = messages.next().await {
    ///     println!("{} bytes", msg.len());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn messages(&mut self) -> Messages<'_> {
        Messages {
            sub: self,
            wait: Wait::default(),
        }
    }

    /// As [`Subscriber::wait_for_publishers`], without blocking the thread.
    ///
    /// # Errors
    /// As [`Subscriber::wait_for_publishers`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::time::Duration;
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// subscriber.wait_for_publishers_async(1, Duration::from_secs(5)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_publishers_async(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<usize, crate::WaitError> {
        self.core.wait_for_peers_async(n, timeout).await
    }

    /// Windows: the doorbell's event is the wake-up source (waited on in the system thread
    /// pool); whether there is one.
    #[cfg(windows)]
    fn reactor(&mut self) -> bool {
        self.listener().is_ok()
    }

    /// A ring seen in flight at an async receive's safety re-check (its `seq` bump seen, its
    /// pipe byte or event not yet) must have reached the wake-up source by now (the next
    /// park, or the end of the subscriber): if it did not, it was a lost wake-up.
    pub(super) fn judge_ring_in_flight(&mut self) {
        if std::mem::take(&mut self.ring_in_flight)
            && !self.listener.as_ref().is_some_and(|l| l.clear())
        {
            count_rescued();
        }
    }

    /// Whether a wake-up source is registered (else receives look every
    /// [`NO_PIPE_RECHECK`]).
    fn has_wake_source(&self) -> bool {
        #[cfg(unix)]
        return matches!(self.reactor, Some(Reactor::Pipe(..)));
        #[cfg(windows)]
        return self.listener.is_some();
    }

    /// Registers the wake-up pipe with the current runtime's reactor, once; whether there is
    /// a pipe to wait on.
    #[cfg(unix)]
    fn reactor(&mut self) -> bool {
        let here = tokio::runtime::Handle::current().id();
        if matches!(&self.reactor, Some(Reactor::Pipe(_, id)) if *id != here) {
            self.reactor = None;
        }
        if self.reactor.is_none() {
            let registered = self
                .wake_fd()
                .ok()
                .and_then(|_| self.listener.as_ref()?.duplicate().ok())
                .and_then(|fd| {
                    // SAFETY: `fd` is a `File` the `AsyncFd` owns: open, and the same
                    // descriptor, until the `AsyncFd` drops.
                    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
                });
            self.reactor = Some(registered.map_or(Reactor::Unavailable, |fd| Reactor::Pipe(fd, here)));
        }
        matches!(self.reactor, Some(Reactor::Pipe(..)))
    }
}

/// What one receive remembers between polls.
#[derive(Default)]
struct Wait {
    /// End of the spin window, from the first poll that found nothing.
    spin_until: Option<Instant>,
    /// The safety net's timer, from the first park.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The doorbell's ring count when we last armed: a ringer bumps it before it writes
    /// the pipe (sets the event), so a change means a ring reached us.
    seq: u32,
    /// Windows: the wait for the doorbell's event, in the system thread pool.
    #[cfg(windows)]
    watch: Option<crate::sys::EventWatch>,
}

impl Wait {
    /// Finds a message (staged, as `Subscriber::find`), or arranges to be woken.
    fn poll_find(&mut self, sub: &mut Subscriber, cx: &mut Context<'_>) -> Poll<(usize, u64)> {
        // Only the first look of a poll follows a wait: a later one comes right after `arm`
        // found work (a message may have come while we were not registered, rightly not
        // rung), and cannot be a rescue by the timer.
        let mut after_wait = true;
        loop {
            let timer_fired =
                std::mem::take(&mut after_wait) && self.timer.as_ref().is_some_and(|t| t.is_elapsed());
            // When the safety timer fired: whether our wake-up source was signalled (a ring
            // reached us), and whether the bell was rung at all since we armed (a ringer
            // bumps `seq` before it writes the pipe or sets the event).
            let (signalled, bell_rung) = if timer_fired {
                let bell = sub.core.role.doorbell.bell();
                (
                    sub.listener.as_ref().is_some_and(|l| l.clear()),
                    bell.seq.load(crate::sync::Ordering::Acquire) != self.seq,
                )
            } else {
                (false, false)
            };
            if let Some(found) = sub.find() {
                if timer_fired && !signalled && sub.has_wake_source() {
                    if bell_rung {
                        // A ring is perhaps on its way (between its `seq` bump and its pipe
                        // write): judged at the next park, when it must have arrived. On
                        // Windows setting the event is the ring itself (no separate step a
                        // ringer could miss), and under Wine it may lag by milliseconds: a
                        // bumped `seq` is taken as the ring.
                        sub.ring_in_flight = cfg!(unix);
                    } else {
                        count_rescued();
                    }
                }
                return Poll::Ready(found);
            }
            let spin = match sub.core.common.wait {
                WaitStrategy::Spin => true,
                WaitStrategy::SpinThenPark(d) => {
                    let now = Instant::now();
                    now < *self.spin_until.get_or_insert(now + d)
                }
                WaitStrategy::Park => false,
            };
            if spin {
                // Spin here a little (a peer answering within a microsecond or two is seen at
                // once, without a trip through the executor), then look again after the
                // other ready tasks ran.
                for _ in 0..SPINS_PER_POLL {
                    spin_hint();
                    if let Some(found) = sub.find() {
                        return Poll::Ready(found);
                    }
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let pipe = sub.reactor();
            sub.judge_ring_in_flight();
            self.seq = sub
                .core
                .role
                .doorbell
                .bell()
                .seq
                .load(crate::sync::Ordering::Acquire);
            if sub.arm() {
                continue;
            }
            if self.wait_source(sub, cx).is_ready() {
                continue;
            }
            let period = if pipe { SAFETY_RECHECK } else { NO_PIPE_RECHECK };
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
            if timer.is_elapsed() {
                timer.as_mut().reset(tokio::time::Instant::now() + period);
            }
            if timer.as_mut().poll(cx).is_ready() {
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Waits for the wake-up pipe to become readable: `Ready` when it did (or when its
    /// registration must be made again), `Pending` with the task registered.
    #[cfg(unix)]
    fn wait_source(&mut self, sub: &mut Subscriber, cx: &mut Context<'_>) -> Poll<()> {
        let Some(Reactor::Pipe(fd, _)) = &sub.reactor else {
            return Poll::Pending;
        };
        match fd.poll_read_ready(cx) {
            Poll::Ready(Ok(mut ready)) => {
                // `arm` empties the pipe before the next wait.
                ready.clear_ready();
                Poll::Ready(())
            }
            Poll::Ready(Err(_)) => {
                // The runtime that registered it is gone: register again.
                sub.reactor = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Windows: waits for the doorbell's event (which `arm` reset) to be set, in the system
    /// thread pool: `Ready` when it was, `Pending` with the task registered.
    #[cfg(windows)]
    fn wait_source(&mut self, sub: &mut Subscriber, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(watch) = &self.watch {
            watch.set_waker(cx.waker());
            if watch.fired() {
                self.watch = None;
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        self.watch = sub.listener.as_ref().and_then(|l| l.watch(cx.waker()));
        Poll::Pending
    }

    /// A receive that ends without a message unregisters at once (else every publish would
    /// ring the pipe until the next receive).
    fn cancel(sub: &mut Subscriber) {
        if sub.armed {
            sub.disarm();
        }
    }
}

/// The future of [`Subscriber::recv_ref_async`] before it takes the message.
struct Find<'a> {
    sub: &'a mut Subscriber,
    wait: Wait,
}

impl Future for Find<'_> {
    type Output = (usize, u64);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.wait.poll_find(this.sub, cx)
    }
}

impl Drop for Find<'_> {
    fn drop(&mut self) {
        Wait::cancel(self.sub);
    }
}

/// The messages of a subscriber as a [`Stream`](futures_core::Stream); from
/// [`Subscriber::messages`].
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), mmipc::Error> {
/// use tokio_stream::StreamExt;
/// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
/// let sizes: Vec<usize> = subscriber.messages().take(3).map(|m| m.len()).collect().await;
/// # Ok(())
/// # }
/// ```
pub struct Messages<'a> {
    sub: &'a mut Subscriber,
    wait: Wait,
}

impl futures_core::Stream for Messages<'_> {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = self.get_mut();
        let found = std::task::ready!(this.wait.poll_find(this.sub, cx));
        this.wait = Wait::default();
        Poll::Ready(Some(this.sub.take(found).to_message()))
    }
}

impl Drop for Messages<'_> {
    fn drop(&mut self) {
        Wait::cancel(self.sub);
    }
}

impl std::fmt::Debug for Messages<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").field("subscriber", &self.sub).finish()
    }
}
