//! The memory a ring lives in: a header plus a data area, kept alive by an owner (a heap
//! allocation or a mapped segment), and typed views of other shared headers (a subscriber's
//! doorbell file). This module and `sys` are the only places that dereference raw memory:
//! every other module reaches shared bytes through [`Region`], [`Data`] (which knows its
//! length and `debug_assert`s every access against it), [`SharedBell`] or [`MappedHeader`].
//! A type laid over shared memory is declared fit for it, next to its layout, with an
//! `unsafe impl` of [`AtomicHeader`]. It must not interpret what it reads (validation is the
//! producer's and consumer's job) nor wait.
//!
//! The same code runs under loom: there the header's atomics are loom's (so the header is
//! built as a value rather than zeroed in place) and [`Data`] reports every plain access to
//! the model checker (`sync::AccessLog`), so a byte read that the protocol does not order
//! after its write fails the model.

use std::marker::PhantomData;
use std::sync::Arc;

use super::layout::{Bell, HEADER_LEN, Header, MAGIC, VERSION, valid_capacity};
use super::wait::RingFutex;
use crate::sync::{AccessLog, AtomicU64, Ordering};

/// A header and a data area of `capacity` bytes, shared by a producer and a consumer.
pub(crate) struct Region {
    header: *const Header,
    data: Data,
    futex: RingFutex,
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: the pointers refer to memory kept alive by `_owner` (which is `Send + Sync`); all
// shared state in it is accessed through atomics or through the ring protocol, which gives
// each byte of the data area to one side at a time.
unsafe impl Send for Region {}
// SAFETY: as above; `Region` itself has no interior mutability outside that memory.
unsafe impl Sync for Region {}

impl Region {
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `header` points to an initialised `Header` that `_owner` keeps alive; every
        // field is atomic, so shared references are sound even while peers write.
        unsafe { &*self.header }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.data.len
    }

    pub(crate) fn data(&self) -> &Data {
        &self.data
    }

    /// The futex both ends of this region sleep and wake on (zero-sized in production).
    pub(crate) fn futex(&self) -> &RingFutex {
        &self.futex
    }

    /// A fresh ring of `capacity` bytes on the heap (tests, and same-process use).
    pub(crate) fn heap(capacity: u64) -> Region {
        assert!(valid_capacity(capacity), "invalid ring capacity {capacity}");
        #[cfg(not(loom))]
        {
            let buf = Arc::new(HeapBuf::zeroed(HEADER_LEN + capacity as usize));
            let base = buf.ptr;
            // SAFETY: `base` is a fresh, zeroed, 64-aligned allocation of `HEADER_LEN +
            // capacity` bytes that nobody else references yet.
            unsafe { Region::init(base, capacity, buf) }
        }
        // Loom's atomics are not plain integers: the header is built as a value, next to a
        // data area that is real memory as in production.
        #[cfg(loom)]
        {
            struct LoomHeap {
                header: Header,
                data: HeapBuf,
            }
            let buf = Arc::new(LoomHeap {
                header: Header::new(capacity),
                data: HeapBuf::zeroed(capacity as usize),
            });
            buf.header.version.store(VERSION, Ordering::Release);
            Region {
                header: &buf.header,
                data: Data::new(buf.data.ptr, capacity),
                futex: RingFutex::default(),
                _owner: buf,
            }
        }
    }

    /// Writes a fresh header at `base` (version last) and returns the region.
    ///
    /// # Safety
    /// `base` must be 64-aligned, valid for `HEADER_LEN + capacity` bytes of reads and writes
    /// for as long as `owner` lives, and not yet shared with a peer. Not under loom, whose
    /// atomics are not plain integers (loom models use [`Region::heap`]).
    pub(crate) unsafe fn init(base: *mut u8, capacity: u64, owner: Arc<dyn Send + Sync>) -> Region {
        debug_assert!((base as usize).is_multiple_of(64) && valid_capacity(capacity));
        let header = base.cast::<Header>();
        // Zero the whole header first rather than writing a `Header` value: a struct write
        // may copy padding bytes (stack garbage) into memory a peer reads.
        // SAFETY: per the contract, `base` is valid for `HEADER_LEN` bytes of writes, and no
        // peer can observe them before `version` is set below.
        unsafe { base.write_bytes(0, HEADER_LEN) };
        // SAFETY: aligned and in bounds per the contract; all-zero bytes are a valid `Header`
        // (every field is an atomic integer, zero meaning OPEN / no waiters / position 0).
        let h = unsafe { &*header };
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.header_len.store(HEADER_LEN as u32, Ordering::Relaxed);
        h.capacity.store(capacity, Ordering::Relaxed);
        h.creator_pid.store(std::process::id(), Ordering::Relaxed);
        // SYNC POINT header: pairs with the Acquire load in `Region::attach`.
        h.version.store(VERSION, Ordering::Release);
        Region {
            header,
            // SAFETY: `HEADER_LEN` is within the allocation per the contract.
            data: Data::new(unsafe { base.add(HEADER_LEN) }, capacity),
            futex: RingFutex::default(),
            _owner: owner,
        }
    }

