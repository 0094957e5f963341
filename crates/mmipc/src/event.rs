//! Connection events, per-connection statistics, and the shared bookkeeping behind them.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

use crate::discovery::EndpointId;
use crate::ring::RingControl;

/// The other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The peer endpoint's id.
    pub id: EndpointId,
    /// The peer's process id.
    pub pid: u32,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
}

/// A snapshot of one connection, from `connections()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
}

impl EventHub {
    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel();
        lock(&self.senders).push(tx);
        rx
    }

    pub(crate) fn emit(&self, event: Event) {
        lock(&self.senders).retain(|tx| tx.send(event.clone()).is_ok());
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
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub drops: AtomicU64,
    /// `LIVE`, or 1 + the `DisconnectReason` that ended it.
    state: AtomicU8,
    reported: AtomicBool,
}

impl ConnInfo {
    pub(crate) fn new(peer: Peer, control: RingControl) -> ConnInfo {
        ConnInfo {
            peer,
            control,
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            state: AtomicU8::new(LIVE),
            reported: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) == LIVE
    }

    /// Ends the connection with `reason` (the first reason wins) and reports it once.
    pub(crate) fn end(&self, reason: DisconnectReason, events: &EventHub) {
        let code = 1 + reason as u8;
        let _ = self
            .state
            .compare_exchange(LIVE, code, Ordering::AcqRel, Ordering::Acquire);
        if !self.reported.swap(true, Ordering::AcqRel) {
            events.emit(Event::Disconnected {
                peer: self.peer,
                reason: self.reason().unwrap_or(reason),
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
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
            ring_fill: self.control.fill(),
            ring_capacity: self.control.capacity(),
        }
    }
}
