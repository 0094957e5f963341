//! Async endpoints across runtimes, next to hostile files, and mixed with sync publishes on
//! other threads (in-process publisher and subscriber; the cross-process suite is async.rs).
#![cfg(all(unix, feature = "tokio"))]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use mmipc::{OnFull, Publisher, Subscriber};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// CPU time of the calling thread: the executor thread of the current-thread runtime the
/// tests drive, where a spinning wait would burn it (the process's time would also count
/// the tests running beside it in other threads, and trip the bounds on a busy machine).
fn cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn pair(root: &Path, channel: &str, cap: usize) -> (Publisher, Subscriber) {
    let publisher = Publisher::builder(channel)
        .dir(root)
        .ring_capacity(cap)
        .on_full(OnFull::Block)
        .deliver_to_same_process(true)
        .build()
        .unwrap();
    let subscriber = Subscriber::builder(channel).dir(root).build().unwrap();
    publisher.wait_for_subscribers(1, WATCHDOG).unwrap();
    subscriber.wait_for_publishers(1, WATCHDOG).unwrap();
    (publisher, subscriber)
}

/// Fills the ring with publish_async until one does not complete within 50 ms (cancelled:
/// it leaves its message owed), in runtime `rt`. Returns how many completed.
fn fill(rt: &tokio::runtime::Runtime, publisher: &Publisher) -> usize {
    rt.block_on(async {
        let mut n = 0;
        loop {
            let msg = vec![7u8; 1000];
            match tokio::time::timeout(Duration::from_millis(50), publisher.publish_async(&msg))
                .await
            {
                Ok(r) => {
                    r.unwrap();
                    n += 1;
                }
                Err(_) => return n,
            }
        }
    })
}

/// Defect: the publisher's wake-up pipe stays registered with the runtime of its first
/// wait. Once that runtime is dropped, `readable()` fails at once on every call, and a
/// publish_async waiting for room in another runtime spins at 100% CPU until room appears.
#[test]
fn publish_async_in_a_second_runtime_does_not_spin() {
    let root = test_root();
    let (publisher, mut subscriber) = pair(root.path(), "rt-switch-pub", 4096);
    let rt_a = current_thread();
    let sent = fill(&rt_a, &publisher);
    drop(rt_a);
    let rt_b = current_thread();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(1000));
            // Free everything (the owed message and ours follow).
            let mut got = 0;
            while got < sent + 2 {
                subscriber.recv_timeout(WATCHDOG).unwrap();
                got += 1;
            }
        });
        let (c0, t0) = (cpu(), Instant::now());
        rt_b.block_on(publisher.publish_async(&[1u8; 1000]))
            .unwrap();
        let (busy, wall) = (cpu() - c0, t0.elapsed());
        println!("second runtime: {busy:?} CPU in {wall:?}");
        assert!(
            busy < wall / 5,
            "publish_async burned {busy:?} of CPU in {wall:?} waiting for room"
        );
    });
}

/// Defect: the subscriber's pipe stays registered with the reactor of the runtime of its
/// first wait. If that runtime still exists but is not being driven (a current-thread
/// runtime outside `block_on`), a receive in another runtime is woken only by the 500 ms
/// safety timer (and counted as a rescued wake-up).
#[test]
fn recv_async_in_a_second_runtime_is_woken_promptly() {
    let root = test_root();
    let (publisher, mut subscriber) = pair(root.path(), "rt-switch-sub", 1 << 16);
    let rt_a = current_thread();
    // Park once in runtime A (registers the pipe with A's reactor).
    let r = rt_a.block_on(async {
        tokio::time::timeout(Duration::from_millis(20), subscriber.recv_async())
            .await
            .map(|_| ())
    });
    assert!(r.is_err());
    let rt_b = current_thread();
    let rescued = mmipc::ring::rescued_wakeups();
    let mut worst = Duration::ZERO;
    for i in 0..3u8 {
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                publisher.publish(&[i]).unwrap();
            });
            let t0 = Instant::now();
            let msg = rt_b.block_on(subscriber.recv_async());
            assert_eq!(msg.payload(), &[i]);
            worst = worst.max(t0.elapsed());
        });
    }
    drop(rt_a);
    println!("worst latency {worst:?}");
    // The defect waited for the 500 ms safety timer (and counted a rescue).
    assert!(worst < Duration::from_millis(450), "woken after {worst:?}");
    assert_eq!(mmipc::ring::rescued_wakeups(), rescued, "rescued wake-ups");
}