    /// Validates a header that another process wrote at `base` and returns the region.
    /// `len` is the size of the mapping; the capacity the header claims must fit in it.
    /// `futex` wakes sleepers on the header's bells (the segment's, see [`RingFutex::of`]).
    ///
    /// # Safety
    /// `base` must be 64-aligned and valid for `len` bytes of reads and writes for as long as
    /// `owner` lives. Not under loom, as for [`Region::init`].
    pub(crate) unsafe fn attach(
        base: *mut u8,
        len: usize,
        owner: Arc<dyn Send + Sync>,
        futex: RingFutex,
    ) -> Result<Region, String> {
        if len < HEADER_LEN {
            return Err(format!(
                "{len} bytes is smaller than the {HEADER_LEN}-byte header"
            ));
        }
        let header = base.cast::<Header>();
        // SAFETY: `len >= HEADER_LEN` and alignment per the contract; all fields are atomic.
        let h = unsafe { &*header };
        // SYNC POINT header: pairs with the Release store in `Region::init`.
        let version = h.version.load(Ordering::Acquire);
        let magic = h.magic.load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(format!("bad magic {magic:#018x}; not an mmipc ring"));
        }
        if version != VERSION {
            return Err(format!(
                "ring protocol version {version}, this build speaks {VERSION} (0 means the creator has not finished initialising it)"
            ));
        }
        let header_len = h.header_len.load(Ordering::Relaxed);
        if header_len as usize != HEADER_LEN {
            return Err(format!("header length {header_len}, expected {HEADER_LEN}"));
        }
        let capacity = h.capacity.load(Ordering::Relaxed);
        if !valid_capacity(capacity) || HEADER_LEN as u64 + capacity > len as u64 {
            return Err(format!(
                "capacity {capacity} does not fit a {len}-byte segment"
            ));
        }
        Ok(Region {
            header,
            // SAFETY: `HEADER_LEN + capacity <= len`, checked above.
            data: Data::new(unsafe { base.add(HEADER_LEN) }, capacity),
            futex,
            _owner: owner,
        })
    }

    /// A second handle on the same memory (the peer's, in same-process use).
    pub(crate) fn share(&self) -> Region {
        Region {
            header: self.header,
            data: self.data.share(),
            futex: self.futex.clone(),
            _owner: Arc::clone(&self._owner),
        }
    }
}

/// A futex bell living in some other shared memory (a subscriber's doorbell), kept alive by
/// its owner. A producer rings it instead of its ring's own data bell, so that one sleeper
/// can wait for data on many rings.
#[derive(Clone)]
pub(crate) struct SharedBell {
    bell: *const Bell,
    futex: RingFutex,
    _owner: Arc<dyn Send + Sync>,
    /// Called after a ring that found a registered waiter (the owner's other wake-ups).
    after_ring: Option<Arc<dyn Fn() + Send + Sync>>,
}

// SAFETY: the bell is made of atomics in memory that `_owner` (`Send + Sync`) keeps alive.
unsafe impl Send for SharedBell {}
// SAFETY: as above.
unsafe impl Sync for SharedBell {}

impl SharedBell {
    /// A bell of its own on the heap, for a consumer waiting on several rings of this process
    /// (tests and loom models).
    #[cfg(test)]
    pub(crate) fn heap() -> SharedBell {
        let bell = Arc::new(Bell {
            seq: crate::sync::AtomicU32::new(0),
            waiters: crate::sync::AtomicU32::new(0),
        });
        SharedBell {
            bell: &*bell,
            futex: RingFutex::default(),
            _owner: bell,
            after_ring: None,
        }
    }

