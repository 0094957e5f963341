//! Connection events, per-connection statistics, and the shared bookkeeping behind them.

use std::sync::{Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::discovery::EndpointId;
use crate::ring::RingControl;
use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Ordering};

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
/// assert!(matches!(events.recv_timeout(Duration::from_secs(10))?, mmipc::Event::Connected { .. }));
/// drop(subscriber);
/// assert!(matches!(
///     events.recv_timeout(Duration::from_secs(10))?,
///     mmipc::Event::Disconnected { reason: mmipc::DisconnectReason::Closed, .. }
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

/// Fans events out to every receiver handed out by `events()`.
#[derive(Default)]
pub(crate) struct EventHub {
    senders: Mutex<Vec<mpsc::Sender<Event>>>,
    /// Events emitted so far (a waiter compares it to see that something happened).
    emitted: AtomicU64,
}

impl EventHub {
    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel();
        lock(&self.senders).push(tx);
        rx
    }

    pub(crate) fn emit(&self, event: Event) {
        lock(&self.senders).retain(|tx| tx.send(event.clone()).is_ok());
        self.emitted.fetch_add(1, Ordering::Release);
    }

    /// How many events were emitted so far.
    pub(crate) fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Acquire)
    }
}

/// Locks a mutex, ignoring poisoning: our critical sections leave state consistent at every
/// step, and a panicking user callback must not take the endpoint down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const LIVE: u8 = 0;

/// Bookkeeping of one connection, shared by the data path and the runtime thread.
pub(crate) struct ConnInfo {
    pub peer: Peer,
    pub control: RingControl,
    pub messages: Counter,
    pub bytes: Counter,
    pub drops: Counter,
    /// `LIVE`, or 1 + the `DisconnectReason` that ended it.
    state: AtomicU8,
    reported: AtomicBool,
}

impl ConnInfo {
    pub(crate) fn new(peer: Peer, control: RingControl) -> ConnInfo {
        ConnInfo {
            peer,
            control,
            messages: Counter::default(),
            bytes: Counter::default(),
            drops: Counter::default(),
            state: AtomicU8::new(LIVE),
            reported: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) == LIVE
    }

    /// Ends the connection with `reason` and reports it once.
    pub(crate) fn end(&self, reason: DisconnectReason, events: &EventHub) {
        self.record(reason);
        self.report(events);
    }

    /// Ends the connection with `reason` without reporting it yet. The first reason wins,
    /// except that a protocol violation found before the end was reported replaces it (the
    /// more specific truth: a departed publisher's ring that breaks the framing).
    pub(crate) fn record(&self, reason: DisconnectReason) {
        let code = 1 + reason as u8;
        if reason == DisconnectReason::ProtocolViolation && !self.reported.load(Ordering::Acquire) {
            self.state.store(code, Ordering::Release);
        } else {
            let _ = self
                .state
                .compare_exchange(LIVE, code, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Whether the end was reported.
    pub(crate) fn is_reported(&self) -> bool {
        self.reported.load(Ordering::Acquire)
    }

    /// Reports the recorded end once (`Closed` if none was recorded).
    pub(crate) fn report(&self, events: &EventHub) {
        if !self.reported.swap(true, Ordering::AcqRel) {
            events.emit(Event::Disconnected {
                peer: self.peer,
                reason: self.reason().unwrap_or(DisconnectReason::Closed),
            });
        }
    }

    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        Some(match self.state.load(Ordering::Acquire) {
            1 => DisconnectReason::Closed,
            2 => DisconnectReason::Crashed,
            3 => DisconnectReason::TimedOut,
            4 => DisconnectReason::ProtocolViolation,
            _ => return None,
        })
    }

    pub(crate) fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            peer: self.peer,
            messages: self.messages.get(),
            bytes: self.bytes.get(),
            drops: self.drops.get(),
            ring_fill: self.control.fill(),
            ring_capacity: self.control.capacity(),
        }
    }
}

