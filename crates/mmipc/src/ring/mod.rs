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

mod consumer;
mod control;
mod error;
mod layout;
mod producer;
mod region;
mod segment;
mod wait;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub(crate) use consumer::Budget;
pub use consumer::{Consumer, DEFAULT_MAX_MESSAGE_LEN, ReadGuard};
pub(crate) use control::RingControl;
pub use error::{RingError, Violation};
pub(crate) use layout::Bell as RingBell;
pub use layout::{MAX_CAPACITY, MIN_CAPACITY};
pub use producer::{Producer, WriteGuard};
use region::Region;
pub(crate) use region::{AtomicHeader, MappedBytes, MappedHeader, SharedBell, header_of};
pub use segment::RingSegment;
#[cfg(not(loom))]
pub(crate) use wait::OsFutex;
pub use wait::rescued_wakeups;
pub use wait::{DEFAULT_SPIN, WaitStrategy};
#[cfg(all(any(unix, windows), feature = "tokio"))]
pub(crate) use wait::{SAFETY_RECHECK, count_rescued};
pub(crate) use wait::{WaitError, notify, wait_until};

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
