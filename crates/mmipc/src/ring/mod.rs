//! A single-producer single-consumer ring of variable-length byte messages in shared memory.
//!
//! This is the data plane under every publisher→subscriber connection, exposed for users who
//! want a raw, lossless, point-to-point pipe. A [`Producer`] and a [`Consumer`] share a region
//! made of a header and a power-of-two data area; messages of any length (zero included, larger
//! than the ring included) go in whole and come out whole, in order.
//!
//! * Copying API: [`Producer::write`] / [`Consumer::read`] and their `try_` and deadline forms.
//! * In-place API: [`Producer::reserve`] → fill → [`WriteGuard::commit`], and
//!   [`Consumer::read_in_place`] → use the `&[u8]` → drop the guard. Messages too large to sit
//!   contiguously in the ring fall back to a copy, transparently.
//! * Waiting follows a [`WaitStrategy`]: spin, spin then sleep on a futex, or sleep at once. A
//!   side that is not parked costs its peer no system call.
//! * The consumer and producer validate every position, length and record kind they read from
//!   the shared region. A violation returns [`RingError::Violation`] and closes the ring; it
//!   never panics or touches memory outside the region.
//!
//! # Examples
//!
//! ```
//! use mmipc::ring;
//!
//! // A ring on the heap, both ends in this process; `RingSegment` puts one in shared memory.
//! let (mut tx, mut rx) = ring::with_capacity(4096);
//! let writer = std::thread::spawn(move || -> Result<(), ring::RingError> {
//!     tx.write(b"hello")?;
//!     tx.write(&[])?;                   // zero-length messages are messages too
//!     tx.write(&vec![7u8; 100_000])?;   // 24x the ring: fragmented and reassembled
//!     Ok(())
//! });
//!
//! let mut buf = Vec::new();
//! rx.read(&mut buf)?;
//! assert_eq!(buf, b"hello");
//! rx.read(&mut buf)?;
//! assert!(buf.is_empty());
//! {
//!     let msg = rx.read_in_place(None)?; // borrowed from the ring when it is contiguous
//!     assert_eq!(msg.len(), 100_000);
//! }
//! writer.join().unwrap()?;
//! assert_eq!(rx.read(&mut buf), Err(ring::RingError::Closed)); // the writer dropped its end
//! # Ok::<(), mmipc::ring::RingError>(())
//! ```

mod layout;
mod region;
#[cfg(not(loom))]
mod segment;
mod wait;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

use std::time::Instant;

#[cfg(not(loom))]
pub(crate) use layout::Bell as RingBell;
use layout::{Bell, CLOSED, Kind, OPEN, RECORD_HEADER, Step, VIOLATED, encode, plan, record_len};
pub use layout::{MAX_CAPACITY, MIN_CAPACITY};
use region::Region;
#[cfg(not(loom))]
pub(crate) use region::SharedBell;
#[cfg(not(loom))]
pub use segment::RingSegment;
#[cfg(not(loom))]
pub(crate) use wait::OsFutex;
#[cfg(not(loom))]
pub use wait::rescued_wakeups;
pub use wait::{DEFAULT_SPIN, WaitStrategy};
pub(crate) use wait::{RingFutex, WaitError, notify, wait_until};

use crate::sync::{AtomicU64, Ordering};

/// Default limit on the size of a message a [`Consumer`] accepts (64 MiB).
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
/// tx.try_write(&[0; 100])?;
/// rx.set_max_message_len(mmipc::ring::DEFAULT_MAX_MESSAGE_LEN.min(64));
/// let mut buf = Vec::new();
/// assert!(matches!(rx.try_read(&mut buf), Err(mmipc::ring::RingError::Violation(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 64 << 20;

/// Why a ring operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
/// drop(tx);
/// let mut buf = Vec::new();
/// assert_eq!(rx.try_read(&mut buf), Err(mmipc::ring::RingError::Closed));
/// ```
pub enum RingError {
    /// The peer closed the ring (for a consumer: after everything written was read).
    #[error("the peer closed the ring")]
    Closed,
    /// A non-blocking write found no room for the whole message; nothing was written.
    #[error("the ring is full; retry later or use a blocking write")]
    Full,
    /// The deadline passed before the operation could complete.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The peer broke the protocol; the ring is now closed.
    #[error("protocol violation by the peer ({0}); the ring is closed")]
    Violation(#[from] Violation),
}

/// A protocol violation found in the shared region: evidence of a buggy or hostile peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
///
/// # Examples
///
/// ```
/// use mmipc::ring::{RingError, Violation};
/// # let err = RingError::Violation(Violation::Fragments { total: 1 });
/// if let RingError::Violation(v) = err {
///     eprintln!("the peer broke the protocol: {v}; the ring is closed");
/// }
/// ```
pub enum Violation {
    /// The peer's position is misaligned, moved backwards or is more than a capacity away.
    #[error("peer position {theirs} is impossible (ours {ours}, capacity {capacity})")]
    Position {
        /// Our position.
        ours: u64,
        /// The peer's position as read.
        theirs: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// A record header names an unknown kind.
    #[error("unknown record kind {kind} at offset {offset}")]
    Kind {
        /// The kind read.
        kind: u32,
        /// Offset of the record in the data area.
        offset: u64,
    },
    /// A record is longer than the published bytes or the space before the end of the ring.
    #[error("record of {len} bytes at offset {offset} overruns the {room} bytes available")]
    Overrun {
        /// Payload length read.
        len: u32,
        /// Offset of the record in the data area.
        offset: u64,
        /// Bytes it could occupy.
        room: u64,
    },
    /// A record arrived where the fragment sequence does not allow it.
    #[error("{found} record where {expected} was expected")]
    Sequence {
        /// Kind found.
        found: &'static str,
        /// What was allowed there.
        expected: &'static str,
    },
    /// A message exceeds the consumer's limit.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The consumer's limit.
        max: usize,
    },
    /// Fragments do not add up to the length the first one announced.
    #[error("fragments add up to more than the announced {total} bytes")]
    Fragments {
        /// Announced total.
        total: u64,
    },
    /// The fragments of incomplete messages would hold more memory than the reassembly
    /// budget shared by this consumer's group allows.
    #[error("reassembling would hold {wanted} bytes, over the budget of {budget} bytes")]
    Budget {
        /// Bytes of incomplete messages the group would hold.
        wanted: u64,
        /// The budget.
        budget: u64,
    },
    /// Memory for reassembling a message could not be allocated.
    #[error("could not allocate {len} bytes to reassemble a message")]
    OutOfMemory {
        /// Bytes the message would have needed so far.
        len: u64,
    },
    /// A message broke the framing of the layer above the ring (publish/subscribe: too short
    /// for its sequence number, or a sequence number that did not increase).
    #[error("a message broke the framing of the layer above the ring")]
    Framing,
}

/// Memory that a group of consumers (every ring of one subscriber) may hold in the fragments
/// of messages they are still reassembling. A fragment that would take the group over the
/// limit is a [`Violation::Budget`] of the ring it arrived on; the others go on.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    held: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> std::sync::Arc<Budget> {
        std::sync::Arc::new(Budget {
            limit,
            held: AtomicU64::new(0),
        })
    }

    /// Bytes currently held by the group.
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    fn charge(&self, n: u64) -> Result<(), Violation> {
        let before = self.held.fetch_add(n, Ordering::Relaxed);
        let wanted = before.saturating_add(n);
        if wanted > self.limit {
            self.held.fetch_sub(n, Ordering::Relaxed);
            return Err(Violation::Budget {
                wanted,
                budget: self.limit,
            });
        }
        Ok(())
    }

    fn refund(&self, n: u64) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Makes room for `n` more reassembled bytes in `assembly`: charged to the budget, then
