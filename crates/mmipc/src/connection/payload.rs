//! One-copy payloads: a publisher writes a large message once into its **payload segment**
//! (`pub-<id>.pay`, beside its rings) and sends each subscriber, through its ring, a small
//! **descriptor** naming the block; subscribers read the block in place or copy it. Owns the
//! segment's layout, the publisher's allocator and reference counts, the descriptor's
//! encoding and the subscriber's validation of it (as `framing` does for inline frames). It
//! must not write rings nor decide policy (that is the publisher's): it only says whether a
//! block could be had.
//!
//! Layout (little-endian): a 64-byte file header (`MAGIC`, `VERSION`), then blocks, each
//! 64-aligned: a 64-byte block header (`seq` of the message occupying it, its `len`), then
//! the payload. A descriptor is the frame `[seq | DESCRIPTOR_FLAG][offset][len]` (24 bytes):
//! the sequence number with its top bit set (real sequence numbers never reach 2^63), the
//! block's offset in the file and the payload length.
//!
//! **Reuse.** A block is reused only once every subscriber that was sent its descriptor has
//! released it: rings are read in order, so the consumer's published read position passing
//! the end of the descriptor's record is that release (the subscriber publishes it as soon as
//! it drops the message). The publisher keeps, per connection, the ring position after each
//! descriptor it wrote and a reference count per block (`PayloadOut::hold` / `release`).
//! A connection that ends (crash, close, time-out) parks what it held: each block is freed
//! once its subscriber's read position passes it, or all of them once the subscriber is gone
//! (its lock free; probed when blocks run short), because a subscriber judged hung may still
//! be reading one in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::ring::MappedBytes;
use crate::sys;

/// Set in a frame's sequence number: the frame is a descriptor, not an inline payload.
pub(crate) const DESCRIPTOR_FLAG: u64 = 1 << 63;
/// Bytes of a descriptor after the frame header: offset and length.
pub(crate) const DESCRIPTOR_LEN: usize = 16;
/// The file header, before the first block.
const FILE_HEADER: u64 = 64;
/// Before each payload: `seq`, `len`, zeroes. Also the alignment of blocks and payloads.
pub(crate) const BLOCK_HEADER: u64 = 64;
const MAGIC: u64 = u64::from_le_bytes(*b"MMIPCPAY");
const VERSION: u64 = 1;
/// The file is backed by the file system in steps of at least this many bytes.
const RESERVE_STEP: u64 = 1 << 20;
/// Largest payload segment a subscriber maps (a bound on what a peer's file can make us map).
pub(crate) const MAX_CAPACITY: u64 = 1 << 40;

/// Bytes a block for a `len`-byte payload takes: header and payload, rounded up to 64.
pub(crate) fn block_size(len: u64) -> u64 {
    (BLOCK_HEADER + len).div_ceil(BLOCK_HEADER) * BLOCK_HEADER
}

/// First-fit allocator of 64-byte-aligned extents of the segment's block area, lowest
/// address first (so that the pages in use stay few and warm). Private memory only: nothing
/// here is shared.
#[derive(Debug)]
pub(crate) struct Allocator {
    /// Free extents: start → length, never adjacent (they are merged).
    free: BTreeMap<u64, u64>,
    free_bytes: u64,
}

impl Allocator {
    /// An allocator of `capacity` bytes (a multiple of 64) starting at `base`.
    pub(crate) fn new(base: u64, capacity: u64) -> Allocator {
        debug_assert!(base.is_multiple_of(64) && capacity.is_multiple_of(64));
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(base, capacity);
        }
        Allocator {
            free,
            free_bytes: capacity,
        }
    }

    /// The start of a free extent of `size` bytes (a multiple of 64), now taken.
    pub(crate) fn alloc(&mut self, size: u64) -> Option<u64> {
        debug_assert!(size > 0 && size.is_multiple_of(64));
        if size > self.free_bytes {
            return None;
        }
        let (&start, &len) = self.free.iter().find(|&(_, &len)| len >= size)?;
        self.free.remove(&start);
        if len > size {
            self.free.insert(start + size, len - size);
        }
        self.free_bytes -= size;
        Some(start)
    }

    /// Gives back the extent `start..start + size` that [`Allocator::alloc`] returned.
    pub(crate) fn release(&mut self, start: u64, size: u64) {
        let (mut start, mut len) = (start, size);
        // Free extents are never adjacent: a follower starts exactly at our end.
        if let Some(next_len) = self.free.remove(&(start + size)) {
            len += next_len;
        }
        if let Some((&prev, &prev_len)) = self.free.range(..start).next_back()
            && prev + prev_len == start
        {
            start = prev;
            len += prev_len;
        }
        self.free.insert(start, len);
        self.free_bytes += size;
    }

    /// Free bytes in all (not necessarily contiguous).
    #[cfg(test)]
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free_bytes
    }
}

