//! Large messages, written once: the publisher's payload segment (made with the publisher, a sparse
//! file backed as blocks are first handed out), the delivery of a block's descriptor to every
//! subscriber under the [`OnFull`] policy and a per-subscriber budget, the reclaiming of blocks
//! every holder released, and the loan API ([`Loan`], [`Publisher::loan`],
//! [`Publisher::publish_with`]).
//!
//! **Budget.** Under every policy a subscriber holding descriptors of more than its share of
//! the segment (`capacity / (subscribers + 1)`; one message always fits) is treated like a
//! full ring: a drop under [`OnFull::DropNewest`] / [`OnFull::Fail`], a wait (bounded under
//! [`OnFull::BlockFor`]) otherwise. So a stalled subscriber can pin at most its share, never
//! the whole segment. When no block can be had (the segment is fragmented or held by several
//! slow subscribers at once), [`OnFull::Block`] waits for the subscriber holding the most,
//! [`OnFull::BlockFor`] does so until its time is up, and [`OnFull::DropNewest`] /
//! [`OnFull::Fail`] at once: then the message is copied into the rings inline, as small
//! messages are.

use std::time::Instant;

use super::{Delivery, Out, Outgoing, Publisher, Sending};
use crate::connection::payload::{self, Block, PayloadOut};
use crate::endpoint::Core;
use crate::error::PublishError;
use crate::event::lock;
use crate::options::OnFull;
use crate::ring::RingError;
use crate::runtime;

/// The publisher's payload segment, made with the publisher (before any ring, so that every
/// subscriber maps it when it opens its ring).
pub(super) enum Segment {
    Ready(PayloadOut),
    /// Disabled with a capacity of 0: every message goes inline.
    Unavailable,
}

impl Outgoing {
    /// Hands what this connection held of the payload segment to the segment's parked list:
    /// the connection is being dropped (ended by the runtime, or failed here), and its
    /// subscriber may still hold a message in place, or drain the rest of the ring. (The
    /// ring's consumer side is closed too, so that a hung subscriber that resumes learns
    /// that the connection is over.)
    pub(super) fn forget(&mut self, payload: &mut Segment, dirs: &crate::channel::ChannelDirs) {
        if let Segment::Ready(seg) = payload {
            self.park(seg, dirs);
        }
    }

    fn park(&mut self, seg: &mut PayloadOut, dirs: &crate::channel::ChannelDirs) {
        if self.holdings.oldest().is_none() {
            return;
        }
        // The value that matches why the connection ended: this may run before `end` marks
        // a subscriber judged hung as evicted, and the first value written stays.
        if self.info.reason() == Some(crate::DisconnectReason::TimedOut) {
            self.info.control.evict();
        } else {
            self.info.control.close_consumer_side();
        }
        let control = self.info.control.share();
        let (dirs, sub) = (dirs.clone(), self.info.peer.id);
        seg.park(
            std::mem::take(&mut self.holdings),
            move || control.consumer_progress().1,
            move || crate::discovery::is_alive(&dirs, crate::discovery::EndpointKind::Subscriber, sub),
        );
    }

    /// Reloads the subscriber's read position and lets go of what it released.
    fn reclaim(&mut self, seg: &mut PayloadOut) {
        if self.holdings.oldest().is_none() {
            return;
        }
        // A ring that failed keeps its holdings until the connection is dropped.
        if let Ok(read) = self.producer.consumed() {
            self.holdings.reclaim(read, |b| seg.release(b));
        }
    }

