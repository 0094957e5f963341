//! The memory a ring lives in: a header plus a data area, kept alive by an owner (a heap
//! allocation, a mapped segment, or under loom a model-checked buffer). This module and
//! `sys` are the only places that touch raw memory.

use std::sync::Arc;

#[cfg(not(loom))]
use super::layout::Bell;
use super::layout::Header;
#[cfg(not(loom))]
use super::layout::{HEADER_LEN, MAGIC, VERSION, valid_capacity};
#[cfg(not(loom))]
use crate::sync::Ordering;

/// A header and a data area of `capacity` bytes, shared by a producer and a consumer.
pub(crate) struct Region {
    header: *const Header,
    data: Data,
    capacity: u64,
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
        self.capacity
    }

    pub(crate) fn data(&self) -> &Data {
        &self.data
    }

    /// The futex both ends of this region sleep and wake on.
    #[cfg(not(loom))]
    pub(crate) fn futex(&self) -> super::wait::RingFutex {
        super::wait::OsFutex
    }

    /// The futex both ends of this region sleep and wake on.
    #[cfg(loom)]
    pub(crate) fn futex(&self) -> super::wait::RingFutex {
        self.data.buf.futex.clone()
    }

    /// A fresh ring of `capacity` bytes on the heap (tests, and same-process use).
    #[cfg(not(loom))]
    pub(crate) fn heap(capacity: u64) -> Region {
        assert!(valid_capacity(capacity), "invalid ring capacity {capacity}");
        let len = HEADER_LEN + capacity as usize;
        let buf = Arc::new(HeapBuf::zeroed(len));
        let base = buf.ptr;
        // SAFETY: `base` is a fresh, zeroed, 64-aligned allocation of `len` bytes that nobody
        // else references yet.
        unsafe { Region::init(base, capacity, buf) }
    }

    /// Writes a fresh header at `base` (version last) and returns the region.
    ///
    /// # Safety
    /// `base` must be 64-aligned, valid for `HEADER_LEN + capacity` bytes of reads and writes
    /// for as long as `owner` lives, and not yet shared with a peer.
    #[cfg(not(loom))]
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
            data: Data {
                // SAFETY: `HEADER_LEN` is within the allocation per the contract.
                ptr: unsafe { base.add(HEADER_LEN) },
            },
            capacity,
            _owner: owner,
        }
    }

    /// Validates a header that another process wrote at `base` and returns the region.
    /// `len` is the size of the mapping; the capacity the header claims must fit in it.
    ///
    /// # Safety
    /// `base` must be 64-aligned and valid for `len` bytes of reads and writes for as long as
    /// `owner` lives.
    #[cfg(not(loom))]
    pub(crate) unsafe fn attach(
        base: *mut u8,
        len: usize,
        owner: Arc<dyn Send + Sync>,
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
            data: Data {
                // SAFETY: `HEADER_LEN <= len`, checked above.
                ptr: unsafe { base.add(HEADER_LEN) },
            },
            capacity,
            _owner: owner,
        })
    }

    /// A second handle on the same memory (the peer's, in same-process use).
    pub(crate) fn share(&self) -> Region {
        Region {
            header: self.header,
            data: self.data.share(),
            capacity: self.capacity,
            _owner: Arc::clone(&self._owner),
        }
    }
}

/// A futex bell living in some other shared memory (a subscriber's doorbell), kept alive by
/// its owner. A producer rings it instead of its ring's own data bell, so that one sleeper
/// can wait for data on many rings.
#[cfg(not(loom))]
#[derive(Clone)]
pub(crate) struct SharedBell {
    bell: *const Bell,
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: the bell is made of atomics in memory that `_owner` (`Send + Sync`) keeps alive.
#[cfg(not(loom))]
unsafe impl Send for SharedBell {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for SharedBell {}

#[cfg(not(loom))]
impl SharedBell {
    /// # Safety
    /// `bell` must be 4-aligned and point at 8 bytes that stay mapped while `owner` lives and
    /// are only ever accessed atomically.
    pub(crate) unsafe fn new(bell: *const Bell, owner: Arc<dyn Send + Sync>) -> SharedBell {
        debug_assert!((bell as usize).is_multiple_of(align_of::<Bell>()));
        SharedBell {
            bell,
            _owner: owner,
        }
    }

    pub(crate) fn bell(&self) -> &Bell {
        // SAFETY: per the contract of `new`, valid and atomic-only while `_owner` lives.
        unsafe { &*self.bell }
    }
}

/// A zeroed, 64-aligned heap allocation.
#[cfg(not(loom))]
struct HeapBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

#[cfg(not(loom))]
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

#[cfg(not(loom))]
impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout; dropped once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

// SAFETY: `HeapBuf` uniquely owns its allocation; access to the bytes is arbitrated by the
// ring protocol through `Region`.
#[cfg(not(loom))]
unsafe impl Send for HeapBuf {}
// SAFETY: as above; `HeapBuf` offers no access of its own.
#[cfg(not(loom))]
unsafe impl Sync for HeapBuf {}

/// The data area. All methods take offsets that the caller has bounds-checked against the
/// capacity; each `unsafe fn` states that as its contract and `debug_assert`s it.
#[cfg(not(loom))]
pub(crate) struct Data {
    ptr: *mut u8,
}

#[cfg(not(loom))]
impl Data {
    fn share(&self) -> Data {
        Data { ptr: self.ptr }
    }