/// A block taken from a payload segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// Offset of the block header in the file.
    pub(crate) offset: u64,
    /// Payload bytes.
    pub(crate) len: u64,
}

impl Block {
    pub(crate) fn size(&self) -> u64 {
        block_size(self.len)
    }
}

/// The descriptors one connection was sent and its subscriber has not released yet, oldest
/// first, each with the ring position just after its record: once the subscriber's
/// published read position reaches that, it has finished with the block (it publishes its
/// position only after dropping the message, and rings are read in order).
#[derive(Debug, Default)]
pub(crate) struct Holdings {
    held: std::collections::VecDeque<(u64, Block)>,
    bytes: u64,
}

impl Holdings {
    /// A descriptor of `block` was written, ending at ring position `until`.
    pub(crate) fn push(&mut self, until: u64, block: Block) {
        self.held.push_back((until, block));
        self.bytes += block.size();
    }

    /// Lets go (through `release`) of every block whose descriptor the subscriber's read
    /// position `read` has passed.
    pub(crate) fn reclaim(&mut self, read: u64, mut release: impl FnMut(Block)) {
        while let Some(&(until, block)) = self.held.front()
            && until <= read
        {
            self.bytes -= block.size();
            release(block);
            self.held.pop_front();
        }
    }

    /// Lets go of everything: the connection ended (its subscriber crashed, left, or was
    /// judged hung and is told so by its closed ring).
    pub(crate) fn release_all(&mut self, release: impl FnMut(Block)) {
        self.held.drain(..).map(|(_, b)| b).for_each(release);
        self.bytes = 0;
    }

    /// Bytes of the blocks held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The ring position that releases the oldest block held.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.held.front().map(|&(until, _)| until)
    }
}

/// The publisher's payload segment: the mapping, the allocator and, per block in use, how
/// many connections hold its descriptor.
pub(crate) struct PayloadOut {
    /// What ended connections still held, kept until their subscriber released it or is gone.
    parked: Vec<Parked>,
    bytes: MappedBytes,
    path: PathBuf,
    /// Bytes of the file, from its start, the file system has backed (`sys::reserve_segment`):
    /// blocks are handed out only below it, so a write to them cannot fault on a full tmpfs.
    reserved: u64,
    alloc: Allocator,
    /// Blocks sent or being filled: offset → connections holding its descriptor. Looked up
    /// 2 + 2 × subscribers times per message, with keys we chose (our own offsets): a
    /// multiplicative hash, not SipHash, which cost ~8% of a 1→4 publisher's CPU.
    refs: FxHashMap<u64, u32>,
}

