//! Linux backend: the Unix parts (`unix.rs`: files mapped shared, `flock(2)` lock files,
//! directories) plus what is Linux's own: `futex(2)` without the private flag as the wake-up
//! of shared words, and tmpfs/ramfs detection with `statfs(2)`.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::FutexWait;
use crate::sync::FutexWord;

/// Whether `path` lives on a memory file system (tmpfs or ramfs), where shared segments cost
/// no disk I/O.
pub(crate) fn is_memory_fs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value for the out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    #[allow(clippy::unnecessary_cast)] // f_type's integer type differs between libcs
    let kind = st.f_type as i64;
    kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
}

/// Sleeps on and wakes 32-bit words of shared memory: the futex, which needs no object of
/// its own (zero-sized, so the ring's hot path pays nothing for it).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Waker;

impl Waker {
    /// Sleeps while `word` holds `expected`, at most `timeout`; may return spuriously.
    #[inline]
    pub(crate) fn wait(
        &self,
        word: &FutexWord,
        expected: u32,
        timeout: Option<Duration>,
    ) -> FutexWait {
        futex_wait(word, expected, timeout)
    }

    /// Wakes every sleeper on `word`.
    #[inline]
    pub(crate) fn wake(&self, word: &FutexWord) {
        futex_wake(word, u32::MAX);
    }
}

/// Sleeps while `word` holds `expected`, at most `timeout` (forever if `None`).
pub(crate) fn futex_wait(word: &FutexWord, expected: u32, timeout: Option<Duration>) -> FutexWait {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        // Always below 10^9, fits in any c_long.
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic for the duration of the call; the kernel
    // only reads it. `ts_ptr` is null or points at a timespec on our stack. FUTEX_WAIT ignores
    // the last two arguments. No private flag: the word may be shared with other processes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            0usize,
            0u32,
        )
    };
    if r == 0 {
        return FutexWait::Woken;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => FutexWait::ValueChanged,
        Some(libc::ETIMEDOUT) => FutexWait::TimedOut,
        // EINTR, or anything unexpected: report a wake-up; callers re-check their condition.
        _ => FutexWait::Woken,
    }
}

/// Wakes up to `n` sleepers on `word`; returns how many were woken.
pub(crate) fn futex_wake(word: &FutexWord, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not dereference the
    // remaining arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            0usize,
            0usize,
            0u32,
        )
    };
    usize::try_from(r).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn futex_wait_reports_value_change_timeout_and_wake() {
        let word = Arc::new(FutexWord::new(0));
        assert_eq!(futex_wait(&word, 1, None), FutexWait::ValueChanged);
        assert_eq!(
            futex_wait(&word, 0, Some(Duration::from_millis(1))),
            FutexWait::TimedOut
        );
        let w2 = Arc::clone(&word);
        let sleeper = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while w2.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                futex_wait(&w2, 0, Some(Duration::from_secs(1)));
            }
            w2.load(Ordering::Acquire)
        });
        std::thread::sleep(Duration::from_millis(20));
        word.store(7, Ordering::Release);
        futex_wake(&word, u32::MAX);
        assert_eq!(sleeper.join().unwrap(), 7);
        assert_eq!(futex_wake(&word, 1), 0, "nobody left to wake");
    }
}
