//! The writing end: [`Producer`] and its in-place [`WriteGuard`]. It owns the write
//! position, plans records with `layout::plan`, copies bytes in through `region::Data` and
//! publishes each record by storing its header word last, with Release (`put`), then its
//! position. It must not read the data area (only the consumer's published position, which
//! it validates) nor touch the consumer's side of the header except to read.

use std::time::Instant;

use super::check_position;
use super::control::RingControl;
use super::error::RingError;
use super::layout::{
    CLOSED, Kind, OPEN, RECORD_HEADER, Step, VIOLATED, encode, lap_tag, plan, record_len,
};
use super::region::SharedBell;
use super::region::{self, Region};
use super::wait::{WaitError, WaitStrategy, notify, wait_until};
use crate::sync::Ordering;

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
    pub(super) region: Region,
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

    /// Moves past the first `n` bytes.
    fn skip(&mut self, mut n: usize) {
        while n > 0 && self.part < self.parts.len() {
            let take = (self.parts[self.part].len() - self.offset).min(n);
            self.offset += take;
            n -= take;
            if self.offset == self.parts[self.part].len() {
                self.part += 1;
                self.offset = 0;
            }
        }
        self.skip_empty();
    }

    fn skip_empty(&mut self) {
        while self.part < self.parts.len() && self.parts[self.part].len() == self.offset {
            self.part += 1;
            self.offset = 0;
        }
    }
}

/// Longest spin of [`Producer::wait_consumed`] before it parks (under a spin-then-park
/// strategy): it waits for a consumer to finish with a large message, which takes longer.
const RELEASE_SPIN: std::time::Duration = std::time::Duration::from_micros(2);

enum Blocking {
    /// All or nothing: the whole message fits now, or `Full` and nothing is written.
    No,
    Until(Option<Instant>),
    /// Write what fits now, never wait (a message written over several calls).
    #[cfg_attr(not(all(any(unix, windows), feature = "tokio")), allow(dead_code))]
    Partial,
}

impl Producer {
    pub(super) fn new(region: Region) -> Producer {
        Producer {
            region,
            strategy: WaitStrategy::default(),
            write: 0,
            read_cache: 0,
            abort_pending: false,
            failed: None,
            staging: Vec::new(),
            doorbell: None,
        }
    }

    /// Rings `bell` instead of the ring's own data bell whenever data is published or the
    /// producer closes: for a consumer that waits on one bell for many rings.
    pub(crate) fn set_doorbell(&mut self, bell: SharedBell) {
        self.doorbell = Some(bell);
    }

    /// Wakes the consumer if it sleeps waiting for data, on the doorbell if one is set, else
    /// on the ring's own data bell.
    #[inline]
    fn wake_consumer(&self) {
        match &self.doorbell {
            Some(b) => {
                if notify(b.futex(), b.bell()) {
                    b.rang();
                }
            }
            None => {
                notify(self.region.futex(), &self.region.header().data_bell);
            }
        }
    }