    /// Calls `hook` after every ring of this bell that found a registered waiter.
    pub(crate) fn after_ring(mut self, hook: Arc<dyn Fn() + Send + Sync>) -> SharedBell {
        self.after_ring = Some(hook);
        self
    }

    /// The bell was rung for a registered waiter: runs the hook, if any.
    pub(crate) fn rang(&self) {
        if let Some(hook) = &self.after_ring {
            hook();
        }
    }

    pub(crate) fn bell(&self) -> &Bell {
        // SAFETY: `bell` points into memory that `_owner` keeps alive (a heap `Bell`, or a
        // header checked by `MappedHeader::new`), only ever accessed atomically.
        unsafe { &*self.bell }
    }

    /// The futex to wake sleepers of [`SharedBell::bell`] with (zero-sized in production).
    pub(crate) fn futex(&self) -> &RingFutex {
        &self.futex
    }
}

/// A `#[repr(C)]` header that may be laid over shared memory and read through `&Self` while
/// other processes write it.
///
/// # Safety
/// Implementors are `#[repr(C)]`, made only of atomics (and structs of atomics) without
/// padding a peer could read, and all-zero bytes are a valid value of every field.
pub(crate) unsafe trait AtomicHeader: Sync {}

/// A typed view of the header at the start of a mapped segment, which it keeps mapped: the
/// only way the layers above reach such a header (a subscriber's doorbell file).
pub(crate) struct MappedHeader<T> {
    map: Arc<crate::sys::Segment>,
    _header: PhantomData<fn() -> T>,
}

impl<T> Clone for MappedHeader<T> {
    fn clone(&self) -> Self {
        MappedHeader {
            map: Arc::clone(&self.map),
            _header: PhantomData,
        }
    }
}

impl<T: AtomicHeader> MappedHeader<T> {
    /// The view, or `None` if the mapping is too short or misaligned for a `T`.
    pub(crate) fn new(map: Arc<crate::sys::Segment>) -> Option<MappedHeader<T>> {
        header_of::<T>(&map)?;
        Some(MappedHeader {
            map,
            _header: PhantomData,
        })
    }

    pub(crate) fn get(&self) -> &T {
        debug_assert!(self.map.len() >= size_of::<T>());
        // SAFETY: `new` checked that the mapping (kept alive by `self.map`) is long and
        // aligned enough for a `T`; `T: AtomicHeader` makes any bytes there a valid `T` that
        // may be shared while other processes write it.
        unsafe { &*self.map.as_ptr().cast::<T>() }
    }

    /// A bell inside the header, for a producer to ring; it keeps the mapping alive.
    pub(crate) fn shared_bell(&self, bell: fn(&T) -> &Bell) -> SharedBell {
        // `bell` can only return a reference into `*self.get()` (or a `'static` one): the
        // mapping it points into is the one `_owner` keeps.
        SharedBell {
            bell: bell(self.get()),
            futex: RingFutex::of(&self.map),
            _owner: self.map.clone(),
            after_ring: None,
        }
    }

    /// The wake-up for the words of this header (the mapping's).
    pub(crate) fn futex(&self) -> RingFutex {
        RingFutex::of(&self.map)
    }
}

/// The header at the start of `map`, borrowed: for the creator of a segment initialising it
/// before publishing its name. `None` if the mapping is too short or misaligned for a `T`.
pub(crate) fn header_of<T: AtomicHeader>(map: &crate::sys::Segment) -> Option<&T> {
    let base = map.as_ptr();
    if map.len() < size_of::<T>() || !(base as usize).is_multiple_of(align_of::<T>()) {
        return None;
    }
    // SAFETY: long and aligned enough (checked above), mapped while `map` is borrowed;
    // `T: AtomicHeader` makes any bytes there a valid, shareable `T`.
    Some(unsafe { &*base.cast::<T>() })
}

/// A whole mapped segment as a [`Data`] area, which it keeps mapped: how the layers above
/// reach bytes of a segment that is not a ring (a publisher's payload segment). Offsets are
/// from the start of the mapping; every access is bounds-checked by its caller against
/// [`MappedBytes::len`], as for a ring's data area.
pub(crate) struct MappedBytes {
    data: Data,
    _map: Arc<crate::sys::Segment>,
}

// SAFETY: the pointer in `data` refers to the mapping `_map` keeps alive; who may touch which
// bytes when is the payload protocol's (connection::payload), as a ring's data area is the
// ring protocol's.
unsafe impl Send for MappedBytes {}
// SAFETY: as above; `MappedBytes` has no interior mutability of its own.
unsafe impl Sync for MappedBytes {}

