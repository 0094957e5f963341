//! What users see of connections: [`Event`]s and their [`Events`] receiver,
//! [`ConnectionStats`], [`Peer`], [`DisconnectReason`]; and the hub that fans events out.
//! Owns the public vocabulary of connection life; must not judge liveness (that is
//! `connection::liveness`).

use std::sync::{Arc, Mutex, mpsc};
use std::task::Waker;
use std::time::Duration;

use crate::discovery::EndpointId;
use crate::sync::{AtomicU64, Ordering};

/// The other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
///
/// # Examples
///
/// ```no_run
/// let subscriber = mmipc::Subscriber::new("telemetry")?;
/// for event in subscriber.events() {
///     if let mmipc::Event::Connected { peer } = event {
///         println!("publisher {} in process {}", peer.id, peer.pid);
///     }
/// }
/// # Ok::<(), mmipc::Error>(())
/// ```
pub struct Peer {
    /// The peer endpoint's id.
    pub id: EndpointId,
    /// The peer's process id.
    pub pid: u32,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
///
/// # Examples
///
/// ```no_run
/// use mmipc::{DisconnectReason, Event};
/// let publisher = mmipc::Publisher::new("telemetry")?;
/// for event in publisher.events() {
///     match event {
///         Event::Disconnected { reason: DisconnectReason::Crashed, peer } => println!("{} died", peer.pid),
///         Event::Disconnected { reason, .. } => println!("gone: {reason:?}"),
///         _ => {}
///     }
/// }
/// # Ok::<(), mmipc::Error>(())
/// ```
pub enum DisconnectReason {
    /// The peer closed or dropped its endpoint.
    Closed,
    /// The peer's process died (its lock was released by the kernel).
    Crashed,
    /// The peer stopped heartbeating for longer than the peer timeout (hung or stopped).
    TimedOut,
    /// The peer wrote something that breaks the protocol into shared memory.
    ProtocolViolation,
    /// The peer ended the connection because *this* endpoint stopped heartbeating for longer
    /// than the peer's timeout (its process was stopped, hung, or starved of CPU): what the
    /// peer reported as [`DisconnectReason::TimedOut`]. Messages sent meanwhile are lost to
    /// it; it connects again on its own once it runs.
    Evicted,
}

/// A change in an endpoint's connections, from [`Publisher::events`](crate::Publisher::events)
/// or [`Subscriber::events`](crate::Subscriber::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
/// let events = publisher.events();
/// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// assert!(matches!(events.recv_timeout(Duration::from_secs(10)), Some(mmipc::Event::Connected { .. })));
/// drop(subscriber);
/// assert!(matches!(
///     events.recv_timeout(Duration::from_secs(10)),
///     Some(mmipc::Event::Disconnected { reason: mmipc::DisconnectReason::Closed, .. })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `Event` is `#[non_exhaustive]` (later versions may report more kinds of events), so a
/// `match` needs a `_` arm:
///
/// ```no_run
/// use mmipc::Event;
/// let publisher = mmipc::Publisher::new("telemetry")?;
/// for event in publisher.events() {
///     match event {
///         Event::Connected { peer } => println!("subscriber pid {} connected", peer.pid),
///         Event::Disconnected { peer, reason } => println!("pid {} left: {reason:?}", peer.pid),
///         Event::MessageTooLarge { peer, len, max } => {
///             println!("pid {} accepts at most {max} bytes, not {len}", peer.pid)
///         }
///         _ => {}
///     }
/// }
/// # Ok::<(), mmipc::Error>(())
/// ```
pub enum Event {
    /// A connection to `peer` was established.
    Connected {
        /// The other end.
        peer: Peer,
    },
    /// The connection to `peer` ended.
    Disconnected {
        /// The other end.
        peer: Peer,
        /// Why.
        reason: DisconnectReason,
    },
    /// (Publisher.) A message was larger than subscriber `peer` accepts (its
    /// `max_message_size`): that subscriber did not get it. Reported for the first such
    /// message of each connection; every one is counted in the connection's `drops`.
    MessageTooLarge {
        /// The subscriber.
        peer: Peer,
        /// Length of the message.
        len: usize,
        /// The subscriber's limit.
        max: u64,
    },
}

/// A snapshot of one connection, from `connections()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
/// publisher.wait_for_subscribers(1, Duration::from_secs(10))?;
/// publisher.publish(b"12345")?;
/// let stats: mmipc::ConnectionStats = publisher.connections().remove(0);
/// assert_eq!((stats.messages, stats.bytes, stats.drops), (1, 5, 0));
/// assert_eq!(stats.peer.id, subscriber.id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConnectionStats {
    /// The other end.
    pub peer: Peer,
    /// Messages delivered through this connection.
    pub messages: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// Messages this subscriber missed: dropped by the publisher on a full ring (its policy)
    /// or too large for the subscriber.
    pub drops: u64,
    /// Bytes waiting in the ring.
    pub ring_fill: u64,
    /// Capacity of the ring in bytes.
    pub ring_capacity: u64,
}

