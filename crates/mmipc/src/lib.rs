//! # mmipc — publish/subscribe between processes over shared memory
//!
//! mmipc moves byte messages between processes on one machine through shared memory, with a
//! kernel wake-up (futex) for a side that has nothing to do and no system call at all for a
//! side that is busy.
//!
//! The foundation available today is [`ring`]: a lossless single-producer single-consumer
//! ring of variable-length messages that lives in a shared segment mapped by two processes.
//! Publishers, subscribers and discovery build on it.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mmipc::ring::{RingSegment, WaitStrategy};
//!
//! // Process A: create the segment and write.
//! let mut tx = RingSegment::create("/dev/shm/demo-ring", 1 << 20)?.into_producer();
//! tx.write(b"hello from A")?;
//!
//! // Process B: open it and read, sleeping in the kernel when idle.
//! let mut rx = RingSegment::open("/dev/shm/demo-ring")?.into_consumer();
//! rx.set_wait_strategy(WaitStrategy::default());
//! let mut buf = Vec::new();
//! rx.read(&mut buf)?;
//! assert_eq!(buf, b"hello from A");
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

mod error;
pub mod ring;
mod sync;
mod sys;

pub use error::{Error, Result};