impl MappedBytes {
    /// The bytes of `map`, or `None` if its start is not 64-aligned (mappings are page-aligned).
    pub(crate) fn new(map: Arc<crate::sys::Segment>) -> Option<MappedBytes> {
        let ptr = map.as_ptr();
        if !(ptr as usize).is_multiple_of(64) {
            return None;
        }
        Some(MappedBytes {
            data: Data::new(ptr, map.len() as u64),
            _map: map,
        })
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.data.len
    }

    /// Another view of the same mapping, keeping it mapped too.
    pub(crate) fn share(&self) -> MappedBytes {
        MappedBytes {
            data: self.data.share(),
            _map: Arc::clone(&self._map),
        }
    }

    pub(crate) fn data(&self) -> &Data {
        &self.data
    }
}

/// A zeroed, 64-aligned heap allocation.
struct HeapBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl HeapBuf {
    fn zeroed(len: usize) -> HeapBuf {
        let layout = std::alloc::Layout::from_size_align(len, 64).expect("ring size overflows");
        // SAFETY: `layout` has non-zero size (at least the header).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        HeapBuf { ptr, layout }
    }
}

impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout; dropped once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

// SAFETY: `HeapBuf` uniquely owns its allocation; access to the bytes is arbitrated by the
// ring protocol through `Region`.
unsafe impl Send for HeapBuf {}
// SAFETY: as above; `HeapBuf` offers no access of its own.
unsafe impl Sync for HeapBuf {}

/// The data area: `len` bytes. All methods take offsets that the caller has bounds-checked
/// against the capacity; each `unsafe fn` states that as its contract and `debug_assert`s it.
/// Under loom each access is also reported to the model checker ([`AccessLog`]).
pub(crate) struct Data {
    ptr: *mut u8,
    len: u64,
    log: AccessLog,
    /// Under loom, the model atomics standing for the header words (one per 8 bytes).
    #[cfg(loom)]
    headers: Arc<[AtomicU64]>,
}

impl Data {
    fn new(ptr: *mut u8, len: u64) -> Data {
        Data {
            ptr,
            len,
            log: AccessLog::new(len),
            #[cfg(loom)]
            headers: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn share(&self) -> Data {
        Data {
            ptr: self.ptr,
            len: self.len,
            log: self.log.clone(),
            #[cfg(loom)]
            headers: Arc::clone(&self.headers),
        }
    }

    /// Whether `off..off + n` lies within the data area (for the `debug_assert`s).
    #[inline]
    fn in_bounds(&self, off: u64, n: usize) -> bool {
        off <= self.len && n as u64 <= self.len - off
    }

    /// The record header word at `off`, as an atomic. In production it is the data area's
    /// own 8 bytes; under loom a model atomic per word stands for them (`Data::sync_words`
    /// copies payload bytes into it, so a stale payload can still pass for a header there).
    ///
    /// # Safety
    /// `off` is a multiple of 8 and `off + 8 <= capacity`.
    #[inline(always)]
    unsafe fn header_word(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && self.in_bounds(off, 8));
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds and 8-aligned per the contract (the data area starts
            // 64-aligned); the memory lives as long as `self`'s owner. Peers access these
            // words atomically where they race (record headers) and otherwise only in the
            // order the ring protocol gives.
            unsafe { &*self.ptr.add(off as usize).cast::<AtomicU64>() }
        }
        #[cfg(loom)]
        {
            &self.headers[(off / 8) as usize]
        }
    }

    /// Loads the record header word at `off` (Acquire: the record's bytes, written before
    /// its header was stored, are then visible).
    ///
    /// # Safety
    /// `off` is a multiple of 8 and `off + 8 <= capacity`.
    #[inline]
    pub(crate) unsafe fn load_header(&self, off: u64) -> u64 {
        // SAFETY: per the contract.
        unsafe { self.header_word(off) }.load(Ordering::Acquire)
    }

    /// Publishes the record at `off`: stores its header word (Release) after its `payload`
    /// bytes at `off + 8`, already written.
    ///
    /// # Safety
    /// `off` is a multiple of 8, `off + 8 + payload <= capacity`, and the producer owns
    /// those bytes.
    #[inline]
    pub(crate) unsafe fn store_header(&self, off: u64, word: u64, payload: u64) {
        self.log.write(off, 8);
        #[cfg(loom)]
        self.sync_words(off + 8, payload);
        let _ = payload;
        // SAFETY: per the contract.
        unsafe { self.header_word(off) }.store(word, Ordering::Release);
    }

    /// Empties the header slot at `off` (stores 0, Relaxed): where the next record will go,
    /// so that what the bytes held before (a payload of an earlier lap) cannot pass for its
    /// header. Ordered before the reader by the next [`Data::store_header`].
    ///
    /// # Safety
    /// `off` is a multiple of 8, `off + 8 <= capacity`, and the producer owns those bytes.
    #[inline]
    pub(crate) unsafe fn clear_header(&self, off: u64) {
        self.log.write(off, 8);
        // SAFETY: per the contract.
        unsafe { self.header_word(off) }.store(0, Ordering::Relaxed);
    }

    /// Under loom: copies the bytes `off..off + len` (rounded out to words) into the model
    /// atomics that stand for header words, so that a header load there sees the payload.
    #[cfg(loom)]
    fn sync_words(&self, off: u64, len: u64) {
        let (start, end) = (off / 8 * 8, (off + len).div_ceil(8) * 8);
        for w in (start..end.min(self.len)).step_by(8) {
            let mut bytes = [0u8; 8];
            // SAFETY: in bounds (`w + 8 <= len`); written only by this producer thread.
            unsafe {
                core::ptr::copy_nonoverlapping(self.ptr.add(w as usize), bytes.as_mut_ptr(), 8)
            };
            self.headers[(w / 8) as usize].store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        }
    }

    /// Copies `src` to `off`.
    ///
    /// # Safety
    /// `off + src.len() <= capacity` and the producer owns those bytes.
    #[inline]
    pub(crate) unsafe fn write(&self, off: u64, src: &[u8]) {
        debug_assert!(self.in_bounds(off, src.len()));
        self.log.write(off, src.len());
        // SAFETY: in bounds per the contract; `src` is local memory, so no overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off as usize), src.len())
        }
    }

