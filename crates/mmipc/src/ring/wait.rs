//! Blocking: spin, then register as a waiter, re-check, and sleep on a futex word.
//!
//! The notifier's side ([`notify`]) costs a fence and one load when nobody is parked; the
//! wake syscall happens only when a waiter registered. The lost-wake-up race is closed
//! Dekker-style: the waiter increments `waiters` then re-checks its condition, the notifier
//! publishes its change then loads `waiters`, with a `SeqCst` fence on both sides, so at least
//! one of them sees the other's write. A waiter also sleeps only while the bell's `seq` still
//! holds the value read before registering, so a ring between registration and sleep is not
//! lost either.

use std::time::{Duration, Instant};

use super::layout::Bell;
use crate::sync::{AtomicU32, Ordering, ProcessLocalAtomicU64, fence, spin_hint};
use crate::sys::FutexWait;

/// How a blocked reader or writer waits for its peer.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mmipc::ring::WaitStrategy;
///
/// // Lowest latency, burns a core while waiting.
/// let _spin = WaitStrategy::Spin;
/// // The default: spin briefly, then sleep in the kernel.
/// let default = WaitStrategy::default();
/// assert!(matches!(default, WaitStrategy::SpinThenPark(_)));
/// // Least CPU: sleep at once.
/// let _park = WaitStrategy::Park;
/// # let _ = Duration::ZERO;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-wait; never sleeps. Lowest latency, one core at 100% while waiting.
    Spin,
    /// Busy-wait for the given time, then sleep on a futex until woken.
    SpinThenPark(Duration),
    /// Sleep on a futex at once.
    Park,
}

/// The spin window of [`WaitStrategy::default`]. A peer that answers within this time is
/// seen with spin-mode latency; an idle wait costs this much CPU once, then none.
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::WaitStrategy::default(), mmipc::WaitStrategy::SpinThenPark(mmipc::ring::DEFAULT_SPIN));
/// ```
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::SpinThenPark(DEFAULT_SPIN)
    }
}

/// Spins of a wait before it first yields its CPU (`sched_yield`), and how often after.
const YIELD_AFTER: u32 = 256;
const YIELD_EVERY: u32 = 64;

/// Longest single sleep: a waiter re-checks at least this often, so a peer that corrupted
/// the `waiters` count (and thus never rings) delays us but cannot hang us.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// Sleep and wake on a 32-bit word: the kernel futex in production, a model under loom.
pub(crate) trait Futex {
    /// Sleeps while `word == expected`, at most `timeout`. May return spuriously. Says
    /// whether the sleep ended by its timeout ([`FutexWait::TimedOut`]) or otherwise.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait;
    /// Wakes every thread sleeping on `word`.
    fn wake(&self, word: &AtomicU32);
}

/// The operating system's wake-up for the words of one piece of memory ([`sys::Waker`]:
/// the futex itself on Linux, zero-sized; a named event per word on Windows).
///
/// [`sys::Waker`]: crate::sys::Waker
#[cfg(not(loom))]
#[derive(Debug, Default, Clone)]
pub(crate) struct OsFutex(crate::sys::Waker);

#[cfg(not(loom))]
impl OsFutex {
    /// The wake-up for words inside `segment` (peers in other processes reach the same one).
    pub(crate) fn of(segment: &crate::sys::Segment) -> OsFutex {
        OsFutex(segment.waker())
    }
}

#[cfg(all(windows, not(loom)))]
impl OsFutex {
    /// The waitable event of `word`, for a waiter in an event loop.
    pub(crate) fn listener(&self, word: &AtomicU32) -> Option<crate::sys::Listener> {
        self.0.listener(word)
    }
}

#[cfg(not(loom))]
impl Futex for OsFutex {
    #[inline]
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait {
        self.0.wait(word, expected, timeout)
    }
    #[inline]
    fn wake(&self, word: &AtomicU32) {
        self.0.wake(word);
    }
}

/// A futex for loom: a mutex and condition variable, checked and notified under the lock,
/// which is exactly the futex contract. Loom reports a deadlock if a wake-up is lost.
#[cfg(loom)]
#[derive(Clone, Default)]
pub(crate) struct LoomFutex(std::sync::Arc<(loom::sync::Mutex<()>, loom::sync::Condvar)>);

#[cfg(loom)]
impl LoomFutex {
    /// Loom models use heap memory only; a segment's words get a fresh model futex.
    pub(crate) fn of(_segment: &crate::sys::Segment) -> LoomFutex {
        LoomFutex::default()
    }
}

#[cfg(loom)]
impl Futex for LoomFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> FutexWait {
        let (lock, cv) = &*self.0;
        let guard = lock.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return FutexWait::ValueChanged;
        }
        drop(cv.wait(guard).unwrap());
        FutexWait::Woken
    }
    fn wake(&self, word: &AtomicU32) {
        let _ = word;
        let (lock, cv) = &*self.0;
        let _guard = lock.lock().unwrap();
        cv.notify_all();
    }
}

/// The futex the ring uses in this build.
#[cfg(not(loom))]
pub(crate) type RingFutex = OsFutex;
/// The futex the ring uses in this build.
#[cfg(loom)]
pub(crate) type RingFutex = LoomFutex;

