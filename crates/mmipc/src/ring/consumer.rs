//! The reading end: [`Consumer`], its in-place [`ReadGuard`], and reassembly of fragmented
//! messages under a shared [`Budget`]. It owns the read position and validates every
//! position, length, record kind and lap tag it reads before use. It learns of a record from
//! the record's header word (one cache line for a small message), and loads the producer's
//! position only when the header says nothing is there, in one empty read of 64 and after a
//! close (to tell an empty ring from a closed or corrupt one); a waiter polls only the header
//! and the closed flag. It must not write the data area (only the consumer's side of
//! the header) nor trust anything the producer wrote.

use std::time::Instant;

use super::control::RingControl;
use super::error::{RingError, Violation};
use super::layout::{self, ALIGN, CLOSED, Kind, OPEN, RECORD_HEADER, VIOLATED, record_len};
use super::region::Region;
use super::wait::{WaitError, WaitStrategy, notify, wait_until};
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
    pub(super) region: Region,
    strategy: WaitStrategy,
    /// Our read position (authoritative; the shared copy is only published).
    pub(super) read: u64,
    /// The read position last published to the producer. Whole messages are handed back in
    /// batches of an eighth of the ring, and everything as soon as we find no more data, so
    /// that a producer spinning on a full ring does not pull our cache line once per message.
    released: u64,
    /// The producer's write position as last loaded and validated. It may be behind `read`:
    /// the producer stores a record's header before its position, and the reader follows
    /// headers.
    write_cache: u64,
    max_message_len: usize,
    /// Reads that found nothing (see `refresh`).
    empty_reads: u32,
    /// Fragments of the message being reassembled, and its announced total. The buffer
    /// grows with what arrives, never by what a peer announces.
    pub(super) assembly: Vec<u8>,
    assembling: Option<u64>,
    /// The group's reassembly budget, and how much of it this consumer holds.
    budget: Option<std::sync::Arc<Budget>>,
    charged: u64,
    failed: Option<RingError>,
    /// A complete message located by `prepare` and not yet handed out.
    staged: Option<Place>,
    /// Run after a ring of the space bell when the producer listens on a pipe
    /// (`space_listen`): writes the publisher's wake-up pipe.
    space_hook: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

/// One record located and validated by [`Consumer::next_record`].
struct Record {
    kind: Kind,
    /// Offset of the payload in the data area.
    payload: u64,
    len: u32,
}

