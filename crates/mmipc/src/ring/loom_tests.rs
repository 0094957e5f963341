//! Loom models of the ring protocol. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p mmipc --lib --release loom`.
//!
//! The data area is made of loom-tracked cells, so any read of a byte that is not ordered
//! after its write (a missing Release/Acquire pair) fails the model; the futex is a loom
//! mutex + condvar, so a lost wake-up shows up as a deadlock.

use loom::thread;

use super::*;

/// Publish/consume hand-off: two messages (one fragmented) cross intact, and close is seen
/// only after both.
#[test]
fn loom_hand_off_delivers_whole_messages_in_order() {
    loom::model(|| {
        let (mut tx, mut rx) = with_capacity(64);
        tx.set_wait_strategy(WaitStrategy::Park);
        rx.set_wait_strategy(WaitStrategy::Park);
        let writer = thread::spawn(move || {
            tx.write(&[1, 2, 3]).unwrap();
            tx.write(&[9; 40]).unwrap(); // 48-byte record > capacity / 2: fragmented
        });
        let mut buf = Vec::new();
        rx.read(&mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3]);
        rx.read(&mut buf).unwrap();
        assert_eq!(buf, [9; 40]);
        assert_eq!(rx.read(&mut buf), Err(RingError::Closed));
        writer.join().unwrap();
    });
}

/// The lost-wake-up race on both bells: the producer fills the ring and parks for space while
/// the consumer parks for data; neither may sleep through the other's progress.
#[test]
fn loom_no_lost_wake_up_on_data_or_space() {
    loom::model(|| {
        let (mut tx, mut rx) = with_capacity(64);
        tx.set_wait_strategy(WaitStrategy::Park);
        rx.set_wait_strategy(WaitStrategy::Park);
        let writer = thread::spawn(move || {
            for i in 0..3u8 {
                tx.write(&[i; 24]).unwrap(); // 32-byte records: two fill the ring
            }
        });
        let mut buf = Vec::new();
        for i in 0..3u8 {
            rx.read(&mut buf).unwrap();
            assert_eq!(buf, [i; 24]);
        }
        writer.join().unwrap();
    });
}

/// A consumer that leaves releases a producer parked on a full ring.
#[test]
fn loom_consumer_close_releases_a_parked_producer() {
    loom::model(|| {
        let (mut tx, rx) = with_capacity(64);
        tx.set_wait_strategy(WaitStrategy::Park);
        tx.try_write(&[0; 56]).unwrap(); // fills the ring
        let writer = thread::spawn(move || tx.write(&[1; 8]));
        drop(rx);
        assert_eq!(writer.join().unwrap(), Err(RingError::Closed));
    });
}
