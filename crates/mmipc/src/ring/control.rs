//! [`RingControl`]: a second handle on a ring's shared header for the thread that supervises
//! connections (heartbeats, liveness, closing a side for a dead peer). It reads and writes
//! header fields only, through atomics; it must not touch the data area or either end's
//! private state.

use super::layout::{CLOSED, EVICTED, OPEN, VIOLATED};
use super::region::Region;
use super::wait::notify;
use crate::sync::Ordering;

/// A second handle on a ring's shared header, for the thread that supervises connections:
/// it bumps heartbeats, reads the peer's, and closes a side on behalf of a peer found dead
/// (waking whoever is parked). It never touches the data area.
pub(crate) struct RingControl {
    region: Region,
}

impl RingControl {
    pub(crate) fn new(region: Region) -> RingControl {
        RingControl { region }
    }

    /// Another handle on the same header.
    pub(crate) fn share(&self) -> RingControl {
        RingControl {
            region: self.region.share(),
        }
    }

    /// Bytes the producer has written through the ring since it was created (records,
    /// framing and padding included), as the header says.
    pub(crate) fn written(&self) -> u64 {
        self.region.header().producer.pos.load(Ordering::Relaxed)
    }

    pub(crate) fn beat_producer(&self) {
        self.region
            .header()
            .producer
            .heartbeat
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn beat_consumer(&self) {
        self.region
            .header()
            .consumer
            .heartbeat
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The producer's sign of life: its heartbeat and its write position together, so a
    /// peer busy writing is alive even if its heartbeat thread is starved of CPU.
    pub(crate) fn producer_progress(&self) -> (u64, u64) {
        let side = &self.region.header().producer;
        (
            side.heartbeat.load(Ordering::Relaxed),
            side.pos.load(Ordering::Relaxed),
        )
    }

    /// The consumer's sign of life: its heartbeat and its read position.
    pub(crate) fn consumer_progress(&self) -> (u64, u64) {
        let side = &self.region.header().consumer;
        (
            side.heartbeat.load(Ordering::Relaxed),
            side.pos.load(Ordering::Relaxed),
        )
    }

    /// Process id of the ring's creator as its header says (untrusted, informational; 0 if
    /// unknown).
    pub(crate) fn creator_pid(&self) -> u32 {
        self.region.header().creator_pid.load(Ordering::Relaxed)
    }

    /// Whether the producer side is closed (normally or after a violation).
    pub(crate) fn producer_closed(&self) -> bool {
        self.region.header().producer_closed.load(Ordering::Acquire) != OPEN
    }

    /// Whether the consumer side is closed (normally or after a violation).
    pub(crate) fn consumer_closed(&self) -> bool {
        self.region.header().consumer.closed.load(Ordering::Acquire) != OPEN
    }

    /// Whether either side closed because it found a protocol violation.
    pub(crate) fn violated(&self) -> bool {
        let h = self.region.header();
        h.producer_closed.load(Ordering::Acquire) == VIOLATED
            || h.consumer.closed.load(Ordering::Acquire) == VIOLATED
    }

    /// Whether the connection was ended because one end judged the other hung
    /// ([`RingControl::evict`]).
    pub(crate) fn evicted(&self) -> bool {
        self.region.header().consumer.closed.load(Ordering::Acquire) == EVICTED
    }

    /// Marks the consumer side closed (its process died or hung) and wakes a parked producer.
    pub(crate) fn close_consumer_side(&self) {
        self.close_consumer_side_as(CLOSED);
    }

    /// Marks the consumer side closed because one end judged the other hung (it stopped
    /// heartbeating for longer than the peer timeout): the judged end, if it resumes, learns
    /// that it was evicted. Either end may call it; the producer side is closed separately.
    pub(crate) fn evict(&self) {
        self.close_consumer_side_as(EVICTED);
    }

    fn close_consumer_side_as(&self, code: u32) {
        let h = self.region.header();
        let _ = h
            .consumer
            .closed
            .compare_exchange(OPEN, code, Ordering::AcqRel, Ordering::Acquire);
        notify(self.region.futex(), &h.space_bell);
    }

    /// Marks the producer side closed (its process died or hung); the caller wakes the
    /// consumer's doorbell.
    pub(crate) fn close_producer_side(&self) {
        let h = self.region.header();
        let _ =
            h.producer_closed
                .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire);
        notify(self.region.futex(), &h.data_bell);
    }

    /// Bytes published and not yet consumed, as the header says (clamped to the capacity:
    /// the peer's value is untrusted).
    pub(crate) fn fill(&self) -> u64 {
        let h = self.region.header();
        let used = h
            .producer
            .pos
            .load(Ordering::Relaxed)
            .wrapping_sub(h.consumer.pos.load(Ordering::Relaxed));
        used.min(self.region.capacity())
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.region.capacity()
    }
}
