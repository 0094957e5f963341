//! macOS backend: the Unix parts (`unix.rs`: files mapped shared, `flock(2)` lock files,
//! directories) plus what is macOS's own: the wake-up of shared words and where segments live.
//!
//! The wake-up is the kernel's address wait ("ulock"), the futex of Darwin, with the shared
//! flag so that the kernel keys sleepers by the memory object rather than by the virtual
//! address: `os_sync_wait_on_address` / `os_sync_wake_by_address_{any,all}` (public API since
//! macOS 14.4), looked up at run time so that the binary still loads on older systems, which
//! get `__ulock_wait` / `__ulock_wake` (in libSystem since macOS 10.12) instead. Both reach the
//! same kernel primitive with the same key, so two processes never disagree.
//!
//! macOS has no tmpfs at a known place (`/dev/shm` does not exist): segments are plain files
//! beside the records, under the per-user `$TMPDIR` (`/var/folders/…`, mode 0700) by default.
//! A mapped file that is never `fsync`ed lives in the unified buffer cache; the kernel writes
//! it back lazily, which costs disk bandwidth but not latency.

use std::ffi::{CStr, c_int, c_void};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::FutexWait;
use crate::sync::{FutexWord, Ordering};

/// The default root: `$TMPDIR/mmipc` when `TMPDIR` names an absolute directory (on macOS it
/// is per-user and private: `/var/folders/<..>/<..>/T/`, mode 0700); else none, and the
/// portable choice applies (`/tmp/mmipc-<uid>`, see `channel::default_root`).
pub(crate) fn platform_root() -> Option<PathBuf> {
    let tmp = PathBuf::from(std::env::var_os("TMPDIR")?);
    (tmp.is_absolute() && tmp.is_dir()).then(|| tmp.join("mmipc"))
}

/// Segments live beside the records on macOS: there is no memory file system to prefer
/// (a mapped file stays in the buffer cache), so every directory qualifies.
pub(crate) fn is_memory_fs(_path: &Path) -> bool {
    true
}

/// Sleeps on and wakes 32-bit words of shared memory: the kernel's address wait, which
/// needs no object of its own (zero-sized, like the Linux futex).
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
        wait_on_address(word, expected, timeout)
    }

    /// Wakes every sleeper on `word`.
    #[inline]
    pub(crate) fn wake(&self, word: &FutexWord) {
        wake_by_address(word, true);
    }
}

/// `UL_COMPARE_AND_WAIT_SHARED` of xnu's `sys/ulock.h`: compare a 32-bit word and sleep, keyed
/// by the memory object (the word may be mapped at different addresses in other processes).
const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
/// `ULF_WAKE_ALL` of `sys/ulock.h`: wake every sleeper, not one.
const ULF_WAKE_ALL: u32 = 0x100;

// The private system calls `os_sync_*` is built on; exported by libSystem (libsystem_kernel)
// since macOS 10.12 and used by libc++, libdispatch and the Rust and Go runtimes.
unsafe extern "C" {
    fn __ulock_wait(operation: u32, addr: *mut c_void, value: u64, timeout_us: u32) -> c_int;
    fn __ulock_wake(operation: u32, addr: *mut c_void, wake_value: u64) -> c_int;
}

/// `os_sync_wait_on_address(addr, value, size, flags)`.
type WaitFn = unsafe extern "C" fn(
    *mut c_void,
    u64,
    libc::size_t,
    libc::os_sync_wait_on_address_flags_t,
) -> c_int;
/// `os_sync_wait_on_address_with_timeout(addr, value, size, flags, clockid, timeout_ns)`.
type WaitTimeoutFn = unsafe extern "C" fn(
    *mut c_void,
    u64,
    libc::size_t,
    libc::os_sync_wait_on_address_flags_t,
    libc::os_clockid_t,
    u64,
) -> c_int;
/// `os_sync_wake_by_address_any` / `_all(addr, size, flags)`.
type WakeFn =
    unsafe extern "C" fn(*mut c_void, libc::size_t, libc::os_sync_wake_by_address_flags_t) -> c_int;

/// The `os_sync` functions of macOS 14.4 and later.
struct OsSync {
    wait: WaitFn,
    wait_timeout: WaitTimeoutFn,
    wake_any: WakeFn,
    wake_all: WakeFn,
}

/// The `os_sync` functions, looked up once (weak linking by hand: naming them directly would
/// make the binary fail to load on macOS before 14.4); `None` where any is missing.
fn os_sync() -> Option<&'static OsSync> {
    static FNS: OnceLock<Option<OsSync>> = OnceLock::new();
    FNS.get_or_init(|| {
        let wait = lookup(c"os_sync_wait_on_address")?;
        let wait_timeout = lookup(c"os_sync_wait_on_address_with_timeout")?;
        let wake_any = lookup(c"os_sync_wake_by_address_any")?;
        let wake_all = lookup(c"os_sync_wake_by_address_all")?;
        // SAFETY: each symbol is the libSystem function of that name, whose C signature
        // (os/os_sync_wait_on_address.h) is the one of the pointer type it becomes; data and
        // function pointers have the same size and representation on Darwin.
        unsafe {
            Some(OsSync {
                wait: std::mem::transmute::<*mut c_void, WaitFn>(wait),
                wait_timeout: std::mem::transmute::<*mut c_void, WaitTimeoutFn>(wait_timeout),
                wake_any: std::mem::transmute::<*mut c_void, WakeFn>(wake_any),
                wake_all: std::mem::transmute::<*mut c_void, WakeFn>(wake_all),
            })
        }
    })
    .as_ref()
}