    /// Copies `dst.len()` bytes from `off`.
    ///
    /// # Safety
    /// `off + dst.len() <= capacity` and the consumer owns those bytes.
    #[inline]
    pub(crate) unsafe fn read(&self, off: u64, dst: &mut [u8]) {
        debug_assert!(self.in_bounds(off, dst.len()));
        self.log.read(off, dst.len());
        // SAFETY: in bounds per the contract; `dst` is local memory, so no overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(self.ptr.add(off as usize), dst.as_mut_ptr(), dst.len())
        }
    }

    /// Appends `len` bytes from `off` to `out`.
    ///
    /// # Safety
    /// As for [`Data::read`].
    #[inline]
    pub(crate) unsafe fn read_append(&self, off: u64, len: usize, out: &mut Vec<u8>) {
        debug_assert!(self.in_bounds(off, len));
        self.log.read(off, len);
        out.reserve(len);
        let start = out.len();
        // SAFETY: `reserve` made room for `len` more bytes; bounds of the source per the
        // contract; the bytes are initialised before `set_len`.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.ptr.add(off as usize),
                out.as_mut_ptr().add(start),
                len,
            );
            out.set_len(start + len);
        }
    }

    /// The bytes at `off..off + len`, borrowed in place (under loom, the read is reported
    /// when the borrow is taken).
    ///
    /// # Safety
    /// In bounds, owned by the consumer until the borrow ends. A hostile producer writing them
    /// concurrently can only change what the caller sees (no control value is read from them).
    #[inline]
    pub(crate) unsafe fn slice(&self, off: u64, len: usize) -> &[u8] {
        debug_assert!(self.in_bounds(off, len));
        self.log.read(off, len);
        // SAFETY: in bounds and owned by the consumer per the contract.
        unsafe { core::slice::from_raw_parts(self.ptr.add(off as usize), len) }
    }

    /// The bytes at `off..off + len`, borrowed mutably in place (under loom, the write is
    /// reported when the borrow is taken).
    ///
    /// # Safety
    /// In bounds and owned by the producer until the borrow ends.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, off: u64, len: usize) -> &mut [u8] {
        debug_assert!(self.in_bounds(off, len));
        self.log.write(off, len);
        // SAFETY: in bounds and owned by the producer per the contract.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(off as usize), len) }
    }
}