    /// Reads the 8-byte record header at `off`.
    ///
    /// # Safety
    /// `off` is a multiple of 8 and `off + 8 <= capacity`.
    #[inline]
    pub(crate) unsafe fn read_word(&self, off: u64) -> u64 {
        // SAFETY: in bounds and 8-aligned per the contract (the data area starts 64-aligned).
        // Volatile: the peer may write it concurrently; we read it exactly once.
        unsafe { self.ptr.add(off as usize).cast::<u64>().read_volatile() }
    }

    /// Writes the 8-byte record header at `off`.
    ///
    /// # Safety
    /// `off` is a multiple of 8, `off + 8 <= capacity`, and the producer owns those bytes.
    #[inline]
    pub(crate) unsafe fn write_word(&self, off: u64, word: u64) {
        // SAFETY: in bounds and aligned per the contract.
        unsafe {
            self.ptr
                .add(off as usize)
                .cast::<u64>()
                .write_volatile(word)
        }
    }

    /// Copies `src` to `off`.
    ///
    /// # Safety
    /// `off + src.len() <= capacity` and the producer owns those bytes.
    #[inline]
    pub(crate) unsafe fn write(&self, off: u64, src: &[u8]) {
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

    /// The bytes at `off..off + len`, borrowed in place.
    ///
    /// # Safety
    /// In bounds, owned by the consumer until the borrow ends. A hostile producer writing them
    /// concurrently can only change what the caller sees (no control value is read from them).
    #[inline]
    pub(crate) unsafe fn slice(&self, off: u64, len: usize) -> &[u8] {
        // SAFETY: per the contract.
        unsafe { core::slice::from_raw_parts(self.ptr.add(off as usize), len) }
    }

    /// The bytes at `off..off + len`, borrowed mutably in place.
    ///
    /// # Safety
    /// In bounds and owned by the producer until the borrow ends.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, off: u64, len: usize) -> &mut [u8] {
        // SAFETY: per the contract.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(off as usize), len) }
    }
}

// ---------------------------------------------------------------------------------------
// loom: the header lives in an `Arc`, the data in loom-tracked cells so that the model
// checker flags any access the ring protocol fails to order.

#[cfg(loom)]
struct LoomBuf {
    header: Header,
    futex: super::wait::LoomFutex,
    cells: Box<[loom::cell::UnsafeCell<u8>]>,
}

#[cfg(loom)]
impl Region {
    pub(crate) fn heap(capacity: u64) -> Region {
        let buf = Arc::new(LoomBuf {
            header: Header::new(capacity),
            futex: Default::default(),
            cells: (0..capacity)
                .map(|_| loom::cell::UnsafeCell::new(0))
                .collect(),
        });
        buf.header
            .version
            .store(super::layout::VERSION, crate::sync::Ordering::Release);
        let header: *const Header = &buf.header;
        Region {
            header,
            data: Data {
                buf: Arc::clone(&buf),
            },
            capacity,
            _owner: buf,
        }
    }
}

#[cfg(loom)]
pub(crate) struct Data {
    buf: Arc<LoomBuf>,
}

// SAFETY (loom only): cells are accessed per the ring protocol, which loom checks.
#[cfg(loom)]
unsafe impl Send for LoomBuf {}
// SAFETY (loom only): as above.
#[cfg(loom)]
unsafe impl Sync for LoomBuf {}

#[cfg(loom)]
impl Data {
    fn share(&self) -> Data {
        Data {
            buf: Arc::clone(&self.buf),
        }
    }

    /// # Safety
    /// Same contract as the non-loom `Data`: the bytes are within the capacity.
    pub(crate) unsafe fn read_word(&self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        // SAFETY: forwarded contract.
        unsafe { self.read(off, &mut b) };
        u64::from_ne_bytes(b)
    }

    /// # Safety
    /// Same contract as the non-loom `Data`: the bytes are within the capacity.
    pub(crate) unsafe fn write_word(&self, off: u64, word: u64) {
        // SAFETY: forwarded contract.
        unsafe { self.write(off, &word.to_ne_bytes()) }
    }

    /// # Safety
    /// Same contract as the non-loom `Data`: the bytes are within the capacity.
    pub(crate) unsafe fn write(&self, off: u64, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            // SAFETY: loom checks that no read of this cell races with the write.
            self.buf.cells[off as usize + i].with_mut(|p| unsafe { *p = *b });
        }
    }

    /// # Safety
    /// Same contract as the non-loom `Data`: the bytes are within the capacity.
    pub(crate) unsafe fn read(&self, off: u64, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: loom checks that no write of this cell races with the read.
            *b = self.buf.cells[off as usize + i].with(|p| unsafe { *p });
        }
    }

    /// # Safety
    /// Same contract as the non-loom `Data`: the bytes are within the capacity.
    pub(crate) unsafe fn read_append(&self, off: u64, len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + len, 0);
        // SAFETY: forwarded contract.
        unsafe { self.read(off, &mut out[start..]) }
    }
}