/// allocated (allocation failure is a violation, not an abort). A free function so that it
/// can run while the region is borrowed.
fn grow(
    assembly: &mut Vec<u8>,
    budget: Option<&Budget>,
    charged: &mut u64,
    n: usize,
) -> Result<(), RingError> {
    if let Some(b) = budget {
        b.charge(n as u64)?;
        *charged += n as u64;
    }
    assembly
        .try_reserve(n)
        .map_err(|_| Violation::OutOfMemory {
            len: assembly.len() as u64 + n as u64,
        })?;
    Ok(())
}

/// A reassembly buffer larger than this is freed when the next message starts, so that one
/// huge message does not pin its memory for the life of the connection.
const KEEP_ASSEMBLY_BELOW: usize = 1 << 20;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Whole => "whole-message",
        Kind::First => "first-fragment",
        Kind::Middle => "middle-fragment",
        Kind::Last => "last-fragment",
        Kind::Padding => "padding",
        Kind::Abort => "abort",
    }
}

/// A ring with both ends in this process, on the heap.
///
/// # Panics
/// If `capacity` is not a power of two between [`MIN_CAPACITY`] and [`MAX_CAPACITY`].
///
/// # Examples
/// ```
/// let (mut tx, mut rx) = mmipc::ring::with_capacity(1024);
/// tx.try_write(b"ping")?;
/// let mut buf = Vec::new();
/// assert!(rx.try_read(&mut buf)?);
/// assert_eq!(buf, b"ping");
/// # Ok::<(), mmipc::ring::RingError>(())
/// ```
pub fn with_capacity(capacity: usize) -> (Producer, Consumer) {
    let region = Region::heap(capacity as u64);
    let peer = region.share();
    (Producer::new(region), Consumer::new(peer))
}

/// Validates a position the peer published: aligned, not behind what we saw before, and
/// within one capacity of ours.
#[inline]
fn check_position(
    theirs: u64,
    cached: u64,
    low: u64,
    high: u64,
    ours: u64,
    cap: u64,
) -> Result<(), Violation> {
    let forward = theirs.wrapping_sub(cached) as i64 >= 0;
    if theirs.is_multiple_of(layout::ALIGN) && forward && high.wrapping_sub(low) <= cap {
        Ok(())
    } else {
        Err(Violation::Position {
            ours,
            theirs,
            capacity: cap,
        })
    }
}

/// The writing end of a ring. `Send`, not `Sync`: one thread writes at a time.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
/// tx.try_write(b"one")?;
/// tx.try_write_parts(&[b"t", b"wo"])?;
/// let mut buf = Vec::new();
/// rx.read(&mut buf)?;
/// assert_eq!(buf, b"one");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Producer {
    region: Region,
    futex: RingFutex,
    strategy: WaitStrategy,
    /// Our write position (authoritative; the shared copy is only published).
    write: u64,
    /// The consumer's read position as last loaded and validated.
    read_cache: u64,
    /// A fragmented message was cut short; an abort record must precede the next message.
    abort_pending: bool,
    failed: Option<RingError>,
    /// Staging buffer for in-place writes that must be fragmented.
    staging: Vec<u8>,
    /// Rung after each commit instead of the ring's own data bell (a subscriber's doorbell).
    #[cfg(not(loom))]
    doorbell: Option<SharedBell>,
}

/// Source bytes of one message, gathered from several slices.
struct Gather<'a> {
    parts: &'a [&'a [u8]],
    part: usize,
    offset: usize,
}

impl Gather<'_> {
    /// Copies the next `n` bytes into the data area at `off`.
    ///
    /// # Safety
    /// `off + n <= capacity` and the producer owns those bytes.
    unsafe fn copy_to(&mut self, data: &region::Data, mut off: u64, mut n: usize) {
        while n > 0 {
            let part = self.parts[self.part];
            let take = (part.len() - self.offset).min(n);
            // SAFETY: `off + take <= off + n <= capacity` per the contract.
            unsafe { data.write(off, &part[self.offset..self.offset + take]) };
            self.offset += take;
            n -= take;
            off += take as u64;
            if self.offset == part.len() {
                self.part += 1;
                self.offset = 0;
            }
        }
    }

    fn skip_empty(&mut self) {
        while self.part < self.parts.len() && self.parts[self.part].len() == self.offset {
            self.part += 1;
            self.offset = 0;
        }
    }
}