    /// A handle on the shared header for a supervising thread (heartbeats, liveness).
    pub(crate) fn control(&self) -> RingControl {
        RingControl::new(self.region.share())
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

    /// Writes what fits now of the message `parts`, of which `*done` bytes were written by
    /// earlier calls, and never waits: for a writer that waits for room elsewhere (an async
    /// publish). `Ok` once the message is complete; [`RingError::Full`] when it needs room,
    /// with `*done` advanced past what was written (a message whose record fits in half the
    /// ring is written whole or not at all; larger ones go in fragments). A caller that gives
    /// up on a message with `*done > 0` must call [`Producer::abandon`].
    #[cfg_attr(not(all(any(unix, windows), feature = "tokio")), allow(dead_code))]
    pub(crate) fn write_some(&mut self, parts: &[&[u8]], done: &mut u64) -> Result<(), RingError> {
        self.send_from(parts, Blocking::Partial, done)
    }

    /// Writes the rest of a message that [`Producer::write_some`] began (`*done` bytes
    /// written), waiting for room until `deadline` (`None`: for ever).
    pub(crate) fn write_rest(
        &mut self,
        parts: &[&[u8]],
        done: &mut u64,
        deadline: Option<Instant>,
    ) -> Result<(), RingError> {
        self.send_from(parts, Blocking::Until(deadline), done)
    }

    /// Gives up a message that [`Producer::write_some`] left half written: the consumer
    /// drops its fragments (an abort record precedes the next message).
    pub(crate) fn abandon(&mut self, done: u64) {
        if done > 0 {
            self.abort_pending = true;
        }
    }

    /// Registers (or unregisters) a waiter for room on the space bell, for a writer that
    /// waits elsewhere (an async publish): while registered, the consumer rings the bell and
    /// runs its space hook whenever it frees room (the caller re-checks after registering).
    pub(crate) fn register_space_waiter(&self, on: bool) {
        let bell = &self.region.header().space_bell;
        if on {
            bell.waiters.fetch_add(1, Ordering::Relaxed);
            // SYNC POINT wake: pairs with the fence in `notify` (the caller re-checks next).
            crate::sync::fence(Ordering::SeqCst);
        } else {
            bell.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The write position: the ring position just after everything written so far. Once
    /// [`Producer::consumed`] reaches it, the consumer has read and released all of it.
    pub(crate) fn position(&self) -> u64 {
        self.write
    }

    /// The consumer's published read position, reloaded (everything before it was read and
    /// handed back).
    ///
    /// # Errors
    /// As [`Producer::write`]: the consumer left, or corrupted its position.
    pub(crate) fn consumed(&mut self) -> Result<u64, RingError> {
        self.check_usable()?;
        self.refresh()?;
        Ok(self.read_cache)
    }

    /// Waits until the consumer's published read position reaches `pos` (a position this
    /// producer wrote up to), as the wait strategy says, until `deadline` (`None`: for ever).
    ///
    /// # Errors
    /// [`RingError::Timeout`] at the deadline, else as [`Producer::consumed`].
    pub(crate) fn wait_consumed(
        &mut self,
        pos: u64,
        deadline: Option<Instant>,
    ) -> Result<(), RingError> {
        debug_assert!(pos <= self.write);
        if self.consumed()? >= pos {
            return Ok(());
        }
        // The consumer is reading a large message: worth a short spin at most.
        let strategy = match self.strategy {
            WaitStrategy::SpinThenPark(spin) => WaitStrategy::SpinThenPark(spin.min(RELEASE_SPIN)),
            other => other,
        };
        self.wait_on_space_bell(strategy, deadline, |p| {
            p.refresh()?;
            Ok(p.read_cache >= pos)
        })
    }

    /// Waits on the space bell (the consumer rings it when it hands back room) until `ready`
    /// holds or `deadline` passes.
    fn wait_on_space_bell(
        &mut self,
        strategy: WaitStrategy,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Producer) -> Result<bool, RingError>,
    ) -> Result<(), RingError> {
        let region = self.region.share();
        let result = wait_until(
            region.futex(),
            &region.header().space_bell,
            strategy,
            deadline,
            || ready(self),
        );
        match result {
            Ok(()) => Ok(()),
            Err(WaitError::TimedOut) => Err(RingError::Timeout),
            Err(WaitError::Failed(e)) => Err(e),
        }
    }

    /// Windows: the space bell's named event, set when the consumer frees room for a
    /// registered waiter (what an async publish waits on).
    #[cfg(all(windows, feature = "tokio", not(loom)))]
    pub(crate) fn space_listener(&self) -> Option<crate::sys::Listener> {
        self.region
            .futex()
            .listener(&self.region.header().space_bell.seq)
    }

    /// Asks the consumer to run its space hook after every ring of the space bell (set
    /// once by a writer that waits on a wake-up pipe).
    #[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))]
    pub(crate) fn listen_for_space(&self) {
        self.region.header().space_listen.store(1, Ordering::SeqCst);
    }

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
                Blocking::No | Blocking::Partial => None,
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
            h.producer_closed.store(VIOLATED, Ordering::Release);
            self.wake_consumer();
        }
        self.failed = Some(err.clone());
        err
    }

    fn send(&mut self, parts: &[&[u8]], blocking: Blocking) -> Result<(), RingError> {
        self.send_from(parts, blocking, &mut 0)
    }