/// The address of the exported function `name` in any loaded image, if there is one.
fn lookup(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: RTLD_DEFAULT is a pseudo-handle dlsym accepts; `name` is NUL-terminated and
    // only read.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// The longest single sleep we ask of the kernel: `__ulock_wait` takes a 32-bit count of
/// microseconds (about 71 minutes), and a huge `os_sync` timeout overflows the kernel's
/// deadline (`EINVAL`). A longer timeout sleeps this long and reports a (spurious) wake-up.
const LONGEST_SLEEP: Duration = Duration::from_micros(u32::MAX as u64);

/// The word's size, in the form the `os_sync` calls take.
const WORD_SIZE: libc::size_t = std::mem::size_of::<FutexWord>();

/// Sleeps while `word` holds `expected`, at most `timeout` (forever if `None`).
pub(crate) fn wait_on_address(
    word: &FutexWord,
    expected: u32,
    timeout: Option<Duration>,
) -> FutexWait {
    // The kernel returns success at once, like a wake-up, when the word differs: look first,
    // so that the caller learns of the change as on Linux.
    if word.load(Ordering::Acquire) != expected {
        return FutexWait::ValueChanged;
    }
    if timeout == Some(Duration::ZERO) {
        return FutexWait::TimedOut;
    }
    let capped = timeout.map(|d| d.min(LONGEST_SLEEP));
    let addr = word.as_ptr().cast::<c_void>();
    let value = u64::from(expected);
    let r = match (os_sync(), capped) {
        // SAFETY: `addr` is a live 32-bit atomic, aligned to its size, for the duration of
        // the call; the kernel only reads it. The shared flag matches every wake of it.
        (Some(f), None) => unsafe {
            (f.wait)(addr, value, WORD_SIZE, libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED)
        },
        (Some(f), Some(d)) => {
            // At least 1 ns: zero is an error (and a zero duration returned above).
            let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
            // SAFETY: as above; the clock is the only one the call accepts and `ns` is a
            // relative timeout in 1..=LONGEST_SLEEP.
            unsafe {
                (f.wait_timeout)(
                    addr,
                    value,
                    WORD_SIZE,
                    libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED,
                    libc::OS_CLOCK_MACH_ABSOLUTE_TIME,
                    ns,
                )
            }
        }
        (None, _) => {
            // Microseconds, at least 1 (0 means forever); `capped` fits in u32.
            let us = capped.map_or(0, |d| {
                u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
            });
            // SAFETY: `addr` is a live, aligned 32-bit atomic for the duration of the call;
            // the kernel only reads it. The operation matches every wake of it.
            unsafe { __ulock_wait(UL_COMPARE_AND_WAIT_SHARED, addr, value, us) }
        }
    };
    if r >= 0 {
        return FutexWait::Woken;
    }
    match io::Error::last_os_error().raw_os_error() {
        // Only a full timeout is reported as one: a capped sleep that ran out is a
        // spurious wake-up to the caller, which re-checks and sleeps again.
        Some(libc::ETIMEDOUT) if capped == timeout => FutexWait::TimedOut,
        // EINTR, ENOMEM, EFAULT (transient), a capped timeout: report a wake-up; callers
        // re-check their condition.
        _ => FutexWait::Woken,
    }
}

/// Wakes the sleepers on `word`: all of them, or one.
pub(crate) fn wake_by_address(word: &FutexWord, all: bool) {
    let addr = word.as_ptr().cast::<c_void>();
    loop {
        let r = match os_sync() {
            Some(f) => {
                let wake = if all { f.wake_all } else { f.wake_any };
                // SAFETY: `addr` is a live, aligned 32-bit atomic; the kernel does not write
                // it. The size and shared flag match every wait on it.
                unsafe { wake(addr, WORD_SIZE, libc::OS_SYNC_WAKE_BY_ADDRESS_SHARED) }
            }
            None => {
                let op = UL_COMPARE_AND_WAIT_SHARED | if all { ULF_WAKE_ALL } else { 0 };
                // SAFETY: as above; the operation matches every wait on it.
                unsafe { __ulock_wake(op, addr, 0) }
            }
        };
        // ENOENT means nobody was asleep; only an interrupted wake is retried.
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn wait_on_address_reports_value_change_timeout_and_wake() {
        let word = Arc::new(FutexWord::new(0));
        assert_eq!(wait_on_address(&word, 1, None), FutexWait::ValueChanged);
        assert_eq!(
            wait_on_address(&word, 0, Some(Duration::from_millis(1))),
            FutexWait::TimedOut
        );
        assert_eq!(
            wait_on_address(&word, 0, Some(Duration::ZERO)),
            FutexWait::TimedOut
        );
        let w2 = Arc::clone(&word);
        let sleeper = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while w2.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                wait_on_address(&w2, 0, Some(Duration::from_secs(1)));
            }
            w2.load(Ordering::Acquire)
        });
        std::thread::sleep(Duration::from_millis(20));
        word.store(7, Ordering::Release);
        wake_by_address(&word, true);
        assert_eq!(sleeper.join().unwrap(), 7);
        // Waking one when nobody sleeps is harmless (ENOENT).
        wake_by_address(&word, false);
    }

    #[test]
    fn platform_root_is_under_an_absolute_tmpdir() {
        if let Some(root) = platform_root() {
            assert!(root.is_absolute());
            assert!(root.ends_with("mmipc"));
        }
    }
}