    /// Waits (as `deadline` says) until this subscriber holds at most `budget` bytes besides
    /// a block of `size`; a subscriber holding nothing always takes one. Reloads the
    /// subscriber's read position only when over the budget (`take_block` reclaimed every
    /// connection just before: a second load per subscriber and message is a cache miss).
    fn within_budget(
        &mut self,
        seg: &mut PayloadOut,
        size: u64,
        budget: u64,
        wait: Option<Option<Instant>>,
    ) -> Result<bool, RingError> {
        let fits = |c: &Self| {
            let held = c.holdings.bytes();
            held == 0 || held + size <= budget
        };
        loop {
            if fits(self) {
                return Ok(true);
            }
            self.reclaim(seg);
            if fits(self) {
                return Ok(true);
            }
            let Some(deadline) = wait else {
                return Ok(false);
            };
            let Some(until) = self.holdings.oldest() else {
                return Ok(true);
            };
            match self.producer.wait_consumed(until, deadline) {
                Ok(()) => {}
                Err(RingError::Timeout) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

impl Sending {
    /// Whether a `len`-byte message goes through the payload segment: at least the threshold,
    /// at most half the segment, some subscriber reads descriptors, and it saves something:
    /// a loan (no copy at all), two or more such subscribers (one copy instead of one each),
    /// or a message the ring would cut into fragments. A plain publish to one subscriber
    /// copies once either way, and inline is cheaper then (measured: 15-20% less publisher
    /// CPU at 4-32 KiB, and the ring's memory stays warm in the cache).
    pub(super) fn goes_large(&self, len: usize, conns: &[Outgoing], loan: bool) -> bool {
        if len < self.payload_threshold.max(1)
            || payload::block_size(len as u64) > self.payload_capacity as u64 / 2
        {
            return false;
        }
        let readers = conns
            .iter()
            .filter(|c| c.payloads && c.info.is_live())
            .take(2)
            .count();
        readers >= 2 || (readers == 1 && (loan || len > self.ring_capacity / 2))
    }

    /// Takes a block for a `len`-byte payload, reclaiming what subscribers released and, if
    /// the policy waits and `may_wait`, waiting for them (for ever under [`OnFull::Block`];
    /// until the deadline under [`OnFull::BlockFor`]). `None`: the message goes inline.
    fn take_block(
        &self,
        core: &Core<Sending>,
        out: &mut Out,
        len: usize,
        deadline: Option<Instant>,
        may_wait: bool,
    ) -> Option<Block> {
        let Out { conns, payload, .. } = out;
        let Segment::Ready(seg) = payload else {
            return None;
        };
        loop {
            for c in conns.iter_mut() {
                c.reclaim(seg);
            }
            seg.reclaim_parked(false);
            if let Some(block) = seg.try_alloc(len as u64) {
                return Some(block);
            }
            // Short of blocks: let go of what ended connections of gone subscribers held.
            seg.reclaim_parked(true);
            if let Some(block) = seg.try_alloc(len as u64) {
                return Some(block);
            }
            if !may_wait || matches!(self.on_full, OnFull::DropNewest | OnFull::Fail) {
                return None;
            }
            // Wait for the subscriber holding the most to release its oldest descriptor.
            let c = conns
                .iter_mut()
                .filter(|c| c.info.is_live())
                .max_by_key(|c| c.holdings.bytes())?;
            let until = c.holdings.oldest()?;
            match c.producer.wait_consumed(until, deadline) {
                Ok(()) => {}
                Err(RingError::Timeout) => return None,
                // The ring failed (its subscriber left, or broke it): the connection ends
                // here, as a write would end it, and lets go of what it held; else this loop
                // would spin on it (past any deadline) until the maintenance thread noticed,
                // and for ever if a hostile subscriber keeps heartbeating.
                Err(e) => {
                    let _ = c.settle(Err(e), len, &core.events);
                    c.park(seg, &core.dirs);
                }
            }
        }
    }

    /// Sends message `seq`, whose payload is in `block` (filled and sealed), to every
    /// connection: a descriptor to those that read them, within their budget and as the
    /// policy says; the payload inline to the others. Gives up the taker's reference to the
    /// block. Returns who had no room and who it was too large for.
    pub(super) fn deliver(
        &self,
        core: &Core<Sending>,
        out: &mut Out,
        seq: u64,
        block: Block,
    ) -> Outcome {
        let Out { conns, payload, .. } = out;
        let mut outcome = Outcome::default();
        let Segment::Ready(seg) = payload else {
            debug_assert!(false, "a block without a payload segment");
            return outcome;
        };
        let len = block.len as usize;
        let size = block.size();
        let budget = budget(seg, conns);
        let descriptor = payload::descriptor(seq, block);
        let header = seq.to_le_bytes();
        let wait = match self.on_full {
            OnFull::Block => Some(None),
            OnFull::BlockFor(d) => Some(crate::options::deadline_after(d)),
            OnFull::DropNewest | OnFull::Fail => None,
        };
        conns.retain_mut(|c| {
            if !c.info.is_live() {
                c.park(seg, &core.dirs);
                return false;
            }
            if c.too_large(len, &core.events) {
                outcome.too_large.push((c.info.peer.id, c.max_len));
                return true;
            }
            let result = if c.payloads {
                match c.within_budget(seg, size, budget, wait) {
                    Ok(true) => {
                        let written = self.write_as_policy(c, &[&descriptor]);
                        if written.is_ok() {
                            c.holdings.push(c.producer.position(), block);
                            seg.hold(block);
                        }
                        written
                    }
                    Ok(false) => Err(RingError::Full),
                    Err(e) => Err(e),
                }
            } else {
                self.write_as_policy(c, &[&header, seg.payload(block)])
            };
            let stays = outcome.settle(self, c, result, len, &core.events);
            if !stays {
                c.park(seg, &core.dirs);
            }
            stays
        });
        seg.release(block);
        outcome
    }

    /// Writes and, for a large message, sends message `seq` made of `parts` (`len` bytes)
    /// through the payload segment; `None` if it must go inline (no block could be had).
    pub(super) fn publish_large(
        &self,
        core: &Core<Sending>,
        out: &mut Out,
        seq: u64,
        parts: &[&[u8]],
        len: usize,
    ) -> Option<Outcome> {
        let block = self.take_block(core, out, len, self.block_deadline(), true)?;
        if let Segment::Ready(seg) = &mut out.payload {
            seg.fill(block, seq, parts);
        }
        Some(self.deliver(core, out, seq, block))
    }

    /// An async publish's new message of `len` bytes (see `aio.rs`), if it goes through the
    /// payload segment and a block can be had now: written once into the block, then, never
    /// waiting, a descriptor to each subscriber that reads them and is within its budget,
    /// the payload inline to the others (a subscriber over its budget is slow: it gets a copy
    /// in its ring, as an older subscriber does). Subscribers without room now are owed the
    /// message inline (`Outgoing::owed`), and the returned frame (header and payload) is the
    /// backlog they get as room appears. `None`: nothing was sent (the message goes inline).
    #[cfg(all(any(unix, windows), feature = "tokio"))]
    pub(super) fn enter_large(
        &self,
        core: &Core<Sending>,
        out: &mut Out,
        seq: u64,
        parts: &[&[u8]],
        len: usize,
    ) -> Option<Option<Vec<u8>>> {
        if !self.goes_large(len, &out.conns, false) {
            return None;
        }
        let block = self.take_block(core, out, len, None, false)?;
        let Out { conns, payload, .. } = out;
        let Segment::Ready(seg) = payload else {
            return None;
        };
        seg.fill(block, seq, parts);
        let budget = budget(seg, conns);
        let descriptor = payload::descriptor(seq, block);
        let header = seq.to_le_bytes();
        let mut owed = false;
        conns.retain_mut(|c| {
            if !c.info.is_live() {
                c.park(seg, &core.dirs);
                return false;
            }
            if c.too_large(len, &core.events) {
                return true;
            }
            let mut done = 0;
            let by_descriptor =
                c.payloads && matches!(c.within_budget(seg, block.size(), budget, None), Ok(true));
            let result = if by_descriptor {
                c.producer.write_some(&[&descriptor], &mut done)
            } else {
                c.producer.write_some(&[&header, seg.payload(block)], &mut done)
            };
            match c.settle(result, len, &core.events) {
                Delivery::Done => {
                    if by_descriptor {
                        c.holdings.push(c.producer.position(), block);
                        seg.hold(block);
                    }
                    true
                }
                Delivery::NoRoom => {
                    if by_descriptor {
                        // Owed the inline frame from its start.
                        c.producer.abandon(done);
                        done = 0;
                    }
                    c.owed = Some(done);
                    owed = true;
                    true
                }
                Delivery::Ended => {
                    c.park(seg, &core.dirs);
                    false
                }
            }
        });
        let frame = owed.then(|| [&header[..], seg.payload(block)].concat());
        seg.release(block);
        Some(frame)
    }

    /// How long taking a block may wait: for ever under [`OnFull::Block`], the policy's time
    /// under [`OnFull::BlockFor`] (the other policies do not wait).
    fn block_deadline(&self) -> Option<Instant> {
        match self.on_full {
            OnFull::BlockFor(d) => crate::options::deadline_after(d),
            _ => None,
        }
    }
}

/// What each subscriber that reads descriptors may hold of the segment:
/// `capacity / (such subscribers + 1)` (the module's budget rule).
fn budget(seg: &PayloadOut, conns: &[Outgoing]) -> u64 {
    let readers = conns
        .iter()
        .filter(|c| c.payloads && c.info.is_live())
        .count() as u64;
    seg.capacity() / (readers + 1)
}

/// Who a message could not reach.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) full: Vec<crate::discovery::EndpointId>,
    pub(super) too_large: Vec<(crate::discovery::EndpointId, u64)>,
}

impl Outcome {
    /// Counts what one write to connection `c` did; whether the connection stays.
    pub(super) fn settle(
        &mut self,
        s: &Sending,
        c: &mut Outgoing,
        result: Result<(), RingError>,
        len: usize,
        events: &crate::event::EventHub,
    ) -> bool {
        match c.settle(result, len, events) {
            Delivery::Done => true,
            Delivery::NoRoom => {
                c.info.drops.add(1);
                if s.on_full == OnFull::Fail {
                    self.full.push(c.info.peer.id);
                }
                true
            }
            Delivery::Ended => false,
        }
    }

    /// The result of a publish with this outcome.
    pub(super) fn result(self, s: &Sending, len: usize) -> Result<(), PublishError> {
        if s.on_full == OnFull::Fail && !self.too_large.is_empty() {
            Err(PublishError::TooLargeForSubscribers {
                len,
                subscribers: self.too_large,
            })
        } else if self.full.is_empty() {
            Ok(())
        } else {
            Err(PublishError::Full {
                subscribers: self.full,
            })
        }
    }
}

/// A buffer for one message, lent by [`Publisher::loan`]: fill it, then
/// [`send`](Loan::send) it. For a message of at least the publisher's
/// [`payload_threshold`](crate::PublisherBuilder::payload_threshold), with a subscriber that
/// reads descriptors connected, it is a block of the publisher's payload segment in shared
/// memory, so sending it copies nothing: subscribers read it where you wrote it. Smaller
/// messages (and any when no such subscriber is connected, or no shared space can be had)
/// are lent a private buffer and copied into each subscriber's ring at `send`, as
/// [`Publisher::publish`] does. Dropping an unsent loan
/// gives its space back.
///
/// The bytes are whatever the space held before (not zeroed): write all of them. A shared
/// buffer starts on a 64-byte boundary, and subscribers see the message at the same alignment
/// when they read it in place.
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// # let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// # let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
/// # publisher.wait_for_subscribers(1, Duration::from_secs(10))?;
/// let mut frame = publisher.loan(1 << 20)?; // 1 MiB, in shared memory
/// frame.fill(7); // render into it in place
/// frame.send()?; // no copy, whatever the number of subscribers
/// let msg = subscriber.recv_ref_timeout(Duration::from_secs(10))?; // read in place
/// assert!(msg.iter().all(|&b| b == 7));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Loan<'a> {
    publisher: &'a Publisher,
    buf: Buf,
}

enum Buf {
    Shared(payload::Loaned),
    /// The publisher's spare buffer (at least `len` bytes), of which the first `len` are lent.
    Private { bytes: Vec<u8>, len: usize },
    /// Sent (or given back).
    Gone,
}

impl Publisher {
    /// Lends a buffer of `len` bytes to fill and [`send`](Loan::send): a block of shared
    /// memory written once for every subscriber when `len` is at least the
    /// [`payload_threshold`](crate::PublisherBuilder::payload_threshold) and a subscriber that
    /// reads descriptors is connected (else a private buffer, copied at `send`). Under [`OnFull::Block`] it waits for subscribers to release
    /// space (under [`OnFull::BlockFor`], until its time is up); when no shared space can be
    /// had it lends a private buffer rather than fail.
    ///
    /// # Errors
    /// [`PublishError::MessageTooLarge`] above `max_message_size`; [`PublishError::Closed`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("camera")?;
    /// let mut frame = publisher.loan(1920 * 1080 * 3)?;
    /// frame.fill(0x80); // or decode a picture straight into it
    /// frame.send()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, PublishError> {
        let core = &*self.core;
        let s = &core.role;
        let mut out = s.begin(core, len)?;
        if let Some(mut new) = s.pending.take() {
            out.conns.append(&mut new);
        }
        let shared = if s.goes_large(len, &out.conns, true) {
            s.take_block(core, &mut out, len, s.block_deadline(), true)
        } else {
            None
        };
        let buf = match (shared, &out.payload) {
            (Some(block), Segment::Ready(seg)) => Buf::Shared(seg.lend(block)),
            _ => {
                // The last small loan's buffer: its bytes are initialized (zeroed once, then
                // earlier messages of ours), so only a longer loan zeroes, and only the rest.
                // A larger one (a large message without shared space) is allocated zeroed
                // (pages the kernel zeroed), not grown from the spare under the lock.
                let bytes = if len <= SPARE_MAX {
                    let mut bytes = std::mem::take(&mut out.spare);
                    if bytes.len() < len {
                        bytes.resize(len, 0);
                    }
                    bytes
                } else {
                    vec![0; len]
                };
                Buf::Private { bytes, len }
            }
        };
        Ok(Loan {
            publisher: self,
            buf,
        })
    }

    /// Publishes a `len`-byte message written in place by `fill`: [`Publisher::loan`], then
    /// [`Loan::send`].
    ///
    /// # Errors
    /// As [`Publisher::loan`] and [`Publisher::publish`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("tensors")?;
    /// publisher.publish_with(4 << 20, |buf| {
    ///     for (i, chunk) in buf.chunks_mut(4).enumerate() {
    ///         chunk.copy_from_slice(&(i as f32).to_le_bytes());
    ///     }
    /// })?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn publish_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), PublishError> {
        let mut loan = self.loan(len)?;
        fill(&mut loan);
        loan.send()
    }
}

