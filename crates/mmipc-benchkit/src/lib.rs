//! Helpers shared by mmipc's benchmarks (`mmipc bench` in the CLI, and `mmipc-bench` with
//! its `compare` and `ring` commands): one home for what each of them needs and none of them
//! owns.
//!
//! * [`os`]: the CPUs a process may run on and pinning to one, peers that die with their
//!   parent, and the machine line of a report (CPU model, kernel, UTC time).
//! * [`units`]: byte sizes on the command line (`64`, `4K`, `1MiB`) and in reports, and the
//!   number formats of the tables (µs, thousands, rates, MB/s, ratios).
//! * [`table`]: padded Markdown tables, and the median.
//!
//! The crate depends on nothing but `libc`, so the CLI can use it without taking in the
//! side-by-side benchmark's dependencies (iceoryx2). Outside Linux, pinning and
//! die-with-parent do nothing.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod os;
pub mod table;
pub mod units;
