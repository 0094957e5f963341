//! Liveness of one connection: its shared bookkeeping ([`ConnInfo`]: state, counters, the
//! ring's control words), the judgement of a silent peer ([`Silence`]) and of a departed one
//! ([`departure`]). Owns what "alive", "hung", "closed" and "crashed" mean for a connection;
//! must not touch files or the directory (the endpoint core does that).

use std::time::{Duration, Instant};

use crate::event::{ConnectionStats, DisconnectReason, Event, EventHub, Peer};
use crate::ring::RingControl;
use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Ordering};

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
            5 => DisconnectReason::Evicted,
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
            return Some(closed_reason(control));
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
    } else {
        closed_reason(&info.control)
    }
}

/// Why a ring whose other side is closed ended, as its header says: a protocol violation
/// either end found, an eviction (one end judged the other hung; the end that judged has
/// recorded `TimedOut` already, so only the evicted end reports this), else a close.
pub(crate) fn closed_reason(control: &RingControl) -> DisconnectReason {
    if control.violated() {
        DisconnectReason::ProtocolViolation
    } else if control.evicted() {
        DisconnectReason::Evicted
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