/// The connection events of one endpoint, from `events()`: each receiver gets its own copy
/// of every event emitted after it was made, in order, however many receivers exist. Events
/// queue without bound until taken (they are rare: one per connect and disconnect). Once the
/// endpoint is closed and every queued event taken, receiving reports the end.
///
/// Iterating (`for event in publisher.events()`) blocks for each next event and ends when
/// the endpoint is closed.
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
/// let events: mmipc::Events = publisher.events();
/// assert_eq!(events.try_recv(), None); // nothing happened yet
/// assert_eq!(events.recv_timeout(Duration::from_millis(1)), None);
/// drop(publisher);
/// assert_eq!(events.recv(), None); // closed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Events {
    rx: mpsc::Receiver<Event>,
    /// The task waiting in [`Events::recv_async`] (woken by each event and by the end).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    waker: WakerSlot,
}

#[cfg(feature = "tokio")]
impl Events {
    /// The next event, waiting without blocking the thread; `None` once the endpoint is
    /// closed and every event was taken. Cancellation-safe. Works on any executor.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), mmipc::Error> {
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// let mut events = publisher.events();
    /// while let Some(event) = events.recv_async().await {
    ///     println!("{event:?}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_async(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Event>> {
        use std::task::Poll;
        let take = |rx: &mpsc::Receiver<Event>| match rx.try_recv() {
            Ok(e) => Some(Some(e)),
            Err(mpsc::TryRecvError::Disconnected) => Some(None),
            Err(mpsc::TryRecvError::Empty) => None,
        };
        if let Some(e) = take(&self.rx) {
            return Poll::Ready(e);
        }
        // Register, then look again: an event sent in between wakes the waker just set.
        *lock(&self.waker) = Some(cx.waker().clone());
        match take(&self.rx) {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

/// The events as a stream (it ends when the endpoint is closed).
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), mmipc::Error> {
/// use tokio_stream::StreamExt;
/// let subscriber = mmipc::Subscriber::new("telemetry")?;
/// let mut events = subscriber.events();
/// while let Some(event) = events.next().await {
///     println!("{event:?}");
/// }
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tokio")]
impl futures_core::Stream for Events {
    type Item = Event;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.poll_event(cx)
    }
}

impl Events {
    /// The next event, waiting for it; `None` once the endpoint is closed and every event
    /// was taken.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// let events = publisher.events();
    /// while let Some(event) = events.recv() {
    ///     println!("{event:?}");
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv().ok()
    }

    /// The next event, waiting at most `timeout`; `None` if none came in time, or once the
    /// endpoint is closed and every event was taken (then [`Events::recv`] says `None` at
    /// once).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// if let Some(event) = publisher.events().recv_timeout(Duration::from_secs(1)) {
    ///     println!("{event:?}");
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event if one is queued, without waiting.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// let events = publisher.events();
    /// while let Some(event) = events.try_recv() {
    ///     println!("{event:?}");
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The queued events, without waiting.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// let events = publisher.events();
    /// let connects = events.try_iter().filter(|e| matches!(e, mmipc::Event::Connected { .. })).count();
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn try_iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.rx.try_iter()
    }

    /// The events, waiting for each; ends when the endpoint is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// for event in publisher.events().iter() {
    ///     println!("{event:?}");
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.rx.iter()
    }
}

impl IntoIterator for Events {
    type Item = Event;
    type IntoIter = mpsc::IntoIter<Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.rx.into_iter()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = Event;
    type IntoIter = mpsc::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.rx.iter()
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// Where a task waiting for the next event of one receiver leaves its waker.
type WakerSlot = Arc<Mutex<Option<Waker>>>;

/// Fans events out to every receiver handed out by `events()`.
#[derive(Default)]
pub(crate) struct EventHub {
    senders: Mutex<Vec<(mpsc::Sender<Event>, WakerSlot)>>,
    /// Events emitted so far (a waiter compares it to see that something happened).
    emitted: AtomicU64,
}

impl EventHub {
    pub(crate) fn subscribe(&self) -> Events {
        let (tx, rx) = mpsc::channel();
        let waker = Arc::new(Mutex::new(None));
        lock(&self.senders).push((tx, Arc::clone(&waker)));
        Events { rx, waker }
    }

    pub(crate) fn emit(&self, event: Event) {
        lock(&self.senders).retain(|(tx, waker)| {
            let sent = tx.send(event.clone()).is_ok();
            wake(waker);
            sent
        });
        self.emitted.fetch_add(1, Ordering::Release);
    }

    /// How many events were emitted so far.
    pub(crate) fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Acquire)
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        // The senders go with us: a task waiting for the next event learns of the end.
        for (tx, waker) in std::mem::take(&mut *lock(&self.senders)) {
            drop(tx);
            wake(&waker);
        }
    }
}

/// Wakes the task waiting for an event of one receiver, if any.
fn wake(waker: &Mutex<Option<Waker>>) {
    if let Some(w) = lock(waker).take() {
        w.wake();
    }
}

/// Locks a mutex, ignoring poisoning: our critical sections leave state consistent at every
/// step, and a panicking user callback must not take the endpoint down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