enum Blocking {
    No,
    Until(Option<Instant>),
}

impl Producer {
    fn new(region: Region) -> Producer {
        Producer {
            futex: region.futex(),
            region,
            strategy: WaitStrategy::default(),
            write: 0,
            read_cache: 0,
            abort_pending: false,
            failed: None,
            staging: Vec::new(),
            #[cfg(not(loom))]
            doorbell: None,
        }
    }

    /// Rings `bell` instead of the ring's own data bell whenever data is published or the
    /// producer closes: for a consumer that waits on one bell for many rings.
    #[cfg(not(loom))]
    pub(crate) fn set_doorbell(&mut self, bell: SharedBell) {
        self.doorbell = Some(bell);
    }

    /// The bell the consumer sleeps on while waiting for data.
    #[inline]
    fn data_bell(&self) -> &Bell {
        #[cfg(not(loom))]
        if let Some(b) = &self.doorbell {
            return b.bell();
        }
        &self.region.header().data_bell
    }

    /// A handle on the shared header for a supervising thread (heartbeats, liveness).
    #[cfg(not(loom))]
    pub(crate) fn control(&self) -> RingControl {
        RingControl {
            region: self.region.share(),
        }
    }

    /// Sets how blocking writes wait for space.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.set_wait_strategy(mmipc::WaitStrategy::Spin);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Capacity of the data area in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// assert_eq!(tx.capacity(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.region.capacity() as usize
    }

    /// Bytes written but not yet consumed, as of the last time the consumer's position was
    /// loaded (an upper bound).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.try_write(b"12345678")?; // 8-byte header + 8 bytes
    /// assert_eq!(tx.fill(), 16);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fill(&self) -> usize {
        (self.write - self.read_cache) as usize
    }

    /// Writes one message, waiting for space as the wait strategy says.
    ///
    /// # Errors
    /// [`RingError::Closed`] if the consumer left, [`RingError::Violation`] if it corrupted
    /// the shared state.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.write(b"waits for room if the ring is full")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&mut self, msg: &[u8]) -> Result<(), RingError> {
        self.send(&[msg], Blocking::Until(None))
    }

    /// Writes one message, waiting for space until `deadline`.
    ///
    /// # Errors
    /// As [`Producer::write`], plus [`RingError::Timeout`]. If a message larger than the ring
    /// times out half-written, the consumer discards the part it received.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.write_until(b"or gives up", Instant::now() + Duration::from_millis(10))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_until(&mut self, msg: &[u8], deadline: Instant) -> Result<(), RingError> {
        self.send(&[msg], Blocking::Until(Some(deadline)))
    }

    /// Writes one message gathered from `parts`, waiting for space until `deadline` (`None`:
    /// for ever).
    ///
    /// # Errors
    /// As [`Producer::write_until`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.write_parts(&[b"head|", b"body"], None)?;
    /// let mut buf = Vec::new();
    /// rx.read(&mut buf)?;
    /// assert_eq!(buf, b"head|body");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_parts(
        &mut self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<(), RingError> {
        self.send(parts, Blocking::Until(deadline))
    }

    /// Writes one message if the ring has room for all of it now; else writes nothing.
    ///
    /// # Errors
    /// [`RingError::Full`] if there is no room, else as [`Producer::write`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = mmipc::ring::with_capacity(64);
    /// while tx.try_write(&[0; 8]).is_ok() {}
    /// assert_eq!(tx.try_write(&[0; 8]), Err(mmipc::ring::RingError::Full));
    /// ```
    pub fn try_write(&mut self, msg: &[u8]) -> Result<(), RingError> {
        self.send(&[msg], Blocking::No)
    }

    /// As [`Producer::try_write`], for a message gathered from `parts`.
    ///
    /// # Errors
    /// As [`Producer::try_write`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.try_write_parts(&[b"a", b"b", b"c"])?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_write_parts(&mut self, parts: &[&[u8]]) -> Result<(), RingError> {
        self.send(parts, Blocking::No)
    }

    #[cfg(not(loom))]
    /// Reserves room for a `len`-byte message to be filled in place, waiting for space until
    /// `deadline` (`None`: for ever). Dropping the guard without [`WriteGuard::commit`]
    /// publishes nothing.
    ///
    /// A message whose record cannot sit contiguously in the ring (more than half the
    /// capacity) is staged in a private buffer and copied in, in fragments, at commit.
    ///
    /// # Errors
    /// As [`Producer::write_until`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// let mut slot = tx.reserve(5, None)?; // waits for room, for ever
    /// slot.copy_from_slice(b"hello");
    /// slot.commit()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserve(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<WriteGuard<'_>, RingError> {
        self.reserve_with(len, Blocking::Until(deadline))
    }

    #[cfg(not(loom))]
    /// Reserves room in place only if available now.
    ///
    /// # Errors
    /// [`RingError::Full`] if there is no room now, else as [`Producer::write`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// let mut slot = tx.try_reserve(3)?;
    /// slot.copy_from_slice(b"abc");
    /// slot.commit()?;
    /// assert_eq!(&*rx.read_in_place(None)?, b"abc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_>, RingError> {
        self.reserve_with(len, Blocking::No)
    }

    /// Bumps this side's heartbeat counter (read by the layer above for liveness).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.beat();
    /// assert_eq!(rx.peer_heartbeat(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn beat(&self) {
        self.region
            .header()
            .producer
            .heartbeat
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The consumer's heartbeat counter.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// rx.beat();
    /// assert_eq!(tx.peer_heartbeat(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peer_heartbeat(&self) -> u64 {
        self.region
            .header()
            .consumer
            .heartbeat
            .load(Ordering::Relaxed)
    }

    #[cfg(not(loom))]
    fn reserve_with(
        &mut self,
        len: usize,
        blocking: Blocking,
    ) -> Result<WriteGuard<'_>, RingError> {
        self.check_usable()?;
        let cap = self.region.capacity();
        let whole = record_len(len as u64);
        if whole > cap / 2 {
            let deadline = match blocking {
                Blocking::No => None,
                Blocking::Until(d) => Some(d),
            };
            self.staging.clear();
            self.staging.resize(len, 0);
            return Ok(WriteGuard {
                producer: self,
                target: Target::Staged(deadline),
            });
        }
        self.flush_abort(&blocking)?;
        // Make room for one whole record, padding the tail if needed.
        loop {
            let free = cap - (self.write - self.read_cache);
            match plan(cap, self.write & (cap - 1), free, len as u64, true) {
                Step::Record {
                    kind: Kind::Whole, ..
                } => break,
                Step::Pad => self.pad(),
                _ => self.wait_for_space(&blocking)?,
            }
        }
        Ok(WriteGuard {
            producer: self,
            target: Target::InPlace { len },
        })
    }

    fn check_usable(&self) -> Result<(), RingError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, err: RingError) -> RingError {
        if let RingError::Violation(_) = err {
            let h = self.region.header();
            h.producer.closed.store(VIOLATED, Ordering::Release);
            notify(&self.futex, self.data_bell());
        }
        self.failed = Some(err.clone());
        err
    }

    fn send(&mut self, parts: &[&[u8]], blocking: Blocking) -> Result<(), RingError> {
        self.check_usable()?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if let Blocking::No = blocking
            && !self.fits_now(total as u64)
            && (!self.refresh()? || !self.fits_now(total as u64))
        {
            return Err(RingError::Full);
        }
        self.flush_abort(&blocking)?;
        let cap = self.region.capacity();
        let mask = cap - 1;
        let mut src = Gather {
            parts,
            part: 0,
            offset: 0,
        };
        let mut remaining = total as u64;
        let mut first = true;
        loop {
            let free = cap - (self.write - self.read_cache);
            let off = self.write & mask;
            match plan(cap, off, free, remaining, first) {
                Step::Record { kind, chunk } => {
                    let lead = if kind == Kind::First { 8 } else { 0 };
                    let data = self.region.data();
                    // SAFETY: `plan` chose a record that fits in `min(free, capacity - off)`,
                    // bytes the consumer has released to us.
                    unsafe {
                        data.write_word(off, encode((chunk + lead) as u32, kind));
                        if lead != 0 {
                            data.write(off + RECORD_HEADER, &(total as u64).to_ne_bytes());
                        }
                        src.copy_to(data, off + RECORD_HEADER + lead, chunk as usize);
                    }
                    src.skip_empty();
                    self.write += record_len(chunk + lead);
                    remaining -= chunk;
                    first = false;
                    self.commit();
                    if matches!(kind, Kind::Whole | Kind::Last) {
                        return Ok(());
                    }
                }
                Step::Pad => self.pad(),
                Step::Wait => {
                    debug_assert!(matches!(blocking, Blocking::Until(_)), "fits_now was wrong");
                    if let Err(e) = self.wait_for_space(&blocking) {
                        if !first && e == RingError::Timeout {
                            self.abort_pending = true;
                        }
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Whether a `total`-byte message fits in the free space as last seen, simulating the
    /// steps `send` will take.
    fn fits_now(&self, total: u64) -> bool {
        let cap = self.region.capacity();
        let mut write = self.write;
        let mut remaining = total;
        let mut first = true;
        if self.abort_pending {
            write += RECORD_HEADER;
        }
        loop {
            let used = write - self.read_cache;
            if used > cap {
                return false;
            }
            match plan(cap, write & (cap - 1), cap - used, remaining, first) {
                Step::Record { kind, chunk } => {
                    if matches!(kind, Kind::Whole | Kind::Last) {
                        return true;
                    }
                    write += record_len(chunk + 8 * u64::from(first));
                    remaining -= chunk;
                    first = false;
                }
                Step::Pad => write += cap - (write & (cap - 1)),
                Step::Wait => return false,
            }
        }
    }

    fn flush_abort(&mut self, blocking: &Blocking) -> Result<(), RingError> {
        while self.abort_pending {
            let cap = self.region.capacity();
            if self.write - self.read_cache + RECORD_HEADER <= cap {
                let off = self.write & (cap - 1);
                // SAFETY: 8 free bytes at `off` (offsets are 8-aligned, so they are contiguous).
                unsafe { self.region.data().write_word(off, encode(0, Kind::Abort)) };
                self.write += RECORD_HEADER;
                self.commit();
                self.abort_pending = false;
            } else if let Blocking::No = blocking {
                return Err(RingError::Full);
            } else {
                self.wait_for_space(blocking)?;
            }
        }
        Ok(())
    }

    /// Fills the tail of the data area with a padding record (not yet published).
    fn pad(&mut self) {
        let cap = self.region.capacity();
        let off = self.write & (cap - 1);
        let contig = cap - off;
        // SAFETY: `plan` returns `Pad` only when the whole tail is free; `off` is 8-aligned
        // and below the capacity, so the 8-byte header fits.
        unsafe {
            self.region
                .data()
                .write_word(off, encode((contig - RECORD_HEADER) as u32, Kind::Padding))
        };
        self.write += contig;
    }

    /// Publishes everything written so far and wakes a parked consumer.
    #[inline]
    fn commit(&mut self) {
        let h = self.region.header();
        // SYNC POINT data: pairs with the Acquire load in `Consumer::refresh`.
        h.producer.pos.store(self.write, Ordering::Release);
        notify(&self.futex, self.data_bell());
    }

    /// Reloads the consumer's position. `Ok(true)` if it moved.
    fn refresh(&mut self) -> Result<bool, RingError> {
        let h = self.region.header();
        // SYNC POINT space: pairs with the Release store in `Consumer::release`.
        let read = h.consumer.pos.load(Ordering::Acquire);
        let cap = self.region.capacity();
        if let Err(v) = check_position(read, self.read_cache, read, self.write, self.write, cap) {
            return Err(self.fail(v.into()));
        }
        if read == self.read_cache && h.consumer.closed.load(Ordering::Acquire) != OPEN {
            return Err(self.fail(RingError::Closed));
        }
        let moved = read != self.read_cache;
        self.read_cache = read;
        Ok(moved)
    }

    fn wait_for_space(&mut self, blocking: &Blocking) -> Result<(), RingError> {
        if self.refresh()? {
            return Ok(());
        }
        let deadline = match blocking {
            Blocking::No => return Err(RingError::Full),
            Blocking::Until(d) => *d,
        };
        // Publish pending padding before sleeping: the consumer must be able to pass it.
        self.commit();
        #[allow(clippy::clone_on_copy)] // Copy in production, an Arc under loom
        let (futex, strategy) = (self.futex.clone(), self.strategy);
        let region = self.region.share();
        let result = wait_until(
            &futex,
            &region.header().space_bell,
            strategy,
            deadline,
            || self.refresh(),
        );
        match result {
            Ok(()) => Ok(()),
            Err(WaitError::TimedOut) => Err(RingError::Timeout),
            Err(WaitError::Failed(e)) => Err(e),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let h = self.region.header();
        if h.producer.closed.load(Ordering::Relaxed) == OPEN {
            h.producer.closed.store(CLOSED, Ordering::Release);
        }
        notify(&self.futex, self.data_bell());
    }
}

enum Target {
    InPlace { len: usize },
    Staged(Option<Option<Instant>>),
}

#[cfg(not(loom))]
/// Room for one message reserved by [`Producer::reserve`]: fill it through `DerefMut`, then
/// [`commit`](WriteGuard::commit). Dropping it uncommitted publishes nothing.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
/// let mut slot = tx.try_reserve(4)?;
/// slot.copy_from_slice(&42u32.to_le_bytes());
/// slot.commit()?; // dropped without commit, nothing would be published
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WriteGuard<'a> {
    producer: &'a mut Producer,
    target: Target,
}

#[cfg(not(loom))]
impl WriteGuard<'_> {
    /// Publishes the message.
    ///
    /// # Errors
    /// For a staged (fragmented) message, as [`Producer::write_until`]; an in-place message
    /// cannot fail.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// let mut slot = tx.try_reserve(2)?;
    /// slot.copy_from_slice(b"ok");
    /// slot.commit()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(self) -> Result<(), RingError> {
        let p = self.producer;
        match self.target {
            Target::InPlace { len } => {
                let off = p.write & (p.region.capacity() - 1);
                // SAFETY: `reserve_with` checked that a whole record of `len` fits at `off`.
                unsafe {
                    p.region
                        .data()
                        .write_word(off, encode(len as u32, Kind::Whole))
                };
                p.write += record_len(len as u64);
                p.commit();
                Ok(())
            }
            Target::Staged(deadline) => {
                let staging = std::mem::take(&mut p.staging);
                let blocking = match deadline {
                    None => Blocking::No,
                    Some(d) => Blocking::Until(d),
                };
                let r = p.send(&[&staging], blocking);
                p.staging = staging;
                r
            }
        }
    }
}

#[cfg(not(loom))]
impl std::ops::Deref for WriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let p = &*self.producer;
        match self.target {
            Target::InPlace { len } => {
                let off = p.write & (p.region.capacity() - 1);
                // SAFETY: reserved by `reserve_with`: `off + 8 + len` is within the capacity
                // and the producer owns those bytes until commit.
                unsafe { p.region.data().slice(off + RECORD_HEADER, len) }
            }
            Target::Staged(_) => &p.staging,
        }
    }
}

