//! Loom models of the ring protocol. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p mmipc --lib --release loom`.
//!
//! The data area is made of loom-tracked cells, so any read of a byte that is not ordered
//! after its write (a missing Release/Acquire pair) fails the model; the futex is a loom
//! mutex + condvar, so a lost wake-up shows up as a deadlock.

use loom::thread;

use super::*;
use crate::sync::Ordering;

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

/// Two producers (two rings) ring one shared doorbell, the one a subscriber sleeps on in
/// production; the consumer parks on it and must wake for each message and each close: no
/// lost wake-up across rings.
#[test]
fn loom_shared_doorbell_wakes_for_two_rings() {
    loom::model(|| {
        let bell = SharedBell::heap();
        let (mut tx1, mut rx1) = with_capacity(64);
        let (mut tx2, mut rx2) = with_capacity(64);
        tx1.set_doorbell(bell.clone());
        tx2.set_doorbell(bell.clone());
        let w1 = thread::spawn(move || tx1.write(&[1]).unwrap());
        let w2 = thread::spawn(move || tx2.write(&[2]).unwrap());
        let mut got = Vec::new();
        let (mut open1, mut open2) = (true, true);
        let mut buf = Vec::new();
        while open1 || open2 {
            wait_until(bell.futex(), bell.bell(), WaitStrategy::Park, None, || {
                Ok::<_, RingError>((open1 && rx1.poll()) || (open2 && rx2.poll()))
            })
            .unwrap();
            for (rx, open) in [(&mut rx1, &mut open1), (&mut rx2, &mut open2)] {
                while *open {
                    match rx.try_read(&mut buf) {
                        Ok(true) => got.push(buf[0]),
                        Ok(false) => break,
                        Err(e) => {
                            assert_eq!(e, RingError::Closed);
                            *open = false;
                        }
                    }
                }
            }
        }
        got.sort();
        assert_eq!(got, [1, 2]);
        w1.join().unwrap();
        w2.join().unwrap();
    });
}

/// A ring big enough (128 bytes: an eighth is 16) that 8-byte records are handed back in
/// batches: the consumer's first read defers the release, its second releases both, and that
/// batched release is what frees the producer parked on the full ring. Messages are read in
/// place, so the in-place guard is model-checked too.
#[test]
fn loom_batched_release_frees_a_parked_producer() {
    loom::model(|| {
        let (mut tx, mut rx) = with_capacity(128);
        tx.set_wait_strategy(WaitStrategy::Park);
        rx.set_wait_strategy(WaitStrategy::Park);
        for _ in 0..15 {
            tx.try_write(&[]).unwrap(); // 15 of the 16 8-byte records the ring holds
        }
        let writer = thread::spawn(move || {
            tx.write(&[]).unwrap(); // the 16th fills the ring
            let slot = tx.reserve(0, None).unwrap(); // waits for the batched release
            slot.commit().unwrap();
        });
        let released = |rx: &Consumer| rx.region.header().consumer.pos.load(Ordering::Relaxed);
        assert!(rx.read_in_place(None).unwrap().is_empty());
        assert_eq!(released(&rx), 0, "the first 8 bytes are held back");
        assert!(rx.read_in_place(None).unwrap().is_empty());
        assert_eq!(
            released(&rx),
            16,
            "an eighth of the ring is handed back at once"
        );
        let mut buf = Vec::new();
        for _ in 2..17 {
            rx.read(&mut buf).unwrap();
            assert!(buf.is_empty());
        }
        assert_eq!(rx.read(&mut buf), Err(RingError::Closed));
        writer.join().unwrap();
    });
}