/// Rings `bell` if anyone is parked on it; returns whether it rang. Call after publishing
/// the change the waiter waits for (a position store).
#[inline]
pub(crate) fn notify(futex: &impl Futex, bell: &Bell) -> bool {
    // SYNC POINT wake: this fence orders our position store before the `waiters` load; it
    // pairs with the fence in `wait_until` (Dekker: one side must see the other's write).
    fence(Ordering::SeqCst);
    if bell.waiters.load(Ordering::Relaxed) != 0 {
        bell.seq.fetch_add(1, Ordering::Release);
        futex.wake(&bell.seq);
        true
    } else {
        false
    }
}

/// Waits that found their condition true after a sleep that ran out its timeout (the 500 ms
/// cap, or the caller's deadline) with the bell not rung meanwhile: the cap rescued a
/// wake-up the protocol lost. Must stay zero; tests check it.
///
/// A sleep ended early with the bell's `seq` unchanged is not counted, even when the
/// condition is then true: that is a wake-up meant for an earlier ring (a waker delayed
/// between its `seq` bump and its wake call, which the OS then delivers to our next sleep;
/// frequent under Wine, where `SetEvent` is a round trip to the wine server, possible on every
/// platform), and a message that came after we unregistered (whose writer rightly did not
/// ring). Nothing was delayed. (Under loom, whose futex wakes every sleeper of a ring, it
/// counts nothing meaningful and nothing reads it.)
static RESCUED: ProcessLocalAtomicU64 = ProcessLocalAtomicU64::new(0);

/// How many waits in this process found their condition true after a sleep that ran out its
/// timeout with no ring of the bell (a lost wake-up rescued by the sleep cap). Zero unless the wake-up protocol
/// is broken; exposed for tests.
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::ring::rescued_wakeups(), 0);
/// ```
pub fn rescued_wakeups() -> u64 {
    RESCUED.load(Ordering::Relaxed)
}

#[cfg(all(any(unix, windows), feature = "tokio"))]
/// Counts a wait of another kind (an async receive) that its safety timer, not a ring,
/// ended and that found its condition true: a lost wake-up.
pub(crate) fn count_rescued() {
    RESCUED.fetch_add(1, Ordering::Relaxed);
}

/// The longest a waiter sleeps before checking again by itself (the safety net).
#[cfg(all(any(unix, windows), feature = "tokio"))]
pub(crate) const SAFETY_RECHECK: Duration = MAX_SLEEP;

/// Why a wait ended without its condition becoming true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitError<E> {
    /// The deadline passed.
    TimedOut,
    /// The condition reported an error (the ring closed, a violation).
    Failed(E),
}

/// Waits until `ready` returns `Ok(true)`, following `strategy`, until `deadline`.
///
/// `ready` must be cheap and side-effect free apart from refreshing cached positions.
pub(crate) fn wait_until<E>(
    futex: &impl Futex,
    bell: &Bell,
    strategy: WaitStrategy,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> Result<bool, E>,
) -> Result<(), WaitError<E>> {
    let check = |ready: &mut dyn FnMut() -> Result<bool, E>| ready().map_err(WaitError::Failed);
    if check(&mut ready)? {
        return Ok(());
    }
    let spin_for = match strategy {
        WaitStrategy::Spin => None,
        WaitStrategy::SpinThenPark(d) => Some(d),
        WaitStrategy::Park => Some(Duration::ZERO),
    };
    if spin_for != Some(Duration::ZERO) {
        let start = Instant::now();
        let mut i = 0u32;
        loop {
            spin_hint();
            if check(&mut ready)? {
                return Ok(());
            }
            i = i.wrapping_add(1);
            // A long wait yields the CPU now and then: when spinners outnumber cores (several
            // subscribers on a small machine), the thread we wait for may need this one.
            // The first spins never yield (a peer answering within a few µs is seen at once).
            if !cfg!(loom) && i >= YIELD_AFTER && i.is_multiple_of(YIELD_EVERY) {
                std::thread::yield_now();
            }
            // Reading the clock costs ~20 ns; do it every 64 spins.
            if cfg!(loom) || i.is_multiple_of(64) {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Err(WaitError::TimedOut);
                }
                if spin_for.is_some_and(|s| now.duration_since(start) >= s) {
                    break;
                }
                if cfg!(loom) && spin_for.is_some() {
                    break; // one spin is enough to explore under the model checker
                }
            }
        }
    }
    loop {
        let seq = bell.seq.load(Ordering::Acquire);
        bell.waiters.fetch_add(1, Ordering::Relaxed);
        // SYNC POINT wake: pairs with the fence in `notify`.
        fence(Ordering::SeqCst);
        let outcome = check(&mut ready);
        let timeout = match deadline {
            None => Some(MAX_SLEEP),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left.min(MAX_SLEEP)),
                _ => None,
            },
        };
        match outcome {
            Ok(false) if timeout.is_some() => {}
            other => {
                bell.waiters.fetch_sub(1, Ordering::Relaxed);
                return match other {
                    Ok(true) => Ok(()),
                    Err(e) => Err(e),
                    Ok(false) => Err(WaitError::TimedOut),
                };
            }
        }
        let slept = futex.wait(&bell.seq, seq, if cfg!(loom) { None } else { timeout });
        bell.waiters.fetch_sub(1, Ordering::Relaxed);
        let rung = bell.seq.load(Ordering::Acquire) != seq;
        if check(&mut ready)? {
            if !rung && slept == FutexWait::TimedOut {
                RESCUED.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
    }
}