#[cfg(not(loom))]
impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let p = &mut *self.producer;
        match self.target {
            Target::InPlace { len } => {
                let off = p.write & (p.region.capacity() - 1);
                // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
                unsafe { p.region.data().slice_mut(off + RECORD_HEADER, len) }
            }
            Target::Staged(_) => &mut p.staging,
        }
    }
}

/// The reading end of a ring. `Send`, not `Sync`: one thread reads at a time.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
/// tx.try_write(b"ping")?;
/// let mut buf = Vec::new();
/// assert!(rx.try_read(&mut buf)?);
/// assert_eq!(buf, b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Consumer {
    region: Region,
    futex: RingFutex,
    strategy: WaitStrategy,
    /// Our read position (authoritative; the shared copy is only published).
    read: u64,
    /// The read position last published to the producer. Whole messages are handed back in
    /// batches of an eighth of the ring, and everything as soon as we find no more data, so
    /// that a producer spinning on a full ring does not pull our cache line once per message.
    released: u64,
    /// The producer's write position as last loaded and validated.
    write_cache: u64,
    max_message_len: usize,
    /// Fragments of the message being reassembled, and its announced total. The buffer
    /// grows with what arrives, never by what a peer announces.
    assembly: Vec<u8>,
    assembling: Option<u64>,
    /// The group's reassembly budget, and how much of it this consumer holds.
    budget: Option<std::sync::Arc<Budget>>,
    charged: u64,
    failed: Option<RingError>,
    /// A complete message located by `prepare` and not yet handed out.
    staged: Option<Place>,
}