/// Control: once runtime A is dropped the subscriber re-registers (this passes).
#[test]
fn recv_async_after_the_first_runtime_is_dropped() {
    let root = test_root();
    let (publisher, mut subscriber) = pair(root.path(), "rt-drop-sub", 1 << 16);
    let rt_a = current_thread();
    let r = rt_a.block_on(async {
        tokio::time::timeout(Duration::from_millis(20), subscriber.recv_async())
            .await
            .map(|_| ())
    });
    assert!(r.is_err());
    drop(rt_a);
    let rt_b = current_thread();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            publisher.publish(b"x").unwrap();
        });
        let t0 = Instant::now();
        let rescued = mmipc::ring::rescued_wakeups();
        rt_b.block_on(subscriber.recv_async());
        assert_eq!(mmipc::ring::rescued_wakeups(), rescued, "rescued wake-ups");
        assert!(
            t0.elapsed() < Duration::from_millis(450),
            "{:?}",
            t0.elapsed()
        );
    });
}

fn find_file(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    files_under(dir)
        .into_iter()
        .find(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .unwrap()
}

/// A peer that puts a directory at `sub-<id>.wake` before the first async receive makes
/// the pipe impossible: the subscriber falls back to looking every millisecond. Measures
/// what an idle receive then costs (a report, not a strict bound: asserts < 10% of a core).
#[test]
fn a_directory_at_the_wake_name_does_not_make_an_idle_receive_spin() {
    let root = test_root();
    let (_publisher, mut subscriber) = pair(root.path(), "hostile-dir", 1 << 16);
    let bell = find_file(root.path(), "sub-", ".bell");
    std::fs::create_dir(bell.with_extension("wake")).unwrap();
    let rt = current_thread();
    let (c0, t0) = (cpu(), Instant::now());
    let r = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(1000), subscriber.recv_async())
            .await
            .map(|_| ())
    });
    assert!(r.is_err());
    let (busy, wall) = (cpu() - c0, t0.elapsed());
    println!("idle receive without a pipe: {busy:?} CPU in {wall:?}");
    assert!(busy < wall / 10, "{busy:?} CPU in {wall:?}");
}

/// Defect: an async publish takes the publisher's `out` mutex (a std mutex) in the
/// executor thread. A sync publish on another thread holds it while it waits for room (the
/// backlog, then its own message), so the async publish blocks the whole runtime thread:
/// here a ticker task of the same current-thread runtime stalls for most of a second.
#[test]
fn a_sync_publish_on_another_thread_does_not_block_the_runtime() {
    let root = test_root();
    let (publisher, mut subscriber) = pair(root.path(), "mixed", 4096);
    let publisher = Arc::new(publisher);
    let rt = current_thread();
    let sent = fill(&rt, &publisher); // leaves a backlog
    let worst_gap = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        let p = Arc::clone(&publisher);
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let t = Instant::now();
            p.publish(b"sync").unwrap(); // blocks holding the lock until the reader drains
            println!("sync publish took {:?}", t.elapsed());
        });
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            let mut got = 0;
            while got < sent + 3 {
                subscriber.recv_timeout(WATCHDOG).unwrap();
                got += 1;
            }
        });
        rt.block_on(async {
            let gap = Arc::clone(&worst_gap);
            let ticker = tokio::spawn(async move {
                let mut last = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let now = Instant::now();
                    gap.fetch_max((now - last).as_millis() as u64, Ordering::Relaxed);
                    last = now;
                }
            });
            let p = Arc::clone(&publisher);
            let publish = tokio::spawn(async move { p.publish_async(b"async").await });
            let t = Instant::now();
            publish.await.unwrap().unwrap();
            println!("async publish took {:?} (sent {sent})", t.elapsed());
            // Let the ticker see the stall (it is aborted right after otherwise).
            tokio::time::sleep(Duration::from_millis(20)).await;
            ticker.abort();
        });
    });
    let gap = worst_gap.load(Ordering::Relaxed);
    println!("worst ticker gap {gap} ms");
    // The defect blocked it for about a second (until the reader drained the ring).
    assert!(gap < 400, "the runtime thread was blocked for {gap} ms");
}