impl Consumer {
    pub(super) fn new(region: Region) -> Consumer {
        Consumer {
            region,
            strategy: WaitStrategy::default(),
            read: 0,
            released: 0,
            write_cache: 0,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            empty_reads: 0,
            assembly: Vec::new(),
            assembling: None,
            budget: None,
            charged: 0,
            failed: None,
            staged: None,
            space_hook: None,
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
        if self.staged.is_some() {
            if let Some(guard) = self.take_staged() {
                out.clear();
                out.extend_from_slice(&guard);
            }
            return Ok(true);
        }
        self.check_usable()?;
        if let Some(Place::Ring { payload, len, end }) = self.whole_here() {
            out.clear();
            // SAFETY: `whole_here` checked that the record is published and lies within the
            // data area, contiguous.
            unsafe { self.region.data().read_append(payload, len, out) };
            self.read = end;
            self.release_some();
            return Ok(true);
        }
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

    /// Locates the next complete message without consuming it, so that a caller can look at
    /// it ([`Consumer::staged`]) before taking it ([`Consumer::try_read_in_place`] then hands
    /// it out without searching again). Returns whether one is ready.
    pub(crate) fn prepare(&mut self) -> Result<bool, RingError> {
        if self.staged.is_some() {
            return Ok(true);
        }
        self.check_usable()?;
        if let Some(place) = self.whole_here() {
            self.staged = Some(place);
            return Ok(true);
        }
        match self.step(None) {
            Ok(place) => {
                self.staged = place;
                Ok(self.staged.is_some())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Rejects the ring's content for a check the layer above made (the ring knows no such
    /// rules): nothing more is read from it, every later call fails with
    /// [`RingError::Rejected`], and the producer sees the ring `VIOLATED`.
    pub(crate) fn reject(&mut self) {
        let _ = self.fail(RingError::Rejected);
    }

    /// The message located by [`Consumer::prepare`], if any, without taking it.
    pub(crate) fn staged(&self) -> Option<&[u8]> {
        self.staged.as_ref().map(|place| self.bytes(place))
    }

    fn take_staged(&mut self) -> Option<ReadGuard<'_>> {
        let place = self.staged.take()?;
        Some(ReadGuard {
            consumer: self,
            place,
            prompt: false,
        })
    }

    fn bytes(&self, place: &Place) -> &[u8] {
        match *place {
            Place::Ring { payload, len, .. } => {
                // SAFETY: validated by `next_record` to lie within the data area, contiguous
                // and published (its header, loaded with Acquire, carried this lap's tag);
                // the producer will not reuse the bytes before they are released (the staged
                // or guarded message holds `self.read` back).
                unsafe { self.region.data().slice(payload, len) }
            }
            Place::Assembled | Place::Copied => &self.assembly,
        }
    }

    /// Whether a read might make progress now: unread bytes are published, or the ring is
    /// closed or failed (so a read would report it). Never blocks.
    pub(crate) fn poll(&mut self) -> bool {
        if self.staged.is_some() || self.failed.is_some() || self.more_known() {
            return true;
        }
        !matches!(self.refresh(false), Ok(false))
    }

    /// Whether we know of a record at our read position: its header says it is published
    /// (not validated yet), or the producer's position as last loaded is past it.
    #[inline]
    fn more_known(&self) -> bool {
        if self.write_cache.wrapping_sub(self.read) as i64 > 0 {
            return true;
        }
        let cap = self.region.capacity();
        // SAFETY: `read` is a multiple of 8 (every record length is), so the 8-byte word at
        // its offset, below the capacity, is in bounds.
        // SYNC POINT data: pairs with the Release store in `Producer::put`.
        let word = unsafe { self.region.data().load_header(self.read & (cap - 1)) };
        layout::published(word, self.read, cap)
    }

    /// A handle on the shared header for a supervising thread (heartbeats, liveness).
    pub(crate) fn control(&self) -> RingControl {
        RingControl::new(self.region.share())
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
        if let RingError::Violation(_) | RingError::Rejected = err {
            h.consumer.closed.store(VIOLATED, Ordering::Release);
            self.wake_producer();
        }
        self.failed = Some(err.clone());
        err
    }

    fn wait_for_data(&mut self, deadline: Option<Instant>) -> Result<(), RingError> {
        let strategy = self.strategy;
        let region = self.region.share();
        let result = wait_until(
            region.futex(),
            &region.header().data_bell,
            strategy,
            deadline,
            || {
                if self.more_known() {
                    return Ok(true);
                }
                self.refresh(false)
            },
        );
        match result {
            Ok(()) => Ok(()),
            Err(WaitError::TimedOut) => Err(RingError::Timeout),
            Err(WaitError::Failed(e)) => Err(self.fail(e)),
        }
    }

    /// Looks at the producer's side after the header at our read position showed nothing
    /// there. `Ok(true)` if a record is there after all (or the producer's position says so:
    /// the caller then requires its header), `Ok(false)` if not, `Err(Closed)` if not and
    /// the producer closed.
    ///
    /// With `position` (a read), the producer's position is loaded and validated too, once
    /// in 64 such reads. A waiter's look skips it: it reads only the closed flag, on a line
    /// nobody writes while the ring is open, so that spinning on a ring pulls the next
    /// record's header line and nothing else. After a close the position is always loaded.
    fn refresh(&mut self, position: bool) -> Result<bool, RingError> {
        if position {
            // One read in 64 that finds nothing loads the position too (the first one
            // included): it is validated, and a position covering a record whose header is
            // not there is caught, without pulling the producer's busy line on every read.
            self.empty_reads = self.empty_reads.wrapping_add(1);
            if self.empty_reads % 64 == 1 && self.load_position()? {
                return Ok(true);
            }
        }
        // Nothing left to read: hand back everything we held, before anyone waits.
        if self.released != self.read {
            self.release();
        }
        // SYNC POINT close: pairs with the Release store of the flag in `Producer::drop` (or
        // `RingControl::close_producer_side`); the producer stores its headers and position
        // before its flag.
        if self.region.header().producer_closed.load(Ordering::Acquire) == OPEN {
            return Ok(false);
        }
        if self.load_position()? || self.more_known() {
            return Ok(true);
        }
        Err(RingError::Closed)
    }

    /// Loads and validates the producer's position; whether it is past our read position.
    /// It must be aligned, never go backwards, and stay within a capacity of our position
    /// either way: it may lag behind what we read through headers (the producer stores a
    /// record's header before its position), and after a close too (a producer that died
    /// between the two).
    fn load_position(&mut self) -> Result<bool, RingError> {
        let cap = self.region.capacity();
        // SYNC POINT position: pairs with the Release store in `Producer::commit`.
        let write = self.region.header().producer.pos.load(Ordering::Acquire);
        let ahead = write.wrapping_sub(self.read) as i64;
        let forward = write.wrapping_sub(self.write_cache) as i64 >= 0;
        if !write.is_multiple_of(ALIGN) || !forward || ahead.unsigned_abs() > cap {
            return Err(Violation::Position {
                ours: self.read,
                theirs: write,
                capacity: cap,
            }
            .into());
        }
        self.write_cache = write;
        Ok(ahead > 0)
    }

    /// Publishes our read position and wakes a producer waiting for space.
    #[inline]
    fn release(&mut self) {
        let h = self.region.header();
        // SYNC POINT space: pairs with the Acquire load in `Producer::refresh`.
        h.consumer.pos.store(self.read, Ordering::Release);
        self.released = self.read;
        self.wake_producer();
    }

    /// Wakes a producer waiting for space: on the futex, and through the space hook if it
    /// listens on a pipe.
    #[inline]
    fn wake_producer(&self) {
        let h = self.region.header();
        // SYNC POINT wake: `space_listen` is stored before the producer registers and
        // fences; loaded here after `notify`'s fence saw the registration.
        if notify(self.region.futex(), &h.space_bell)
            && h.space_listen.load(Ordering::Relaxed) != 0
            && let Some(hook) = &self.space_hook
        {
            hook();
        }
    }

    /// Sets what to run after a ring of the space bell when the producer listens on a pipe.
    pub(crate) fn set_space_hook(&mut self, hook: std::sync::Arc<dyn Fn() + Send + Sync>) {
        self.space_hook = Some(hook);
    }

    /// Publishes our read position once an eighth of the ring has been read since the last
    /// time, or once we have read all there is; `refresh` publishes the rest when it finds
    /// the ring empty.
    #[inline]
    fn release_some(&mut self) {
        // Also when the next record is not there (a look at the header word we would load
        // next anyway): an idle ring is seen empty by the producer at once.
        if self.read - self.released >= self.region.capacity() / 8 || !self.more_known() {
            self.release();
        }
    }

    /// The fast path of a read: the record at our read position is a published whole
    /// message (its header carries this lap's tag) that lies within the data area and the
    /// room, and within the size limit. `None` for anything else (nothing there, padding, a
    /// fragment, a record that fails a check): the general path (`step`) then reads the
    /// header again and handles or reports it.
    #[inline]
    fn whole_here(&self) -> Option<Place> {
        if self.assembling.is_some() {
            return None; // a whole record there would be out of sequence
        }
        let cap = self.region.capacity();
        let offset = self.read & (cap - 1);
        // SAFETY: `read` is a multiple of 8 (every record length is), so the 8-byte word at
        // its offset, below the capacity, is in bounds.
        // SYNC POINT data: pairs with the Release store in `Producer::put`.
        let word = unsafe { self.region.data().load_header(offset) };
        let (len, kind, tag) = layout::decode(word);
        let span = record_len(u64::from(len));
        if kind != Kind::Whole as u32
            || tag != layout::lap_tag(self.read, cap)
            || span > cap - offset
            || self.read + span > self.released + cap
            || len as usize > self.max_message_len
        {
            return None;
        }
        Some(Place::Ring {
            payload: offset + RECORD_HEADER,
            len: len as usize,
            end: self.read + span,
        })
    }

    /// Locates and validates the next non-padding record, if any is published.
    ///
    /// The record's header word says whether it is published (its lap tag is this lap's and
    /// it is not an empty slot); only when it says no is the producer's position loaded, to
    /// tell "nothing yet" and "closed" apart, and to catch a producer whose position covers a
    /// record whose header is not there (a violation).
    fn next_record(&mut self) -> Result<Option<Record>, RingError> {
        let cap = self.region.capacity();
        loop {
            let offset = self.read & (cap - 1);
            let contig = cap - offset;
            debug_assert!(offset.is_multiple_of(ALIGN));
            // SAFETY: `offset` is 8-aligned (every record length is a multiple of 8) and
            // below the capacity, so the 8-byte word is in bounds.
            // SYNC POINT data: pairs with the Release store in `Producer::put`.
            let word = unsafe { self.region.data().load_header(offset) };
            if !layout::published(word, self.read, cap) {
                if self.write_cache.wrapping_sub(self.read) as i64 > 0 {
                    // The producer's position covers a record here, and the header that it
                    // stored before that position is not here.
                    let (_, _, tag) = layout::decode(word);
                    return Err(Violation::Unpublished {
                        offset,
                        tag,
                        expected: layout::lap_tag(self.read, cap),
                    }
                    .into());
                }
                if !self.refresh(true)? {
                    return Ok(None);
                }
                continue; // the position moved past us: the header must be there now
            }
            let (len, raw_kind, _) = layout::decode(word);
            let kind = Kind::from_u32(raw_kind).ok_or(Violation::Kind {
                kind: raw_kind,
                offset,
            })?;
            // A record never passes the end of the data area, nor goes a capacity past what we
            // handed back (the producer writes only there).
            let room = contig.min((self.released + cap).saturating_sub(self.read));
            if kind == Kind::Padding {
                if u64::from(len) + RECORD_HEADER != contig || contig > room {
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
                    // SAFETY: `next_record` checked that the record is published and lies
                    // within the data area, contiguous.
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
        // Never over another value (a violation, an eviction) written meanwhile.
        let _ = self.region.header().consumer.closed.compare_exchange(
            OPEN,
            CLOSED,
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.wake_producer();
    }
}

/// Where a message read without copying lives.
enum Place {
    Copied,
    Ring { payload: u64, len: usize, end: u64 },
    Assembled,
}

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
    /// Publish the read position as soon as the guard drops, not in a batch.
    prompt: bool,
}

impl ReadGuard<'_> {
    /// Makes the drop of this guard publish the read position at once (not in a batch of an
    /// eighth of the ring): for a message whose release frees more than its ring space (a
    /// descriptor holding a block of the publisher's payload segment).
    pub(crate) fn release_promptly(&mut self) {
        self.prompt = true;
    }
}

impl std::ops::Deref for ReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.bytes(&self.place)
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if let Place::Ring { end, .. } = self.place {
            self.consumer.read = end;
            if self.prompt {
                self.consumer.release();
            } else {
                self.consumer.release_some();
            }
        }
    }
}

impl std::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("len", &self.len())
            .finish()
    }
}