impl Publisher {
    /// Bytes of the payload segment in use now: blocks of large messages some subscriber
    /// has not yet released, and unsent loans (a diagnostic: it reloads every subscriber's
    /// read position first). `0` once every subscriber has read everything.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
    /// assert_eq!(publisher.payload_in_use(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload_in_use(&self) -> usize {
        let mut out = lock(&self.core.role.out);
        let Out { conns, payload, .. } = &mut *out;
        let Segment::Ready(seg) = payload else {
            return 0;
        };
        for c in conns.iter_mut() {
            c.reclaim(seg);
        }
        seg.reclaim_parked(true);
        (seg.capacity() - seg.free_bytes()) as usize
    }
}

impl Loan<'_> {
    /// Publishes the message: as [`Publisher::publish`] of these bytes, without copying them
    /// when they are in shared memory.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("camera")?;
    /// let mut frame = publisher.loan(4096)?;
    /// frame.copy_from_slice(&[1; 4096]);
    /// frame.send()?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn send(mut self) -> Result<(), PublishError> {
        let publisher = self.publisher;
        match std::mem::replace(&mut self.buf, Buf::Gone) {
            Buf::Private { bytes, len } => {
                let core = &*publisher.core;
                let s = &core.role;
                let mut out = s.begin(core, len)?;
                let outcome = s.publish_in(core, &mut out, &[&bytes[..len]], len);
                keep_spare(&mut out, bytes);
                drop(out);
                outcome.result(s, len)
            }
            Buf::Shared(loaned) => {
                let core = &*publisher.core;
                let s = &core.role;
                let block = loaned.block();
                drop(loaned);
                let mut out = lock(&s.out);
                if runtime::Endpoint::is_closed(core) {
                    if let Segment::Ready(seg) = &mut out.payload {
                        seg.release(block);
                    }
                    return Err(PublishError::Closed);
                }
                let seq = s.next_seq(core, &mut out);
                if let Segment::Ready(seg) = &mut out.payload {
                    seg.seal(block, seq);
                }
                s.deliver(core, &mut out, seq, block).result(s, block.len as usize)
            }
            Buf::Gone => Ok(()),
        }
    }
}

