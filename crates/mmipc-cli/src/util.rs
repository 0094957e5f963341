//! Small helpers shared by the commands: Ctrl-C and broken pipes, and the size and number
//! formats, which come from `mmipc-benchkit` (the home of what the benchmarks share, also
//! CPU pinning and the machine description) so that every tool prints them alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub(crate) use mmipc_benchkit::units::{fmt_rate as fmt_count, fmt_size, parse_size as size};

/// Nanoseconds as `0.45 µs` / `63.3 µs` / `1.25 ms`.
pub(crate) fn fmt_ns(ns: f64) -> String {
    if ns < 1e6 {
        format!("{} µs", mmipc_benchkit::units::fmt_us(ns))
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// A flag set by Ctrl-C or a termination request (SIGINT, SIGTERM, SIGHUP), installed once:
/// commands stop at the next message and exit cleanly, removing their files.
pub(crate) fn interrupted() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        // If a handler cannot be installed, Ctrl-C simply kills the process; the next
        // endpoint on the channel cleans up after it.
        let _ = ctrlc::set_handler(move || f.store(true, Ordering::Relaxed));
        flag
    })
    .clone()
}

/// Whether an I/O error means the reader of our stdout went away (`| head`).
pub(crate) fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}