impl PayloadOut {
    /// Creates the segment at `path` with `capacity` bytes of blocks (rounded down to 64).
    /// The name stays when dropped: the publisher removes it at close unless a ring it leaves
    /// for a subscriber still needs it ([`crate::connection::segment::ring_outlives_publisher`]).
    pub(crate) fn create(path: &Path, capacity: u64, access: sys::Access) -> Result<PayloadOut> {
        let capacity = capacity / 64 * 64;
        let mut segment =
            sys::Segment::create_sparse(path, (FILE_HEADER + capacity) as usize, access)?;
        segment.keep_name();
        let bytes = MappedBytes::new(Arc::new(segment)).ok_or_else(|| Error::BadSegment {
            path: path.to_owned(),
            problem: "the mapping is not 64-aligned".into(),
        })?;
        // SAFETY: the 16 bytes are within the 64-byte file header, which only this publisher
        // writes (nobody reads the segment before a descriptor names a block of it).
        unsafe { bytes.data().write(0, &words(MAGIC, VERSION)) };
        Ok(PayloadOut {
            parked: Vec::new(),
            bytes,
            path: path.to_owned(),
            // `create_sparse` backed the first page (the header's).
            reserved: 4096,
            alloc: Allocator::new(FILE_HEADER, capacity),
            refs: FxHashMap::default(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of blocks in all.
    pub(crate) fn capacity(&self) -> u64 {
        self.bytes.len() - FILE_HEADER
    }

    /// Free bytes (not necessarily contiguous).
    pub(crate) fn free_bytes(&self) -> u64 {
        self.alloc.free_bytes
    }

    /// A block for a `len`-byte payload, if one is free now. It is ours alone until
    /// [`PayloadOut::hold`]s and [`PayloadOut::release`]s give it back, or
    /// [`PayloadOut::release`] is called once for the taker.
    pub(crate) fn try_alloc(&mut self, len: u64) -> Option<Block> {
        let size = block_size(len);
        let offset = self.alloc.alloc(size)?;
        if offset + size > self.reserved {
            // Backed in steps of at least 1 MiB, up to the end of the file.
            let end = (offset + size)
                .next_multiple_of(RESERVE_STEP)
                .min(self.bytes.len());
            if sys::reserve_segment(&self.path, self.reserved, end - self.reserved).is_err() {
                // No memory for it (a full tmpfs): the message goes inline.
                self.alloc.release(offset, size);
                return None;
            }
            self.reserved = end;
        }
        // The taker's reference.
        self.refs.insert(offset, 1);
        Some(Block { offset, len })
    }

    /// One more connection holds `block`'s descriptor.
    pub(crate) fn hold(&mut self, block: Block) {
        if let Some(r) = self.refs.get_mut(&block.offset) {
            *r += 1;
        }
    }

    /// One holder of `block` (a connection, or the taker) lets it go; the block is free
    /// once none holds it.
    pub(crate) fn release(&mut self, block: Block) {
        let Some(r) = self.refs.get_mut(&block.offset) else {
            debug_assert!(false, "released a free block");
            return;
        };
        *r -= 1;
        if *r == 0 {
            self.refs.remove(&block.offset);
            self.alloc.release(block.offset, block.size());
        }
    }

    /// Keeps what an ended connection held (`holdings`) until its subscriber has released it
    /// (`read()`, its published read position, passed it) or is gone (`alive()` is false):
    /// a subscriber judged hung may still hold a message in place when it resumes, and its
    /// bytes must not change under it; it may also drain the rest of the ring (the end of a
    /// connection is reported after its last message), and those blocks are parked too.
    pub(crate) fn park(
        &mut self,
        mut holdings: Holdings,
        read: impl Fn() -> u64 + Send + Sync + 'static,
        alive: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        holdings.reclaim(read(), |b| self.release(b));
        if holdings.oldest().is_some() {
            self.parked.push(Parked {
                holdings,
                read: Box::new(read),
                alive: Box::new(alive),
            });
        }
    }

    /// Lets go of parked blocks their subscribers released, and (with `probe`, which costs a
    /// lock probe per parked connection: when blocks are short) of those whose subscriber is
    /// gone.
    pub(crate) fn reclaim_parked(&mut self, probe: bool) {
        let mut parked = std::mem::take(&mut self.parked);
        parked.retain_mut(|p| {
            p.holdings.reclaim((p.read)(), |b| self.release(b));
            if probe && p.holdings.oldest().is_some() && !(p.alive)() {
                p.holdings.release_all(|b| self.release(b));
            }
            p.holdings.oldest().is_some()
        });
        parked.append(&mut self.parked);
        self.parked = parked;
    }

    /// Writes the block header of message `seq` and copies `parts` (`block.len` bytes in
    /// all) into `block`.
    pub(crate) fn fill(&mut self, block: Block, seq: u64, parts: &[&[u8]]) {
        let mut off = block.offset + BLOCK_HEADER;
        for part in parts {
            debug_assert!(off + part.len() as u64 <= block.offset + block.size());
            // SAFETY: `block` was allocated to us and is held by no connection that could
            // read it yet (its descriptor is sent after this); the parts add up to
            // `block.len`, so they stay within the block, within the mapping.
            unsafe { self.bytes.data().write(off, part) };
            off += part.len() as u64;
        }
        self.seal(block, seq);
    }

    /// Writes the block header of message `seq` (after the payload was filled in place).
    pub(crate) fn seal(&mut self, block: Block, seq: u64) {
        // SAFETY: the first 16 bytes of the block's header, inside the mapping; the block is
        // ours until its descriptor is sent.
        unsafe {
            self.bytes
                .data()
                .write(block.offset, &words(seq, block.len))
        };
    }

    /// Lends `block` (from [`PayloadOut::try_alloc`], not yet sent) to be filled in place.
    pub(crate) fn lend(&self, block: Block) -> Loaned {
        Loaned {
            bytes: self.bytes.share(),
            block,
        }
    }

    /// The payload of `block` (to copy it into a ring inline).
    pub(crate) fn payload(&self, block: Block) -> &[u8] {
        // SAFETY: within the block; only this publisher writes blocks, and not this one while
        // it is being sent.
        unsafe {
            self.bytes
                .data()
                .slice(block.offset + BLOCK_HEADER, block.len as usize)
        }
    }
}

/// A block lent to be filled in place (a publisher's loan): it keeps the segment mapped, and
/// its payload is the holder's alone until the block is sent (the holder gives the `Loaned`
/// up first) or given back.
pub(crate) struct Loaned {
    bytes: MappedBytes,
    block: Block,
}

impl Loaned {
    pub(crate) fn block(&self) -> Block {
        self.block
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the block lies within the mapping (allocated there), which `self.bytes`
        // keeps; nobody else reads or writes it before it is sent (see `bytes_mut`).
        unsafe {
            self.bytes
                .data()
                .slice(self.block.offset + BLOCK_HEADER, self.block.len as usize)
        }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: within the mapping, as above. Exclusive: the block was just allocated to
        // this loan (no descriptor of it exists, so no subscriber reads it and the publisher
        // writes it only through this `Loaned`); `&mut self` makes the borrow unique; the
        // publisher sends the block only after dropping the `Loaned`. (A hostile process
        // mapping the segment could write it anyway, as it could any shared memory.)
        unsafe {
            self.bytes
                .data()
                .slice_mut(self.block.offset + BLOCK_HEADER, self.block.len as usize)
        }
    }
}

/// Two little-endian words.
fn words(a: u64, b: u64) -> [u8; 16] {
    let mut w = [0; 16];
    w[..8].copy_from_slice(&a.to_le_bytes());
    w[8..].copy_from_slice(&b.to_le_bytes());
    w
}

/// An ended connection's holdings, and how to tell when they may go.
struct Parked {
    holdings: Holdings,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
    alive: Box<dyn Fn() -> bool + Send + Sync>,
}

/// The descriptor frame of message `seq` in `block`, for a ring.
pub(crate) fn descriptor(seq: u64, block: Block) -> [u8; 8 + DESCRIPTOR_LEN] {
    let mut d = [0; 8 + DESCRIPTOR_LEN];
    d[..8].copy_from_slice(&(seq | DESCRIPTOR_FLAG).to_le_bytes());
    d[8..16].copy_from_slice(&block.offset.to_le_bytes());
    d[16..].copy_from_slice(&block.len.to_le_bytes());
    d
}

/// Why a descriptor was refused: the publisher broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not 16 bytes of offset and length.
    Malformed,
    /// The block lies outside the segment, or is misaligned.
    OutOfBounds { offset: u64, len: u64 },
    /// Above the subscriber's `max_message_size`.
    TooLarge { len: u64 },
    /// The block's header names another message (reused, or never written).
    Stale { offset: u64 },
}

/// A subscriber's read-only view of a publisher's payload segment.
pub(crate) struct PayloadIn {
    bytes: MappedBytes,
}

impl PayloadIn {
    /// Opens the segment at `path`: a regular file of ours (or of the channel's group) of
    /// 128 bytes to [`MAX_CAPACITY`] with the right magic and version.
    pub(crate) fn open(path: &Path, access: sys::Access) -> Result<PayloadIn> {
        let bad = |problem: &str| Error::BadSegment {
            path: path.to_owned(),
            problem: problem.into(),
        };
        let segment = sys::Segment::open(
            path,
            (FILE_HEADER + BLOCK_HEADER) as usize,
            (FILE_HEADER + MAX_CAPACITY) as usize,
            access,
        )?;
        let bytes = MappedBytes::new(Arc::new(segment))
            .ok_or_else(|| bad("the mapping is not 64-aligned"))?;
        let mut header = [0u8; 16];
        // SAFETY: within the mapping (at least 128 bytes).
        unsafe { bytes.data().read(0, &mut header) };
        if header != words(MAGIC, VERSION) {
            return Err(bad("not a payload segment of this protocol version"));
        }
        Ok(PayloadIn { bytes })
    }

    /// Validates the descriptor `desc` (the frame's bytes after its header) of message `seq`
    /// against the mapping and the block's header; the payload's place on success.
    pub(crate) fn resolve(&self, seq: u64, desc: &[u8], max_len: u64) -> Result<Block, Refused> {
        let (Some(offset), Some(len)) = (
            desc.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)),
            desc.get(8..16)
                .and_then(|b| b.first_chunk::<8>())
                .map(|b| u64::from_le_bytes(*b)),
        ) else {
            return Err(Refused::Malformed);
        };
        if desc.len() != DESCRIPTOR_LEN {
            return Err(Refused::Malformed);
        }
        if len > max_len {
            return Err(Refused::TooLarge { len });
        }
        let end = offset
            .checked_add(BLOCK_HEADER)
            .and_then(|o| o.checked_add(len));
        if offset < FILE_HEADER
            || !offset.is_multiple_of(BLOCK_HEADER)
            || end.is_none_or(|e| e > self.bytes.len())
        {
            return Err(Refused::OutOfBounds { offset, len });
        }
        let mut header = [0u8; 16];
        // SAFETY: `offset + 64 <= len of the mapping` (checked above).
        unsafe { self.bytes.data().read(offset, &mut header) };
        if header != words(seq, len) {
            return Err(Refused::Stale { offset });
        }
        Ok(Block { offset, len })
    }

    /// The payload of a block [`PayloadIn::resolve`] accepted.
    pub(crate) fn payload(&self, block: Block) -> &[u8] {
        debug_assert!(block.offset + BLOCK_HEADER + block.len <= self.bytes.len());
        // SAFETY: `resolve` checked the block lies within the mapping. The publisher does not
        // reuse it while our ring position holds its descriptor; a hostile one writing it
        // concurrently can only change what we see (no control value is read from it).
        unsafe {
            self.bytes
                .data()
                .slice(block.offset + BLOCK_HEADER, block.len as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blocks_are_rounded_to_cache_lines() {
        assert_eq!(block_size(0), 64);
        assert_eq!(block_size(1), 128);
        assert_eq!(block_size(64), 128);
        assert_eq!(block_size(65), 192);
    }

    #[test]
    fn allocator_merges_freed_neighbours_into_one_extent() {
        let mut a = Allocator::new(64, 64 * 10);
        let x = a.alloc(128).unwrap();
        let y = a.alloc(128).unwrap();
        let z = a.alloc(128).unwrap();
        assert_eq!((x, y, z), (64, 192, 320));
        a.release(y, 128);
        a.release(x, 128);
        a.release(z, 128);
        assert_eq!(a.free.len(), 1);
        assert_eq!(a.alloc(640), Some(64));
        assert_eq!(a.alloc(64), None);
    }

    proptest! {
        /// Against a model (a byte map of who owns what): allocations never overlap, stay in
        /// bounds, and an allocation fails only when no free run is long enough.
        #[test]
        fn allocator_never_overlaps_and_fails_only_without_a_free_run(
            ops in proptest::collection::vec((any::<bool>(), 1u64..12, any::<prop::sample::Index>()), 1..200)
        ) {
            let units = 32u64;
            let mut a = Allocator::new(0, units * 64);
            let mut owner = vec![false; units as usize];
            let mut live: Vec<(u64, u64)> = Vec::new();
            for (take, n, pick) in ops {
                if take || live.is_empty() {
                    let size = n * 64;
                    let longest_run = owner
                        .split(|&used| used)
                        .map(|run| run.len() as u64)
                        .max()
                        .unwrap_or(0);
                    match a.alloc(size) {
                        Some(start) => {
                            prop_assert!(start % 64 == 0 && start + size <= units * 64);
                            for u in start / 64..(start + size) / 64 {
                                prop_assert!(!owner[u as usize], "overlap at unit {}", u);
                                owner[u as usize] = true;
                            }
                            live.push((start, size));
                        }
                        None => prop_assert!(longest_run < n, "failed with a run of {}", longest_run),
                    }
                } else {
                    let (start, size) = live.swap_remove(pick.index(live.len()));
                    for u in start / 64..(start + size) / 64 {
                        owner[u as usize] = false;
                    }
                    a.release(start, size);
                }
                let used: u64 = live.iter().map(|l| l.1).sum();
                prop_assert_eq!(a.free_bytes(), units * 64 - used);
            }
        }
    }

    #[test]
    fn allocator_holdings_release_in_ring_order() {
        let mut h = Holdings::default();
        let (a, b) = (
            Block {
                offset: 64,
                len: 10,
            },
            Block {
                offset: 128,
                len: 100,
            },
        );
        h.push(40, a);
        h.push(80, b);
        assert_eq!((h.bytes(), h.oldest()), (128 + 192, Some(40)));
        let mut released = Vec::new();
        h.reclaim(39, |x| released.push(x));
        assert!(released.is_empty());
        h.reclaim(79, |x| released.push(x));
        assert_eq!(released, [a]);
        assert_eq!((h.bytes(), h.oldest()), (192, Some(80)));
        h.release_all(|x| released.push(x));
        assert_eq!(released, [a, b]);
        assert_eq!((h.bytes(), h.oldest()), (0, None));
    }

    fn segment(dir: &Path, capacity: u64) -> (PayloadOut, PayloadIn) {
        let path = dir.join("pub-x.pay");
        let out = PayloadOut::create(&path, capacity, sys::Access::Private).unwrap();
        let view = PayloadIn::open(&path, sys::Access::Private).unwrap();
        (out, view)
    }

    #[test]
    fn a_descriptor_resolves_to_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, view) = segment(dir.path(), 1 << 16);
        let block = out.try_alloc(5).unwrap();
        out.fill(block, 7, &[b"he", b"llo"]);
        let d = descriptor(7, block);
        assert_eq!(
            u64::from_le_bytes(d[..8].try_into().unwrap()),
            7 | DESCRIPTOR_FLAG
        );
        let got = view.resolve(7, &d[8..], 100).unwrap();
        assert_eq!(view.payload(got), b"hello");
        // The block is reused only after every holder let it go.
        out.hold(block);
        out.release(block);
        assert_eq!(out.free_bytes(), out.capacity() - block.size());
        out.release(block);
        assert_eq!(out.free_bytes(), out.capacity());
    }

    #[test]
    fn hostile_descriptors_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, view) = segment(dir.path(), 4096);
        let block = out.try_alloc(100).unwrap();
        out.fill(block, 3, &[&[1; 100]]);
        let raw = |offset: u64, len: u64| {
            let mut d = offset.to_le_bytes().to_vec();
            d.extend_from_slice(&len.to_le_bytes());
            d
        };
        assert_eq!(view.resolve(3, &[0; 15], 1000), Err(Refused::Malformed));
        assert_eq!(view.resolve(3, &[0; 17], 1000), Err(Refused::Malformed));
        assert_eq!(
            view.resolve(3, &raw(block.offset, 100), 99),
            Err(Refused::TooLarge { len: 100 })
        );
        for (offset, len) in [
            (0, 1),
            (block.offset + 8, 1),
            (4096, 64),
            (64, 4097),
            (u64::MAX - 63, 1),
            (64, u64::MAX - 64),
        ] {
            assert_eq!(
                view.resolve(3, &raw(offset, len), u64::MAX),
                Err(Refused::OutOfBounds { offset, len }),
                "{offset} {len}"
            );
        }
        assert_eq!(
            view.resolve(4, &raw(block.offset, 100), 1000),
            Err(Refused::Stale {
                offset: block.offset
            })
        );
        assert_eq!(
            view.resolve(3, &raw(block.offset, 99), 1000),
            Err(Refused::Stale {
                offset: block.offset
            })
        );
        assert!(view.resolve(3, &raw(block.offset, 100), 1000).is_ok());
    }

    #[test]
    fn a_file_that_is_not_a_payload_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pub-y.pay");
        drop(sys::Segment::create(&path, 4096, sys::Access::Private).map(|mut s| s.keep_name()));
        assert!(matches!(
            PayloadIn::open(&path, sys::Access::Private),
            Err(Error::BadSegment { .. })
        ));
    }
}