/// One record located and validated by [`Consumer::next_record`].
struct Record {
    kind: Kind,
    /// Offset of the payload in the data area.
    payload: u64,
    len: u32,
}

impl Consumer {
    fn new(region: Region) -> Consumer {
        Consumer {
            futex: region.futex(),
            region,
            strategy: WaitStrategy::default(),
            read: 0,
            released: 0,
            write_cache: 0,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            assembly: Vec::new(),
            assembling: None,
            budget: None,
            charged: 0,
            failed: None,
            staged: None,
        }
    }

    /// Sets how blocking reads wait for data.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// rx.set_wait_strategy(mmipc::WaitStrategy::Park);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Sets the largest message accepted ([`DEFAULT_MAX_MESSAGE_LEN`] by default); a larger
    /// one is a [`Violation::TooLarge`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// rx.set_max_message_len(1 << 20); // refuse anything larger as a violation
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_max_message_len(&mut self, max: usize) {
        self.max_message_len = max;
    }

    /// Capacity of the data area in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// assert_eq!(rx.capacity(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.region.capacity() as usize
    }

    /// Bumps this side's heartbeat counter.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// rx.beat();
    /// assert_eq!(tx.peer_heartbeat(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn beat(&self) {
        self.region
            .header()
            .consumer
            .heartbeat
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The producer's heartbeat counter.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.beat();
    /// assert_eq!(rx.peer_heartbeat(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peer_heartbeat(&self) -> u64 {
        self.region
            .header()
            .producer
            .heartbeat
            .load(Ordering::Relaxed)
    }

    /// Reads the next message into `out` (replacing its contents) if one is complete.
    /// Returns `Ok(false)` if none is.
    ///
    /// # Errors
    /// [`RingError::Closed`] once the producer closed and everything was read;
    /// [`RingError::Violation`] if the shared state is corrupt (the ring is then closed).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// let mut buf = Vec::new();
    /// assert!(!rx.try_read(&mut buf)?); // nothing yet
    /// tx.try_write(b"x")?;
    /// assert!(rx.try_read(&mut buf)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read(&mut self, out: &mut Vec<u8>) -> Result<bool, RingError> {
        #[cfg(not(loom))]
        if self.staged.is_some() {
            if let Some(guard) = self.take_staged() {
                out.clear();
                out.extend_from_slice(&guard);
            }
            return Ok(true);
        }
        self.check_usable()?;
        match self.step(Some(out)) {
            Ok(Some(_)) => Ok(true),
            Ok(None) => Ok(false),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reads the next message into `out`, waiting for it as the wait strategy says.
    ///
    /// # Errors
    /// As [`Consumer::try_read`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.try_write(b"x")?;
    /// let mut buf = Vec::new();
    /// rx.read(&mut buf)?; // waits as the wait strategy says
    /// assert_eq!(buf, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read(&mut self, out: &mut Vec<u8>) -> Result<(), RingError> {
        self.read_until(out, None)
    }

    /// Reads the next message into `out`, waiting until `deadline` (`None`: for ever).
    ///
    /// # Errors
    /// As [`Consumer::try_read`], plus [`RingError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// let mut buf = Vec::new();
    /// let r = rx.read_until(&mut buf, Some(Instant::now() + Duration::from_millis(10)));
    /// assert_eq!(r, Err(mmipc::ring::RingError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_until(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), RingError> {
        loop {
            if self.try_read(out)? {
                return Ok(());
            }
            self.wait_for_data(deadline)?;
        }
    }

    #[cfg(not(loom))]
    /// The next message borrowed in place, if one is complete: a slice of the ring when the
    /// message sits in one record, else the reassembled copy. The message is consumed when
    /// the guard drops.
    ///
    /// # Errors
    /// As [`Consumer::try_read`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.try_write(b"in place")?;
    /// if let Some(msg) = rx.try_read_in_place()? {
    ///     assert_eq!(&*msg, b"in place"); // no copy; consumed when `msg` drops
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read_in_place(&mut self) -> Result<Option<ReadGuard<'_>>, RingError> {
        self.prepare()?;
        Ok(self.take_staged())
    }

    #[cfg(not(loom))]
    /// As [`Consumer::try_read_in_place`], waiting until `deadline` (`None`: for ever).
    ///
    /// # Errors
    /// As [`Consumer::read_until`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
    /// tx.try_write(b"x")?;
    /// let msg = rx.read_in_place(None)?;
    /// assert_eq!(&*msg, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_in_place(&mut self, deadline: Option<Instant>) -> Result<ReadGuard<'_>, RingError> {
        while !self.prepare()? {
            self.wait_for_data(deadline)?;
        }
        self.take_staged().ok_or(RingError::Closed)
    }

    #[cfg(not(loom))]
    /// Locates the next complete message without consuming it, so that a caller can look at
    /// it ([`Consumer::staged`]) before taking it ([`Consumer::try_read_in_place`] then hands
    /// it out without searching again). Returns whether one is ready.
    pub(crate) fn prepare(&mut self) -> Result<bool, RingError> {
        if self.staged.is_some() {
            return Ok(true);
        }
        self.check_usable()?;
        match self.step(None) {
            Ok(place) => {
                self.staged = place;
                Ok(self.staged.is_some())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    #[cfg(not(loom))]
    /// Fails the ring for a violation found by the layer above (bad framing): nothing more
    /// is read from it, and the producer sees `VIOLATED`.
    pub(crate) fn violate(&mut self) {
        let _ = self.fail(RingError::Violation(Violation::Framing));
    }

    #[cfg(not(loom))]
    /// The message located by [`Consumer::prepare`], if any, without taking it.
    pub(crate) fn staged(&self) -> Option<&[u8]> {
        self.staged.as_ref().map(|place| self.bytes(place))
    }

    #[cfg(not(loom))]
    fn take_staged(&mut self) -> Option<ReadGuard<'_>> {
        let place = self.staged.take()?;
        Some(ReadGuard {
            consumer: self,
            place,
        })
    }

    #[cfg(not(loom))]
    fn bytes(&self, place: &Place) -> &[u8] {
        match *place {
            Place::Ring { payload, len, .. } => {
                // SAFETY: validated by `next_record` to lie within published, contiguous
                // bytes that the producer will not reuse before they are released (the
                // staged or guarded message holds `self.read` back).
                unsafe { self.region.data().slice(payload, len) }
            }
            Place::Assembled | Place::Copied => &self.assembly,
        }
    }

    /// Whether a read might make progress now: unread bytes are published, or the ring is
    /// closed or failed (so a read would report it). Never blocks.
    pub(crate) fn poll(&mut self) -> bool {
        if self.staged.is_some() || self.failed.is_some() || self.read != self.write_cache {
            return true;
        }
        !matches!(self.refresh(), Ok(false))
    }

    /// A handle on the shared header for a supervising thread (heartbeats, liveness).
    #[cfg(not(loom))]
    pub(crate) fn control(&self) -> RingControl {
        RingControl {
            region: self.region.share(),
        }
    }

    fn check_usable(&self) -> Result<(), RingError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Makes this consumer count its incomplete messages against `budget`, shared with the
    /// other consumers of its group.
    pub(crate) fn set_budget(&mut self, budget: std::sync::Arc<Budget>) {
        self.settle();
        self.budget = Some(budget);
    }

    /// Gives back to the budget what the message being reassembled held.
    fn settle(&mut self) {
        if let Some(b) = &self.budget {
            b.refund(self.charged);
        }
        self.charged = 0;
    }

    fn fail(&mut self, err: RingError) -> RingError {
        self.settle();
        let h = self.region.header();
        if let RingError::Violation(_) = err {
            h.consumer.closed.store(VIOLATED, Ordering::Release);
            notify(&self.futex, &h.space_bell);
        }
        self.failed = Some(err.clone());
        err
    }

    fn wait_for_data(&mut self, deadline: Option<Instant>) -> Result<(), RingError> {
        #[allow(clippy::clone_on_copy)] // Copy in production, an Arc under loom
        let (futex, strategy) = (self.futex.clone(), self.strategy);
        let region = self.region.share();
        let result = wait_until(
            &futex,
            &region.header().data_bell,
            strategy,
            deadline,
            || {
                if self.read != self.write_cache {
                    return Ok(true);
                }
                self.refresh()
            },
        );
        match result {
            Ok(()) => Ok(()),
            Err(WaitError::TimedOut) => Err(RingError::Timeout),
            Err(WaitError::Failed(e)) => Err(self.fail(e)),
        }
    }

    /// Reloads the producer's position. `Ok(true)` if there is new data; `Err(Closed)` if
    /// there is none and the producer closed.
    fn refresh(&mut self) -> Result<bool, RingError> {
        let cap = self.region.capacity();
        let mut closed = false;
        loop {
            // SYNC POINT data: pairs with the Release store in `Producer::commit`.
            let write = self.region.header().producer.pos.load(Ordering::Acquire);
            check_position(write, self.write_cache, self.read, write, self.read, cap)?;
            self.write_cache = write;
            if write != self.read {
                return Ok(true);
            }
            // Nothing left to read: hand back everything we held, before anyone waits.
            if self.released != self.read {
                self.release();
            }
            if closed {
                return Err(RingError::Closed);
            }
            // The producer stores its position before its closed flag: after seeing the flag,
            // one more load of the position sees everything it wrote.
            if self.region.header().producer.closed.load(Ordering::Acquire) == OPEN {
                return Ok(false);
            }
            closed = true;
        }
    }

    /// Publishes our read position and wakes a producer waiting for space.
    #[inline]
    fn release(&mut self) {
        let h = self.region.header();
        // SYNC POINT space: pairs with the Acquire load in `Producer::refresh`.
        h.consumer.pos.store(self.read, Ordering::Release);
        self.released = self.read;
        notify(&self.futex, &h.space_bell);
    }

    /// Publishes our read position once an eighth of the ring has been read since the last
    /// time, or once we have read all we know of; `refresh` publishes the rest when it finds
    /// the ring empty.
    #[inline]
    fn release_some(&mut self) {
        // Also when we have caught up with everything we know was written: an idle ring is
        // seen empty by the producer at once.
        if self.read == self.write_cache || self.read - self.released >= self.region.capacity() / 8
        {
            self.release();
        }
    }

    /// Locates and validates the next non-padding record, if any is published.
    fn next_record(&mut self) -> Result<Option<Record>, RingError> {
        let cap = self.region.capacity();
        loop {
            if self.read == self.write_cache && !self.refresh()? {
                return Ok(None);
            }
            let avail = self.write_cache - self.read;
            let offset = self.read & (cap - 1);
            let contig = cap - offset;
            debug_assert!(avail >= RECORD_HEADER && offset.is_multiple_of(8));
            // SAFETY: `offset` is 8-aligned (positions are validated as multiples of 8) and
            // below the capacity, so the 8-byte header is in bounds; the producer published
            // it (`avail >= 8`).
            let word = unsafe { self.region.data().read_word(offset) };
            let (len, raw_kind) = layout::decode(word);
            let kind = Kind::from_u32(raw_kind).ok_or(Violation::Kind {
                kind: raw_kind,
                offset,
            })?;
            let room = avail.min(contig);
            if kind == Kind::Padding {
                if u64::from(len) + RECORD_HEADER != contig || avail < contig {
                    return Err(Violation::Overrun { len, offset, room }.into());
                }
                self.read += contig;
                // Hand the tail back at once: the producer may be waiting for exactly it.
                self.release();
                continue;
            }
            if record_len(u64::from(len)) > room {
                return Err(Violation::Overrun { len, offset, room }.into());
            }
            return Ok(Some(Record {
                kind,
                payload: offset + RECORD_HEADER,
                len,
            }));
        }
    }

    /// Consumes records until a message is complete. With `out`, the message is copied there
    /// and `Some(Place::Copied)` returned; without, a whole record is left in place (not yet
    /// consumed) and a reassembled one left in `self.assembly`.
    fn step(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<Option<Place>, RingError> {
        loop {
            let Some(rec) = self.next_record()? else {
                return Ok(None);
            };
            let len = rec.len as usize;
            let end = self.read + record_len(u64::from(rec.len));
            let data = self.region.data();
            match (rec.kind, self.assembling) {
                (Kind::Whole, None) => {
                    if len > self.max_message_len {
                        return Err(Violation::TooLarge {
                            len: len as u64,
                            max: self.max_message_len,
                        }
                        .into());
                    }
                    let Some(out) = out.as_deref_mut() else {
                        return Ok(Some(Place::Ring {
                            payload: rec.payload,
                            len,
                            end,
                        }));
                    };
                    out.clear();
                    // SAFETY: `next_record` checked the record lies within the published,
                    // contiguous bytes.
                    unsafe { data.read_append(rec.payload, len, out) };
                    self.read = end;
                    self.release_some();
                    return Ok(Some(Place::Copied));
                }
                (Kind::First, None) => {
                    if len < 8 {
                        return Err(Violation::Overrun {
                            len: rec.len,
                            offset: rec.payload - 8,
                            room: 8,
                        }
                        .into());
                    }
                    let mut total = [0u8; 8];
                    // SAFETY: `len >= 8` bytes of payload are in bounds, as above.
                    unsafe { data.read(rec.payload, &mut total) };
                    let total = u64::from_ne_bytes(total);
                    if total > self.max_message_len as u64 {
                        return Err(Violation::TooLarge {
                            len: total,
                            max: self.max_message_len,
                        }
                        .into());
                    }
                    if (len - 8) as u64 > total {
                        return Err(Violation::Fragments { total }.into());
                    }
                    if self.assembly.capacity() > KEEP_ASSEMBLY_BELOW {
                        self.assembly = Vec::new();
                    } else {
                        self.assembly.clear();
                    }
                    // Only what arrived: the announced total is a peer's claim.
                    grow(
                        &mut self.assembly,
                        self.budget.as_deref(),
                        &mut self.charged,
                        len - 8,
                    )?;
                    // SAFETY: as above.
                    unsafe { data.read_append(rec.payload + 8, len - 8, &mut self.assembly) };
                    self.assembling = Some(total);
                }
                (Kind::Middle | Kind::Last, Some(total)) => {
                    let got = self.assembly.len() as u64 + len as u64;
                    let last = rec.kind == Kind::Last;
                    if got > total || (last && got != total) || (!last && got == total) {
                        return Err(Violation::Fragments { total }.into());
                    }
                    grow(
                        &mut self.assembly,
                        self.budget.as_deref(),
                        &mut self.charged,
                        len,
                    )?;
                    // SAFETY: as above.
                    unsafe { data.read_append(rec.payload, len, &mut self.assembly) };
                    if last {
                        // Complete: no longer a hostage, whatever happens to it next.
                        self.settle();
                        self.assembling = None;
                        self.read = end;
                        self.release();
                        return Ok(Some(match out.as_deref_mut() {
                            Some(out) => {
                                std::mem::swap(out, &mut self.assembly);
                                Place::Copied
                            }
                            None => Place::Assembled,
                        }));
                    }
                }
                (Kind::Abort, Some(_)) => {
                    self.settle();
                    self.assembling = None;
                    self.assembly.clear();
                }
                (kind, assembling) => {
                    let expected = if assembling.is_some() {
                        "middle-fragment, last-fragment or abort"
                    } else {
                        "whole-message or first-fragment"
                    };
                    return Err(Violation::Sequence {
                        found: kind_name(kind),
                        expected,
                    }
                    .into());
                }
            }
            self.read = end;
            self.release();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.settle();
        // Our position first, then the closed flag (PROTOCOL.md): a producer that sees us
        // closed also sees everything we read, as freed space.
        if self.failed.is_none() && self.released != self.read {
            self.release();
        }
        let h = self.region.header();
        if h.consumer.closed.load(Ordering::Relaxed) == OPEN {
            h.consumer.closed.store(CLOSED, Ordering::Release);
        }
        notify(&self.futex, &h.space_bell);
    }
}

/// Where a message read without copying lives.
enum Place {
    Copied,
    Ring { payload: u64, len: usize, end: u64 },
    Assembled,
}

#[cfg(not(loom))]
/// A message borrowed from a [`Consumer`]; it is consumed (its space handed back to the
/// producer) when the guard drops.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
/// tx.try_write(b"borrowed")?;
/// let guard: mmipc::ring::ReadGuard<'_> = rx.read_in_place(None)?;
/// assert_eq!(guard.len(), 8);
/// drop(guard); // hands the space back to the producer
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReadGuard<'a> {
    consumer: &'a mut Consumer,
    place: Place,
}

#[cfg(not(loom))]
impl std::ops::Deref for ReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.bytes(&self.place)
    }
}

