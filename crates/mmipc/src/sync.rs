//! The one place atomics come from. Under `cfg(loom)` the ring's atomics are loom's
//! model-checked types, so the ring's protocol can be explored exhaustively; otherwise they are
//! `core`'s. Everything else in the crate names these aliases, never `core`/`std` atomics:
//! `clippy.toml` lists those as disallowed types and the crate root denies the lint. The
//! aliases carry the `allow`, so their users are not flagged (a lint on a re-export would be).
//!
//! Two aliases stay real atomics under loom, for values outside the model: a process-local
//! counter ([`ProcessLocalAtomicU64`]) and the word handed to the kernel's futex
//! ([`FutexWord`]).

#[cfg(not(loom))]
use core::sync::atomic as imp;
#[cfg(loom)]
use loom::sync::atomic as imp;

pub(crate) use imp::{Ordering, fence};

/// An atomic flag (model-checked under loom).
#[allow(clippy::disallowed_types)]
pub(crate) type AtomicBool = imp::AtomicBool;
/// An atomic `u8` (model-checked under loom).
#[allow(clippy::disallowed_types)]
pub(crate) type AtomicU8 = imp::AtomicU8;
/// An atomic `u32` (model-checked under loom).
#[allow(clippy::disallowed_types)]
pub(crate) type AtomicU32 = imp::AtomicU32;
/// An atomic `u64` (model-checked under loom).
#[allow(clippy::disallowed_types)]
pub(crate) type AtomicU64 = imp::AtomicU64;

/// A process-local counter that stays a real atomic under loom: statistics kept outside the
/// model (a `static`, shared by every loom execution), never part of the ring's protocol.
#[allow(clippy::disallowed_types)]
pub(crate) type ProcessLocalAtomicU64 = core::sync::atomic::AtomicU64;

/// The 32-bit word the platform's futex calls take (`sys`): always the real atomic, because
/// the kernel reads its address. In production it is the same type as [`AtomicU32`].
#[allow(clippy::disallowed_types)]
pub(crate) type FutexWord = core::sync::atomic::AtomicU32;

/// `std::hint::spin_loop`, or a loom yield so the model checker explores other threads.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Reports plain (non-atomic) accesses to shared bytes to the model checker: under loom, one
/// tracked cell per 8-byte word (records never share a word), so loom fails any read or write
/// that the protocol does not order after the last conflicting access. Without loom it is
/// zero-sized and its methods compile to nothing.
#[derive(Clone)]
pub(crate) struct AccessLog {
    #[cfg(loom)]
    words: std::sync::Arc<[loom::cell::UnsafeCell<()>]>,
}

impl AccessLog {
    /// A log for `len` bytes.
    #[inline]
    pub(crate) fn new(len: u64) -> AccessLog {
        let _ = len;
        AccessLog {
            #[cfg(loom)]
            words: (0..len.div_ceil(8))
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        }
    }

    /// Bytes `off..off + len` are being read.
    #[inline(always)]
    pub(crate) fn read(&self, off: u64, len: usize) {
        #[cfg(loom)]
        for w in self.words_of(off, len) {
            self.words[w].with(|_| ());
        }
        let _ = (off, len);
    }

    /// Bytes `off..off + len` are being written.
    #[inline(always)]
    pub(crate) fn write(&self, off: u64, len: usize) {
        #[cfg(loom)]
        for w in self.words_of(off, len) {
            self.words[w].with_mut(|_| ());
        }
        let _ = (off, len);
    }

    #[cfg(loom)]
    fn words_of(&self, off: u64, len: usize) -> std::ops::Range<usize> {
        let start = (off / 8) as usize;
        let end = (off + len as u64).div_ceil(8) as usize;
        start..end.max(start)
    }
}