    /// Writes the message `parts` from byte `*done` on (what earlier calls wrote),
    /// advancing `*done` as records are written.
    fn send_from(
        &mut self,
        parts: &[&[u8]],
        blocking: Blocking,
        done: &mut u64,
    ) -> Result<(), RingError> {
        self.check_usable()?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let cap = self.region.capacity();
        // The fast path: a whole record that fits in the contiguous free space as last seen
        // (what `plan` decides first), nothing to resume and no abort owed.
        let span = record_len(total as u64);
        let off = self.write & (cap - 1);
        if *done == 0
            && !self.abort_pending
            && span <= cap - off
            && span <= cap - (self.write - self.read_cache)
        {
            let data = self.region.data();
            let mut at = off + RECORD_HEADER;
            for part in parts {
                // SAFETY: the record's `span` bytes from `off` are free and within the data
                // area (checked above); the parts add up to its payload.
                unsafe { data.write(at, part) };
                at += part.len() as u64;
            }
            self.put(Kind::Whole, total as u64, span);
            *done = total as u64;
            self.commit();
            return Ok(());
        }
        if let Blocking::No = blocking
            && !self.fits_now(total as u64)
            && (!self.refresh()? || !self.fits_now(total as u64))
        {
            return Err(RingError::Full);
        }
        debug_assert!(*done <= total as u64);
        let mut first = *done == 0;
        if first {
            // Never between the fragments of a message being resumed.
            self.flush_abort(&blocking)?;
        }
        let mask = cap - 1;
        let mut src = Gather {
            parts,
            part: 0,
            offset: 0,
        };
        src.skip(*done as usize);
        let mut remaining = total as u64 - *done;
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
                        if lead != 0 {
                            data.write(off + RECORD_HEADER, &(total as u64).to_ne_bytes());
                        }
                        src.copy_to(data, off + RECORD_HEADER + lead, chunk as usize);
                    }
                    src.skip_empty();
                    self.put(kind, chunk + lead, record_len(chunk + lead));
                    remaining -= chunk;
                    *done += chunk;
                    first = false;
                    self.commit();
                    if matches!(kind, Kind::Whole | Kind::Last) {
                        return Ok(());
                    }
                }
                Step::Pad => self.pad(),
                Step::Wait => {
                    debug_assert!(!matches!(blocking, Blocking::No), "fits_now was wrong");
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
                // 8 free bytes at the write position (8-aligned, so they are contiguous).
                self.put(Kind::Abort, 0, RECORD_HEADER);
                self.commit();
                self.abort_pending = false;
            } else {
                // Reloads the consumer's position first (a `Partial` writer resuming after
                // room appeared relies on it), then `Full` unless `blocking` says wait.
                self.wait_for_space(blocking)?;
            }
        }
        Ok(())
    }

    /// Fills the tail of the data area with a padding record (its header is published; the
    /// position is stored by the next `commit`).
    fn pad(&mut self) {
        let cap = self.region.capacity();
        let contig = cap - (self.write & (cap - 1));
        // `plan` returns `Pad` only when the whole tail is free.
        self.put(Kind::Padding, contig - RECORD_HEADER, contig);
    }

    /// Publishes the record of `kind` at the write position, `span` bytes long with a
    /// `len`-byte payload already written (none for padding, whose payload is just skipped),
    /// and advances the write position past it. The record must lie in free space.
    ///
    /// The header word goes last, with Release, and carries the record's lap tag: a reader
    /// polling it sees either an older word or the whole record. First, the slot where the
    /// *next* record's header will go is emptied if it is free, so that nothing there (a
    /// payload of an earlier lap) can pass for that header; if it is not free, it is the
    /// header of the record the consumer has yet to release, one lap older than the next
    /// record's tag (docs/PROTOCOL.md, section 3).
    #[inline]
    fn put(&mut self, kind: Kind, len: u64, span: u64) {
        let cap = self.region.capacity();
        let off = self.write & (cap - 1);
        let next = self.write + span;
        debug_assert!(next - self.read_cache <= cap && off + span <= cap);
        let data = self.region.data();
        if next + RECORD_HEADER <= self.read_cache + cap {
            // SAFETY: `next` is 8-aligned and its 8 bytes are free (checked just above).
            unsafe { data.clear_header(next & (cap - 1)) };
        }
        let payload = if kind == Kind::Padding { 0 } else { len };
        // SAFETY: the record lies in free space (the caller's contract, from `plan`); `off` is
        // 8-aligned.
        // SYNC POINT data: pairs with the Acquire load in `Consumer::next_record`.
        unsafe {
            data.store_header(
                off,
                encode(len as u32, kind, lap_tag(self.write, cap)),
                payload,
            )
        };
        self.write = next;
    }

    /// Publishes the write position (every record's header is already published) and wakes
    /// a parked consumer.
    #[inline]
    fn commit(&mut self) {
        let h = self.region.header();
        // SYNC POINT position: pairs with the Acquire load in `Consumer::refresh`.
        h.producer.pos.store(self.write, Ordering::Release);
        self.wake_consumer();
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
            Blocking::Partial => {
                // Padding written before the wait: its position too.
                self.commit();
                return Err(RingError::Full);
            }
            Blocking::Until(d) => *d,
        };
        // Publish the position (pending padding's too) and wake the consumer before sleeping.
        self.commit();
        self.wait_on_space_bell(self.strategy, deadline, Producer::refresh)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let h = self.region.header();
        // Our position first (padding may be published by its header only), then the closed
        // flag (PROTOCOL.md): a consumer that sees us closed sees everything we wrote.
        h.producer.pos.store(self.write, Ordering::Release);
        if h.producer_closed.load(Ordering::Relaxed) == OPEN {
            h.producer_closed.store(CLOSED, Ordering::Release);
        }
        self.wake_consumer();
    }
}

enum Target {
    InPlace { len: usize },
    Staged(Option<Option<Instant>>),
}

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
                // `reserve_with` checked that a whole record of `len` fits at the write
                // position; the payload was filled in place.
                p.put(Kind::Whole, len as u64, record_len(len as u64));
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
