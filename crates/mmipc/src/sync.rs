//! The one place atomics come from. Under `cfg(loom)` these are loom's model-checked types,
//! so the ring's protocol can be explored exhaustively; otherwise they are `core`'s.
//! `clippy.toml` forbids using `std::sync::atomic` types anywhere else.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(not(loom))]
#[allow(clippy::disallowed_types)]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// `std::hint::spin_loop`, or a loom yield so the model checker explores other threads.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