#[cfg(not(loom))]
impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if let Place::Ring { end, .. } = self.place {
            self.consumer.read = end;
            self.consumer.release_some();
        }
    }
}

#[cfg(not(loom))]
impl std::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("len", &self.len())
            .finish()
    }
}

/// A second handle on a ring's shared header, for the thread that supervises connections:
/// it bumps heartbeats, reads the peer's, and closes a side on behalf of a peer found dead
/// (waking whoever is parked). It never touches the data area.
#[cfg(not(loom))]
pub(crate) struct RingControl {
    region: Region,
}

#[cfg(not(loom))]
impl RingControl {
    pub(crate) fn new(region: Region) -> RingControl {
        RingControl { region }
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
        self.region.header().producer.closed.load(Ordering::Acquire) != OPEN
    }

    /// Whether the consumer side is closed (normally or after a violation).
    pub(crate) fn consumer_closed(&self) -> bool {
        self.region.header().consumer.closed.load(Ordering::Acquire) != OPEN
    }

    /// Whether either side closed because it found a protocol violation.
    pub(crate) fn violated(&self) -> bool {
        let h = self.region.header();
        h.producer.closed.load(Ordering::Acquire) == VIOLATED
            || h.consumer.closed.load(Ordering::Acquire) == VIOLATED
    }

    /// Marks the consumer side closed (its process died or hung) and wakes a parked producer.
    pub(crate) fn close_consumer_side(&self) {
        let h = self.region.header();
        let _ =
            h.consumer
                .closed
                .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire);
        notify(&self.region.futex(), &h.space_bell);
    }

    /// Marks the producer side closed (its process died or hung); the caller wakes the
    /// consumer's doorbell.
    pub(crate) fn close_producer_side(&self) {
        let h = self.region.header();
        let _ =
            h.producer
                .closed
                .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire);
        notify(&self.region.futex(), &h.data_bell);
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