/// A statistics counter with one writer (the publishing path under its lock, or the one
/// receiving thread) and any number of readers: a plain load and store, not a locked
/// read-modify-write, on the per-message path.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the counter's single writer calls this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which end of the ring the peer holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerEnd {
    Producer,
    Consumer,
}

/// How long a connection's peer has been silent, for the runtime's hang detection.
pub(crate) struct Silence {
    peer: PeerEnd,
    /// The peer's heartbeat and ring position when last seen to change.
    last_progress: (u64, u64),
    last_change: Instant,
    timeout: Duration,
}

impl Silence {
    pub(crate) fn new(info: &ConnInfo, peer: PeerEnd, timeout: Duration) -> Silence {
        Silence {
            peer,
            last_progress: peer_progress(info, peer),
            last_change: Instant::now(),
            timeout,
        }
    }

    /// Why the connection must end now, if it must: the data path ended it, the peer closed
    /// its side, or the peer has not heartbeaten for the timeout. `delayed`: our own tick
    /// came late, so silence is not judged (the clock says nothing about the peer).
    pub(crate) fn judge(
        &mut self,
        info: &ConnInfo,
        now: Instant,
        delayed: bool,
    ) -> Option<DisconnectReason> {
        let control = &info.control;
        let peer_closed = match self.peer {
            PeerEnd::Producer => control.producer_closed(),
            PeerEnd::Consumer => control.consumer_closed(),
        };
        if !info.is_live() {
            return Some(info.reason().unwrap_or(DisconnectReason::Closed));
        }
        if peer_closed {
            return Some(if control.violated() {
                DisconnectReason::ProtocolViolation
            } else {
                DisconnectReason::Closed
            });
        }
        let progress = peer_progress(info, self.peer);
        if progress != self.last_progress || delayed {
            self.last_progress = progress;
            self.last_change = now;
            None
        } else {
            (now.duration_since(self.last_change) > self.timeout)
                .then_some(DisconnectReason::TimedOut)
        }
    }
}

/// Why a peer whose process is gone (its lock is free) left: `Closed` if it had closed its
/// side of the ring first (it exited normally, and we looked between its last two steps),
/// else `Crashed`.
pub(crate) fn departure(info: &ConnInfo, peer: PeerEnd) -> DisconnectReason {
    let closed = match peer {
        PeerEnd::Producer => info.control.producer_closed(),
        PeerEnd::Consumer => info.control.consumer_closed(),
    };
    if !closed {
        DisconnectReason::Crashed
    } else if info.control.violated() {
        DisconnectReason::ProtocolViolation
    } else {
        DisconnectReason::Closed
    }
}

/// A peer moving its ring position is as alive as one heartbeating: a process whose
/// runtime thread is starved of CPU while its reader or writer runs is not hung.
fn peer_progress(info: &ConnInfo, peer: PeerEnd) -> (u64, u64) {
    match peer {
        PeerEnd::Producer => info.control.producer_progress(),
        PeerEnd::Consumer => info.control.consumer_progress(),
    }
}

/// Waits on `changed` until `count(&state) >= n`; returns the count, or a timeout error
/// naming `what` ("subscriber", "publisher").
pub(crate) fn wait_for_count<T>(
    state: &Mutex<T>,
    changed: &Condvar,
    n: usize,
    timeout: Duration,
    what: &str,
    count: impl Fn(&T) -> usize,
) -> crate::Result<usize> {
    // No deadline when `timeout` is too large for the clock (`Duration::MAX`): wait for ever.
    let deadline = crate::options::deadline_after(timeout);
    let mut guard = lock(state);
    loop {
        let have = count(&guard);
        if have >= n {
            return Ok(have);
        }
        let left = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return Err(crate::Error::Timeout {
                what: format!("waiting for {n} {what}(s) (have {have})"),
            });
        }
        guard = changed
            .wait_timeout(guard, left)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}