impl std::ops::Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.buf {
            Buf::Shared(loaned) => loaned.bytes(),
            Buf::Private { bytes, len } => &bytes[..*len],
            Buf::Gone => &[],
        }
    }
}

impl std::ops::DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            Buf::Shared(loaned) => loaned.bytes_mut(),
            Buf::Private { bytes, len } => &mut bytes[..*len],
            Buf::Gone => &mut [],
        }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.buf, Buf::Gone) {
            Buf::Shared(loaned) => {
                let block = loaned.block();
                drop(loaned);
                let mut out = lock(&self.publisher.core.role.out);
                if let Segment::Ready(seg) = &mut out.payload {
                    seg.release(block);
                }
            }
            Buf::Private { bytes, .. } => keep_spare(&mut lock(&self.publisher.core.role.out), bytes),
            Buf::Gone => {}
        }
    }
}

/// Largest private loan buffer a publisher keeps for the next small loan: a private loan
/// above it (a large message that found no shared space) is freed after use.
const SPARE_MAX: usize = 64 << 10;

/// Keeps a sent (or given back) private loan buffer for the next loan, unless one is kept
/// already (loans outstanding at once) or it is too large to keep.
fn keep_spare(out: &mut Out, bytes: Vec<u8>) {
    if out.spare.capacity() == 0 && bytes.len() <= SPARE_MAX {
        out.spare = bytes;
    }
}