/// The wake-up pipe of an event-loop waiter (`Subscriber::arm`): the waiter sets the listen
/// flag, registers on the doorbell, fences and re-checks; the producer publishes and rings
/// through the production path (`notify`, then the doorbell's after-ring hook, which writes
/// the pipe if the flag is set). Either the re-check sees the message or the pipe is
/// written: an event loop waiting for the pipe is never left asleep with a message there.
#[test]
fn loom_pipe_listener_is_told_of_every_message() {
    use crate::sync::{AtomicU32, fence};
    loom::model(|| {
        let listen = std::sync::Arc::new(AtomicU32::new(0));
        let pipe = std::sync::Arc::new(AtomicU32::new(0));
        let hook = {
            let (listen, pipe) = (listen.clone(), pipe.clone());
            std::sync::Arc::new(move || {
                if listen.load(Ordering::Relaxed) != 0 {
                    pipe.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let bell = SharedBell::heap().after_ring(hook);
        let (mut tx, mut rx) = with_capacity(64);
        tx.set_doorbell(bell.clone());
        let writer = thread::spawn(move || tx.write(&[7]).unwrap());
        // `Subscriber::wake_fd` (the flag, once), then `Subscriber::arm`.
        listen.store(1, Ordering::SeqCst);
        bell.bell().waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seen = rx.poll();
        writer.join().unwrap();
        assert!(seen || pipe.load(Ordering::Relaxed) != 0, "a lost wake-up");
    });
}

/// A reader that learns of records from their headers, on a ring lapped more than once by
/// small messages: it never takes a header of an earlier lap for a new record (the word
/// where the next record goes is, when the ring is full, the header of the record the reader
/// has yet to release, one lap older), and never reads a record's bytes before they are
/// written (the header is stored last, with Release; the data area's accesses are checked by
/// the model). Fails if the producer stores the header before the payload, or without the lap
/// tag.
#[test]
fn loom_header_polling_reader_never_takes_a_stale_lap() {
    loom::model(|| {
        let (mut tx, mut rx) = with_capacity(64);
        tx.set_wait_strategy(WaitStrategy::Park);
        rx.set_wait_strategy(WaitStrategy::Park);
        let writer = thread::spawn(move || {
            for i in 0..6u8 {
                tx.write(&[i; 8]).unwrap(); // 16-byte records: 4 fill the ring
            }
        });
        let mut buf = Vec::new();
        for i in 0..6u8 {
            rx.read(&mut buf).unwrap();
            assert_eq!(buf, [i; 8]);
        }
        assert_eq!(rx.read(&mut buf), Err(RingError::Closed));
        writer.join().unwrap();
    });
}

/// A payload word that looks exactly like the header of the record the next lap will put
/// there (right kind, length and lap tag) is never taken for it: the producer empties the
/// slot where the next record's header goes before publishing a record. Read in place, so
/// the in-place guard and the staged path are checked too. Fails without that emptying.
#[test]
fn loom_a_payload_forging_a_next_lap_header_is_never_taken() {
    loom::model(|| {
        let (mut tx, mut rx) = with_capacity(64);
        tx.set_wait_strategy(WaitStrategy::Park);
        rx.set_wait_strategy(WaitStrategy::Park);
        // [0, 24): 16 payload bytes whose second word (offset 16) is a lap-1 header of an
        // empty whole message; [24, 64): 32 bytes; lap 1: [64, 80), then offset 16 again.
        let forged = super::layout::encode(0, super::layout::Kind::Whole, 1).to_ne_bytes();
        let mut a = vec![1u8; 8];
        a.extend_from_slice(&forged);
        let expect = [a.clone(), vec![2; 32], vec![3; 8]];
        let writer = thread::spawn(move || {
            tx.write(&a).unwrap();
            tx.write(&[2; 32]).unwrap();
            tx.write(&[3; 8]).unwrap();
        });
        for want in &expect {
            let got = rx.read_in_place(None).unwrap();
            assert_eq!(&*got, &want[..]);
        }
        assert!(matches!(rx.read_in_place(None), Err(RingError::Closed)));
        writer.join().unwrap();
    });
}

/// Records that do not fit before the end of the ring: the producer publishes a padding
/// record by its header alone (its position is stored with the next record), and the reader,
/// following headers, passes it and finds the next record at offset 0 of the next lap.
#[test]
fn loom_header_polling_reader_passes_padding_into_the_next_lap() {
    loom::model(|| {
        let (mut tx, mut rx) = with_capacity(64);
        tx.set_wait_strategy(WaitStrategy::Park);
        rx.set_wait_strategy(WaitStrategy::Park);
        let writer = thread::spawn(move || {
            for i in 0..4u8 {
                tx.write(&[i; 16]).unwrap(); // 24-byte records: the third pads 48..64
            }
        });
        for i in 0..4u8 {
            assert_eq!(&*rx.read_in_place(None).unwrap(), &[i; 16]);
        }
        assert!(matches!(rx.read_in_place(None), Err(RingError::Closed)));
        writer.join().unwrap();
    });
}

/// One-copy fan-out's reuse rule (`connection::payload`): a block of the payload segment is
/// rewritten only after the consumer's published read position passed the descriptor naming
/// it. The payload area is loom-tracked memory too, so a rewrite not ordered after the
/// reader's last read of the block fails the model. Two blocks, three messages: the third
/// must wait for the first to be released (on the space bell, as a blocked publish does).
#[test]
fn loom_a_payload_block_is_reused_only_after_its_reader_released_it() {
    use crate::connection::payload::{Allocator, Block, Holdings};
    loom::model(|| {
        let (mut tx, mut rx) = with_capacity(64);
        tx.set_wait_strategy(WaitStrategy::Park);
        rx.set_wait_strategy(WaitStrategy::Park);
        let area = Region::heap(128);
        let reader_area = area.share();
        let writer = thread::spawn(move || {
            let mut alloc = Allocator::new(0, 128);
            let mut holdings = Holdings::default();
            for i in 0..3u8 {
                let offset = loop {
                    let read = tx.consumed().unwrap();
                    holdings.reclaim(read, |b| alloc.release(b.offset, b.size()));
                    if let Some(offset) = alloc.alloc(64) {
                        break offset;
                    }
                    let until = holdings.oldest().expect("a block is held");
                    tx.wait_consumed(until, None).unwrap();
                };
                // SAFETY: `offset..offset + 8` is inside the 128-byte area, in a block the
                // allocator gave us (nobody holds its descriptor).
                unsafe { area.data().write(offset, &[i; 8]) };
                tx.write(&offset.to_le_bytes()).unwrap();
                // A 0-byte payload occupies one 64-byte block (the header's size).
                holdings.push(tx.position(), Block { offset, len: 0 });
            }
        });
        for i in 0..3u8 {
            let mut guard = rx.read_in_place(None).unwrap();
            let offset = u64::from_le_bytes(guard[..8].try_into().unwrap());
            let mut got = [0u8; 8];
            // SAFETY: the writer put its blocks inside the 128-byte area.
            unsafe { reader_area.data().read(offset, &mut got) };
            assert_eq!(got, [i; 8]);
            guard.release_promptly();
            drop(guard);
        }
        writer.join().unwrap();
    });
}