impl std::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.len())
            .field("shared", &matches!(self.buf, Buf::Shared(_)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Subscriber;

    #[test]
    fn large_messages_reach_two_subscribers_and_their_blocks_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut subs: Vec<Subscriber> = (0..2)
            .map(|_| Subscriber::builder("large").dir(dir.path()).build().unwrap())
            .collect();
        let publisher = Publisher::builder("large")
            .dir(dir.path())
            .deliver_to_same_process(true)
            .payload_capacity(8 << 20)
            .build()
            .unwrap();
        publisher
            .wait_for_subscribers(2, Duration::from_secs(10))
            .unwrap();
        for i in 0..40u8 {
            let len = 100_000 + usize::from(i) * 1000;
            if i % 2 == 0 {
                publisher.publish(&vec![i; len]).unwrap();
            } else {
                publisher.publish_with(len, |b| b.fill(i)).unwrap();
            }
            for sub in &mut subs {
                let msg = sub.recv_ref_timeout(Duration::from_secs(10)).unwrap();
                assert_eq!(msg.len(), len);
                assert!(msg.iter().all(|&b| b == i));
                assert_eq!(msg.sequence(), u64::from(i) + 1);
            }
        }
        // One more publish reclaims what the subscribers released.
        publisher.publish(&[0; 40_000]).unwrap();
        assert_eq!(
            publisher.payload_in_use() as u64,
            crate::connection::payload::block_size(40_000)
        );
        for sub in &mut subs {
            assert_eq!(sub.recv_timeout(Duration::from_secs(10)).unwrap().len(), 40_000);
        }
    }

    fn pair(dir: &std::path::Path, build: impl FnOnce(crate::PublisherBuilder) -> crate::PublisherBuilder) -> (Publisher, Subscriber) {
        let sub = Subscriber::builder("loans").dir(dir).build().unwrap();
        let publisher = build(Publisher::builder("loans").dir(dir).deliver_to_same_process(true))
            .build()
            .unwrap();
        publisher
            .wait_for_subscribers(1, Duration::from_secs(10))
            .unwrap();
        (publisher, sub)
    }

    /// A payload segment no subscriber would map (over 1 TiB) was accepted, and every large
    /// message then ended its connection as a protocol violation; `usize::MAX` overflowed
    /// (a panic with overflow checks).
    #[test]
    fn a_payload_capacity_out_of_range_is_an_invalid_option() {
        let dir = tempfile::tempdir().unwrap();
        let build = |bytes| Publisher::builder("cap").dir(dir.path()).payload_capacity(bytes).build();
        for bytes in [usize::MAX, (1 << 40) + 64, 1 << 41, 1, 63] {
            let err = build(bytes).expect_err("out of range");
            assert!(
                matches!(err, crate::Error::InvalidOption { option: "payload_capacity", .. }),
                "{bytes}: {err}"
            );
            assert!(err.to_string().contains("1 TiB"), "{err}");
        }
        for bytes in [0, 64, 1 << 20] {
            build(bytes).unwrap();
        }
    }

    #[test]
    fn small_loans_reuse_one_buffer_and_send_exactly_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (publisher, mut sub) = pair(dir.path(), |b| b);
        let recv = |sub: &mut Subscriber| sub.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut first = publisher.loan(300).unwrap();
        first.fill(1);
        let at = first.as_ptr();
        first.send().unwrap();
        // A shorter loan gets the same buffer (no allocation), cut to its length.
        let mut second = publisher.loan(10).unwrap();
        assert_eq!((second.as_ptr(), second.len()), (at, 10));
        second.fill(2);
        second.send().unwrap();
        // A longer one grows it; what it does not write is what was there (initialized).
        let third = publisher.loan(500).unwrap();
        assert_eq!(third.len(), 500);
        assert_eq!(&third[..10], &[2; 10][..]);
        // Two at once: the second is a buffer of its own; both go out whole, in send order.
        let mut fourth = publisher.loan(20).unwrap();
        fourth.fill(4);
        fourth.send().unwrap();
        drop(third);
        let mut fifth = publisher.loan(30).unwrap();
        fifth.fill(5);
        publisher.publish_with(40, |b| b.fill(6)).unwrap();
        fifth.send().unwrap();
        assert_eq!(&*recv(&mut sub), &[1; 300][..]);
        assert_eq!(&*recv(&mut sub), &[2; 10][..]);
        assert_eq!(&*recv(&mut sub), &[4; 20][..]);
        assert_eq!(&*recv(&mut sub), &[6; 40][..]);
        assert_eq!(&*recv(&mut sub), &[5; 30][..]);
        // A private loan above what is kept (a large one that found no shared space) is not
        // kept: the next small loan allocates anew.
        let other = tempfile::tempdir().unwrap();
        let (big, _sub) = pair(other.path(), |b| b.payload_capacity(0));
        let large = big.loan(SPARE_MAX + 1).unwrap();
        assert!(format!("{large:?}").contains("shared: false"));
        large.send().unwrap();
        assert_eq!(lock(&big.core.role.out).spare.capacity(), 0);
        big.loan(8).unwrap().send().unwrap();
        assert_eq!(lock(&big.core.role.out).spare.len(), 8);
    }

    #[test]
    fn an_unsent_loan_gives_its_space_back_and_a_sent_one_is_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let (publisher, mut sub) = pair(dir.path(), |b| b);
        let loan = publisher.loan(1 << 20).unwrap();
        assert!(format!("{loan:?}").contains("shared: true"));
        assert_eq!(loan.as_ptr() as usize % 64, 0);
        assert!(publisher.payload_in_use() >= 1 << 20);
        drop(loan);
        assert_eq!(publisher.payload_in_use(), 0);
        // Small loans are private buffers, copied at send.
        let mut small = publisher.loan(100).unwrap();
        assert!(format!("{small:?}").contains("shared: false"));
        small.fill(1);
        small.send().unwrap();
        publisher.publish_with(100_000, |b| b.fill(2)).unwrap();
        assert_eq!(&*sub.recv_timeout(Duration::from_secs(10)).unwrap(), &[1; 100][..]);
        let msg = sub.recv_ref_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(msg.as_ptr() as usize % 64, 0);
        assert!(msg.iter().all(|&b| b == 2));
    }

    #[test]
    fn payloads_can_be_switched_off() {
        let dir = tempfile::tempdir().unwrap();
        let (publisher, mut sub) = pair(dir.path(), |b| b.payload_threshold(usize::MAX));
        publisher.publish(&[3; 200_000]).unwrap();
        assert_eq!(publisher.payload_in_use(), 0);
        assert_eq!(sub.recv_timeout(Duration::from_secs(10)).unwrap().len(), 200_000);
        drop(publisher);
        let dir2 = tempfile::tempdir().unwrap();
        let (publisher, mut sub) = pair(dir2.path(), |b| b.payload_capacity(0));
        // (Smaller than the ring: this thread is also the reader.)
        let loan = publisher.loan(100_000).unwrap();
        assert!(format!("{loan:?}").contains("shared: false"));
        loan.send().unwrap();
        assert_eq!(sub.recv_timeout(Duration::from_secs(10)).unwrap().len(), 100_000);
        let files: Vec<_> = std::fs::read_dir(dir2.path().join("loans"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pay"))
            .collect();
        assert!(files.is_empty(), "no payload segment: {files:?}");
    }

    /// A subscriber that breaks its ring (a read position that is not one) while it holds a
    /// block, when the segment is short of room: taking a block under `BlockFor` must not spin
    /// on that ring past the policy's time (it ends the connection, as a write would).
    #[cfg(unix)] // writes the ring's file through the file API (`FileExt::write_all_at`)
    #[test]
    fn taking_a_block_does_not_spin_on_a_ring_that_failed() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let slow = Duration::from_secs(3);
        let sub = Subscriber::builder("spin")
            .dir(dir.path())
            .heartbeat_interval(slow)
            .peer_timeout(slow * 4)
            .build()
            .unwrap();
        let publisher = Publisher::builder("spin")
            .dir(dir.path())
            .deliver_to_same_process(true)
            .heartbeat_interval(slow)
            .peer_timeout(slow * 4)
            .payload_capacity(1 << 20)
            .on_full(OnFull::BlockFor(Duration::from_millis(100)))
            .build()
            .unwrap();
        publisher
            .wait_for_subscribers(1, Duration::from_secs(10))
            .unwrap();
        // The subscriber holds a block; an unsent loan holds another.
        publisher.publish_with(400_000, |b| b.fill(1)).unwrap();
        let held = publisher.loan(400_000).unwrap();
        assert!(format!("{held:?}").contains("shared: true"));
        // The subscriber's read position becomes a misaligned value (a hostile subscriber).
        let ring = std::fs::read_dir(&publisher.core.dirs.segments)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("ring-"))
            .unwrap()
            .path();
        let file = std::fs::OpenOptions::new().write(true).open(ring).unwrap();
        file.write_all_at(&3u64.to_le_bytes(), 128).unwrap();
        let start = std::time::Instant::now();
        let loan = publisher.loan(300_000).unwrap();
        let took = start.elapsed();
        drop(loan);
        drop(held);
        assert!(took < Duration::from_secs(1), "loan took {took:?} under BlockFor(100 ms)");
        drop(sub);
    }

    /// An async publish that finds a departed subscriber drops its connection: what that
    /// subscriber held of the payload segment must come back.
    #[cfg(feature = "tokio")]
    #[test]
    fn an_async_publish_that_drops_a_connection_frees_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Subscriber::builder("aio").dir(dir.path()).build().unwrap();
        let b = Subscriber::builder("aio").dir(dir.path()).build().unwrap();
        let publisher = Publisher::builder("aio")
            .dir(dir.path())
            .deliver_to_same_process(true)
            .build()
            .unwrap();
        let events = publisher.events();
        publisher
            .wait_for_subscribers(2, Duration::from_secs(10))
            .unwrap();
        publisher.publish(&[5; 100_000]).unwrap();
        drop(b);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match events.recv_timeout(left) {
                Some(crate::Event::Disconnected { .. }) => break,
                Some(_) => {}
                None => panic!("no disconnect seen"),
            }
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(publisher.publish_async(b"small"))
            .unwrap();
        assert_eq!(a.recv_timeout(Duration::from_secs(10)).unwrap().len(), 100_000);
        assert_eq!(&*a.recv_timeout(Duration::from_secs(10)).unwrap(), b"small");
        assert_eq!(publisher.payload_in_use(), 0);
    }

    #[test]
    fn a_loan_after_close_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let publisher = Publisher::builder("closed").dir(dir.path()).build().unwrap();
        assert!(matches!(
            publisher.loan(usize::MAX),
            Err(PublishError::MessageTooLarge { .. })
        ));
        publisher.core.role.close(&publisher.core);
        assert!(matches!(publisher.loan(10), Err(PublishError::Closed)));
    }
}
