//! Unit and property tests of the ring on heap memory (these also run under Miri).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::layout::{self, Kind, encode};
use super::*;
use crate::sync::Ordering;

/// A message whose bytes identify it: `seq` then a pattern, `len` bytes in all.
fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn n(full: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { full }
}

#[test]
fn zero_length_message_round_trips() {
    let (mut tx, mut rx) = with_capacity(64);
    tx.try_write(&[]).unwrap();
    tx.try_write(b"x").unwrap();
    let mut buf = vec![1, 2, 3];
    assert!(rx.try_read(&mut buf).unwrap());
    assert!(buf.is_empty());
    assert!(rx.try_read(&mut buf).unwrap());
    assert_eq!(buf, b"x");
    assert!(!rx.try_read(&mut buf).unwrap());
}

#[test]
fn message_larger_than_the_ring_is_reassembled() {
    let (mut tx, mut rx) = with_capacity(256);
    let big = message(7, 5000);
    let expect = big.clone();
    let t = std::thread::spawn(move || tx.write(&big).unwrap());
    let mut buf = Vec::new();
    rx.read(&mut buf).unwrap();
    assert_eq!(buf, expect);
    t.join().unwrap();
    assert_eq!(rx.read(&mut buf), Err(RingError::Closed));
}

#[test]
fn full_ring_refuses_a_non_blocking_write_and_writes_nothing() {
    let (mut tx, mut rx) = with_capacity(64);
    // 3 records of 16 bytes + 1 of 16 = 64: full.
    for i in 0..4u8 {
        tx.try_write(&[i; 8]).unwrap();
    }
    assert_eq!(tx.try_write(&[9; 8]), Err(RingError::Full));
    // A message that would need fragments is refused whole too.
    assert_eq!(tx.try_write(&[9; 200]), Err(RingError::Full));
    let mut buf = Vec::new();
    for i in 0..4u8 {
        assert!(rx.try_read(&mut buf).unwrap());
        assert_eq!(buf, [i; 8]);
    }
    assert!(!rx.try_read(&mut buf).unwrap());
    tx.try_write(&[5; 8]).unwrap();
    assert!(rx.try_read(&mut buf).unwrap());
    assert_eq!(buf, [5; 8]);
}

#[test]
fn consumer_drains_everything_before_reporting_closed() {
    let (mut tx, mut rx) = with_capacity(1024);
    for i in 0..10u8 {
        tx.try_write(&[i]).unwrap();
    }
    drop(tx);
    let mut buf = Vec::new();
    for i in 0..10u8 {
        rx.read(&mut buf).unwrap();
        assert_eq!(buf, [i]);
    }
    assert_eq!(rx.read(&mut buf), Err(RingError::Closed));
    assert_eq!(rx.try_read(&mut buf), Err(RingError::Closed));
}

#[test]
fn producer_blocked_on_a_full_ring_is_released_when_the_consumer_leaves() {
    let (mut tx, rx) = with_capacity(64);
    tx.set_wait_strategy(WaitStrategy::Park);
    for _ in 0..4 {
        tx.try_write(&[0; 8]).unwrap();
    }
    let t = std::thread::spawn(move || tx.write(&[1; 8]));
    std::thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 20 }));
    drop(rx);
    assert_eq!(t.join().unwrap(), Err(RingError::Closed));
}

#[test]
fn read_until_times_out_on_an_empty_ring() {
    let (_tx, mut rx) = with_capacity(64);
    rx.set_wait_strategy(WaitStrategy::SpinThenPark(Duration::from_micros(10)));
    let mut buf = Vec::new();
    let r = rx.read_until(&mut buf, Some(Instant::now() + Duration::from_millis(5)));
    assert_eq!(r, Err(RingError::Timeout));
}

#[test]
fn timed_out_fragmented_write_is_aborted_and_the_next_message_arrives_intact() {
    let (mut tx, mut rx) = with_capacity(256);
    tx.set_wait_strategy(WaitStrategy::Park);
    let r = tx.write_until(&message(1, 2000), Instant::now() + Duration::from_millis(5));
    assert_eq!(r, Err(RingError::Timeout));
    let mut buf = Vec::new();
    // Drain the partial message's fragments; nothing complete is there.
    assert!(!rx.try_read(&mut buf).unwrap());
    tx.try_write(b"next").unwrap();
    assert!(rx.try_read(&mut buf).unwrap());
    assert_eq!(buf, b"next");
}

#[test]
fn parked_reader_is_woken_by_a_writer_in_another_thread() {
    let (mut tx, mut rx) = with_capacity(1024);
    rx.set_wait_strategy(WaitStrategy::Park);
    tx.set_wait_strategy(WaitStrategy::Park);
    let count = n(2000, 50);
    let t = std::thread::spawn(move || {
        for i in 0..count {
            tx.write(&message(i as u64, i % 300)).unwrap();
        }
    });
    let mut buf = Vec::new();
    for i in 0..count {
        rx.read(&mut buf).unwrap();
        assert_eq!(buf, message(i as u64, i % 300));
    }
    t.join().unwrap();
}

#[test]
fn in_place_write_and_read_round_trip() {
    let (mut tx, mut rx) = with_capacity(1024);
    {
        let mut g = tx.try_reserve(5).unwrap();
        g.copy_from_slice(b"hello");
        g.commit().unwrap();
    }
    {
        // Dropped without commit: nothing is published.
        let mut g = tx.try_reserve(3).unwrap();
        g.copy_from_slice(b"bad");
    }
    {
        let g = rx.try_read_in_place().unwrap().unwrap();
        assert_eq!(&*g, b"hello");
    }
    assert!(rx.try_read_in_place().unwrap().is_none());
    // A message too large to sit contiguously falls back to a staged copy.
    let big = message(3, 900);
    let t = {
        let big = big.clone();
        std::thread::spawn(move || {
            let mut g = tx.reserve(big.len(), None).unwrap();
            g.copy_from_slice(&big);
            g.commit().unwrap();
        })
    };
    let g = rx.read_in_place(None).unwrap();
    assert_eq!(&*g, &big[..]);
    drop(g);
    t.join().unwrap();
}

#[test]
fn a_staged_message_is_held_until_taken_by_either_read_api() {
    let (mut tx, mut rx) = with_capacity(256);
    tx.try_write(b"first").unwrap();
    let big = message(5, 1000); // reassembled: its records are consumed while staging
    let t = {
        let big = big.clone();
        std::thread::spawn(move || {
            tx.write(&big).unwrap();
            tx.try_write(b"last").unwrap();
        })
    };
    assert!(rx.prepare().unwrap());
    assert_eq!(rx.staged(), Some(&b"first"[..]));
    // Staging twice does not skip a message.
    assert!(rx.prepare().unwrap());
    assert!(rx.poll());
    let mut buf = Vec::new();
    assert!(rx.try_read(&mut buf).unwrap());
    assert_eq!(buf, b"first");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rx.prepare().unwrap() {
        assert!(Instant::now() < deadline, "the big message never arrived");
        std::thread::yield_now();
    }
    assert_eq!(rx.staged(), Some(&big[..]));
    assert!(rx.poll(), "a staged reassembled message counts as ready");
    assert_eq!(&*rx.try_read_in_place().unwrap().unwrap(), &big[..]);
    t.join().unwrap();
    assert_eq!(&*rx.read_in_place(None).unwrap(), b"last");
    assert_eq!(rx.try_read(&mut buf), Err(RingError::Closed));
}

#[test]
fn space_read_in_small_batches_is_handed_back_once_the_ring_runs_dry() {
    let (mut tx, mut rx) = with_capacity(1024); // released in batches of 128 bytes
    let mut sent = 0u8;
    while tx.try_write(&[sent; 8]).is_ok() {
        sent += 1;
    }
    let mut buf = Vec::new();
    assert!(rx.try_read(&mut buf).unwrap());
    // 16 bytes read and not yet handed back: still full for the producer.
    assert_eq!(tx.try_write(&[0xee; 8]), Err(RingError::Full));
    let writer = std::thread::spawn(move || {
        tx.write(&[0xee; 8]).unwrap(); // blocks until the space comes back
        tx
    });
    for i in 1..sent {
        assert!(rx.try_read(&mut buf).unwrap());
        assert_eq!(buf, [i; 8]);
    }
    // The ring looks empty to the reader: it hands everything back, waking the writer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rx.try_read(&mut buf).unwrap() {
        assert!(Instant::now() < deadline, "the writer was never released");
        std::thread::yield_now();
    }
    assert_eq!(buf, [0xee; 8]);
    drop(writer.join().unwrap());
}

#[test]
fn gathered_parts_arrive_as_one_message() {
    let (mut tx, mut rx) = with_capacity(128);
    let t = std::thread::spawn(move || {
        tx.write_parts(&[b"head", &[], &message(1, 500), b"tail"], None)
            .unwrap();
        tx.try_write_parts(&[b"a", b"b"])
            .unwrap_or_else(|_| tx.write_parts(&[b"a", b"b"], None).unwrap());
    });
    let mut buf = Vec::new();
    rx.read(&mut buf).unwrap();
    let mut expect = b"head".to_vec();
    expect.extend(message(1, 500));
    expect.extend(b"tail");
    assert_eq!(buf, expect);
    rx.read(&mut buf).unwrap();
    assert_eq!(buf, b"ab");
    t.join().unwrap();
}

// --- Protocol violations: a hostile or buggy producer. ---

fn violated(r: Result<bool, RingError>) -> Violation {
    match r {
        Err(RingError::Violation(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn write_position_beyond_capacity_is_a_violation_and_closes_the_ring() {
    let (tx, mut rx) = with_capacity(64);
    tx.region
        .header()
        .producer
        .pos
        .store(128, Ordering::Release);
    let mut buf = Vec::new();
    assert!(matches!(
        violated(rx.try_read(&mut buf)),
        Violation::Position { theirs: 128, .. }
    ));
    // Sticky, and the producer is told.
    assert!(matches!(
        rx.try_read(&mut buf),
        Err(RingError::Violation(_))
    ));
    assert_eq!(
        tx.region.header().consumer.closed.load(Ordering::Acquire),
        layout::VIOLATED
    );
}

#[test]
fn misaligned_or_backward_write_position_is_a_violation() {
    let (tx, mut rx) = with_capacity(64);
    tx.region.header().producer.pos.store(12, Ordering::Release);
    assert!(matches!(
        violated(rx.try_read(&mut Vec::new())),
        Violation::Position { .. }
    ));

    let (mut tx, mut rx) = with_capacity(64);
    tx.try_write(&[1; 8]).unwrap();
    rx.try_read(&mut Vec::new()).unwrap();
    // Finding nothing more, the reader loads the position (16).
    assert!(!rx.try_read(&mut Vec::new()).unwrap());
    tx.region.header().producer.pos.store(0, Ordering::Release);
    // pos went from 16 back to 0 while read is 16. (Behind our read position but not
    // behind what we loaded before, it could be a position lagging behind its headers.) A
    // reader that finds nothing loads the position once in 64 reads.
    let mut r = Ok(false);
    for _ in 0..64 {
        r = rx.try_read(&mut Vec::new());
        if r.is_err() {
            break;
        }
    }
    assert!(matches!(violated(r), Violation::Position { .. }));
}

/// Stores `word` at `off` in the data area as a hostile producer might: no emptied slot
/// ahead, no checks. `off` must be 8-aligned and within the callers' ring; nobody else
/// touches the region meanwhile in these tests.
fn scribble(tx: &Producer, off: u64, word: u64) {
    assert!(off.is_multiple_of(8) && off + 8 <= tx.capacity() as u64);
    // SAFETY: in bounds and aligned (asserted); single-threaded test.
    unsafe { tx.region.data().store_header(off, word, 0) };
}

fn corrupt_first_record(word: u64, pos: u64) -> Violation {
    let (tx, mut rx) = with_capacity(64);
    scribble(&tx, 0, word);
    tx.region
        .header()
        .producer
        .pos
        .store(pos, Ordering::Release);
    violated(rx.try_read(&mut Vec::new()))
}

#[test]
fn unknown_record_kind_is_a_violation() {
    assert!(matches!(
        corrupt_first_record(encode(0, Kind::Whole, 0) | (99 << 32), 8),
        Violation::Kind { kind: 99, .. }
    ));
}

#[test]
fn record_longer_than_published_bytes_is_a_violation() {
    assert!(matches!(
        corrupt_first_record(encode(100, Kind::Whole, 0), 16),
        Violation::Overrun { len: 100, .. }
    ));
    assert!(matches!(
        corrupt_first_record(encode(u32::MAX, Kind::Whole, 0), 64),
        Violation::Overrun { .. }
    ));
}

#[test]
fn padding_that_does_not_reach_the_end_is_a_violation() {
    assert!(matches!(
        corrupt_first_record(encode(8, Kind::Padding, 0), 64),
        Violation::Overrun { .. }
    ));
}

#[test]
fn fragment_out_of_sequence_is_a_violation() {
    assert!(matches!(
        corrupt_first_record(encode(0, Kind::Middle, 0), 8),
        Violation::Sequence { .. }
    ));
    assert!(matches!(
        corrupt_first_record(encode(0, Kind::Abort, 0), 8),
        Violation::Sequence { .. }
    ));
}

#[test]
fn oversized_messages_are_refused_before_allocating() {
    let (mut tx, mut rx) = with_capacity(1024);
    rx.set_max_message_len(100);
    tx.try_write(&[0; 101]).unwrap();
    assert!(matches!(
        violated(rx.try_read(&mut Vec::new())),
        Violation::TooLarge { len: 101, max: 100 }
    ));

    // A first fragment announcing an absurd total.
    let (tx, mut rx) = with_capacity(64);
    scribble(&tx, 0, encode(8, Kind::First, 0));
    scribble(&tx, 8, u64::MAX);
    tx.region.header().producer.pos.store(16, Ordering::Release);
    assert!(matches!(
        violated(rx.try_read(&mut Vec::new())),
        Violation::TooLarge { .. }
    ));
}

#[test]
fn fragments_exceeding_the_announced_total_are_a_violation() {
    let (tx, mut rx) = with_capacity(64);
    scribble(&tx, 0, encode(16, Kind::First, 0)); // 8 bytes of payload
    scribble(&tx, 8, 10); // announced total: 10
    scribble(&tx, 24, encode(8, Kind::Last, 0)); // 8 more: 16 > 10
    tx.region.header().producer.pos.store(40, Ordering::Release);
    assert!(matches!(
        violated(rx.try_read(&mut Vec::new())),
        Violation::Fragments { total: 10 }
    ));
}

#[test]
fn corrupt_read_position_is_a_violation_for_the_producer() {
    let (mut tx, rx) = with_capacity(64);
    for _ in 0..4 {
        tx.try_write(&[0; 8]).unwrap();
    }
    rx.region
        .header()
        .consumer
        .pos
        .store(1 << 40, Ordering::Release);
    assert!(matches!(
        tx.try_write(&[0; 8]),
        Err(RingError::Violation(Violation::Position { .. }))
    ));
    assert_eq!(
        rx.region.header().producer_closed.load(Ordering::Acquire),
        layout::VIOLATED
    );
}

// --- Record headers as the reader's signal (ring version 2). ---

/// The 8-byte word at `off` in the data area.
fn word_at(tx: &Producer, off: u64) -> u64 {
    // SAFETY: callers pass in-bounds, 8-aligned offsets.
    unsafe { tx.region.data().load_header(off) }
}

/// A reader learns of a record from its header alone: before the producer stores its
/// position, and the header carries the record's lap.
#[test]
fn a_record_is_read_from_its_header_before_the_position_is_loaded() {
    let (mut tx, mut rx) = with_capacity(64);
    tx.try_write(&[5; 8]).unwrap();
    // Hide the position: the header must be enough.
    tx.region.header().producer.pos.store(0, Ordering::Release);
    let mut buf = Vec::new();
    assert!(rx.try_read(&mut buf).unwrap());
    assert_eq!(buf, [5; 8]);
    // Lap 1: the record at position 64 carries tag 1; the slot after it was emptied.
    for i in 0..4u8 {
        tx.try_write(&[i; 8]).unwrap();
        assert!(rx.try_read(&mut buf).unwrap());
    }
    let (len, kind, tag) = layout::decode(word_at(&tx, 0));
    assert_eq!((len, Kind::from_u32(kind), tag), (8, Some(Kind::Whole), 1));
    assert_eq!(word_at(&tx, 16), 0, "the next record's slot is empty");
}

/// Defect this version closes: a payload word of an earlier lap that looks exactly like the
/// header the next lap will store there (kind, length, lap tag) must not be taken for it.
/// The producer empties the next record's slot before it publishes a record.
#[test]
fn a_payload_that_looks_like_a_next_lap_header_is_never_taken() {
    let (mut tx, mut rx) = with_capacity(64);
    let mut a = vec![1u8; 8];
    a.extend_from_slice(&encode(0, Kind::Whole, 1).to_ne_bytes()); // lands on offset 16
    let mut buf = Vec::new();
    for msg in [&a[..], &[2; 32], &[3; 8]] {
        tx.try_write(msg).unwrap();
        assert!(rx.try_read(&mut buf).unwrap());
        assert_eq!(buf, msg);
    }
    // The reader is at position 80 (offset 16, lap 1): nothing there.
    assert!(!rx.try_read(&mut buf).unwrap());
    assert!(!rx.poll());
    assert_eq!(rx.try_read_in_place().unwrap().map(|g| g.len()), None);
}

/// A full ring: the word where the next record goes is the header of the record the reader
/// has not released yet, one lap older. The reader at that position (after reading
/// everything, before the producer writes there) must see nothing.
#[test]
fn a_header_of_the_previous_lap_is_not_a_new_record() {
    let (mut tx, mut rx) = with_capacity(64);
    for i in 0..4u8 {
        tx.try_write(&[i; 8]).unwrap(); // fills the ring; nothing could be emptied ahead
    }
    let mut buf = Vec::new();
    for i in 0..4u8 {
        assert!(rx.try_read(&mut buf).unwrap());
        assert_eq!(buf, [i; 8]);
    }
    assert_eq!(
        layout::decode(word_at(&tx, 0)).2,
        0,
        "still the lap-0 header"
    );
    assert!(!rx.try_read(&mut buf).unwrap());
    assert!(!rx.poll());
    tx.try_write(&[9; 8]).unwrap();
    assert!(rx.try_read(&mut buf).unwrap());
    assert_eq!(buf, [9; 8]);
}

/// The producer's position covers a record whose header is not there (an empty slot, or a
/// header of another lap): a violation, not a wait for ever.
#[test]
fn a_position_covering_a_missing_or_stale_header_is_a_violation() {
    for word in [
        0,
        encode(8, Kind::Whole, 1),
        encode(8, Kind::Whole, (1 << 24) - 1),
    ] {
        assert!(
            matches!(
                corrupt_first_record(word, 16),
                Violation::Unpublished {
                    offset: 0,
                    expected: 0,
                    ..
                }
            ),
            "{word:#x}"
        );
    }
}

/// A producer that dies between storing a record's header and its position, then is closed
/// by someone else: the reader still drains what the headers published, then sees the end.
#[test]
fn records_published_by_their_headers_are_drained_after_a_close() {
    let (tx, mut rx) = with_capacity(64);
    scribble(&tx, 0, encode(3, Kind::Whole, 0));
    scribble(&tx, 16, encode(0, Kind::Whole, 0));
    // It died: no position stored, its side closed by a supervisor (the producer value
    // stays alive, undropped, until the end: it stands for the dead process).
    tx.control().close_producer_side();
    let mut buf = Vec::new();
    assert!(rx.try_read(&mut buf).unwrap());
    assert_eq!(buf.len(), 3);
    assert!(rx.try_read(&mut buf).unwrap());
    assert!(buf.is_empty());
    assert_eq!(rx.try_read(&mut buf), Err(RingError::Closed));
    drop(tx);
}

/// A peer speaking the previous ring version (whose readers follow the position, not the
/// headers) is refused cleanly when the segment is opened.
#[test]
#[cfg_attr(miri, ignore = "maps a file")]
fn a_segment_of_the_previous_version_is_refused_at_open() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let seg = RingSegment::create(&path, 4096).unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(8)).unwrap();
    file.write_all(&1u32.to_ne_bytes()).unwrap();
    let Err(err) = RingSegment::open(&path) else {
        panic!("version 1 must be refused");
    };
    let text = err.to_string();
    assert!(
        text.contains("version 1") && text.contains("speaks 2"),
        "{text}"
    );
    drop(seg);
}

// --- Property tests against a VecDeque model. ---

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    WriteInPlace(usize),
    Read,
    ReadInPlace,
}

fn op(cap: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=3 * cap).prop_map(Op::Write),
        1 => (0..=cap).prop_map(Op::WriteInPlace),
        3 => Just(Op::Read),
        1 => Just(Op::ReadInPlace),
    ]
}

fn cap_and_ops() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (6u32..=12).prop_flat_map(|shift| {
        let cap = 1usize << shift;
        (Just(cap), prop::collection::vec(op(cap), 1..n(200, 30)))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: n(256, 8) as u32, ..ProptestConfig::default() })]

    /// Single thread, non-blocking calls: the ring behaves as a FIFO of whole messages, and
    /// refuses a write only when the message could not fit right now.
    #[test]
    fn ring_matches_a_vecdeque_model((cap, ops) in cap_and_ops()) {
        let (mut tx, mut rx) = with_capacity(cap);
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut seq = 0u64;
        let mut buf = Vec::new();
        for op in ops {
            match op {
                Op::Write(len) | Op::WriteInPlace(len) => {
                    seq += 1;
                    let msg = message(seq, len);
                    let r = if let Op::Write(_) = op {
                        tx.try_write(&msg)
                    } else {
                        tx.try_reserve(len).and_then(|mut g| { g.copy_from_slice(&msg); g.commit() })
                    };
                    match r {
                        Ok(()) => model.push_back(msg),
                        Err(RingError::Full) => {
                            // An empty ring takes any message whose record fits in half of it.
                            let empty = model.is_empty();
                            prop_assert!(!(empty && layout::record_len(len as u64) <= cap as u64 / 2),
                                "refused {len} bytes into an empty {cap}-byte ring");
                        }
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                }
                Op::Read => {
                    let got = rx.try_read(&mut buf).unwrap();
                    let want = model.pop_front();
                    prop_assert_eq!(got, want.is_some());
                    if let Some(w) = want { prop_assert_eq!(&buf, &w); }
                }
                Op::ReadInPlace => {
                    let want = model.pop_front();
                    match rx.try_read_in_place().unwrap() {
                        Some(g) => prop_assert_eq!(Some(&*g), want.as_deref()),
                        None => prop_assert!(want.is_none()),
                    }
                }
            }
        }
        // Everything left comes out, in order.
        while let Some(w) = model.pop_front() {
            prop_assert!(rx.try_read(&mut buf).unwrap());
            prop_assert_eq!(&buf, &w);
        }
        prop_assert!(!rx.try_read(&mut buf).unwrap());
    }

    /// Single thread: messages written piecewise with `write_some` (resumed after the reader
    /// frees room; some given up half-way with `abandon`) arrive whole and in order, and a
    /// message given up never arrives (an async publish and its cancellation).
    #[test]
    fn resumable_writes_deliver_whole_messages_or_nothing(
        shift in 6u32..=10,
        msgs in prop::collection::vec((0usize..=3 << 10, any::<bool>()), 1..n(40, 6)),
    ) {
        let cap = 1usize << shift;
        let (mut tx, mut rx) = with_capacity(cap);
        let mut buf = Vec::new();
        let mut expect: VecDeque<Vec<u8>> = VecDeque::new();
        for (i, &(len, give_up)) in msgs.iter().enumerate() {
            let msg = message(i as u64, len);
            let (mut done, mut rounds) = (0u64, 0);
            loop {
                match tx.write_some(&[&msg], &mut done) {
                    Ok(()) => {
                        expect.push_back(msg);
                        break;
                    }
                    Err(RingError::Full) if give_up && done > 0 => {
                        tx.abandon(done);
                        break;
                    }
                    Err(RingError::Full) => {
                        // Free room: read what is complete (fragments are taken in too).
                        while rx.try_read(&mut buf).unwrap() {
                            prop_assert_eq!(Some(buf.clone()), expect.pop_front());
                        }
                        rounds += 1;
                        prop_assert!(rounds < 10_000, "no progress writing {len} bytes");
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
        }
        while rx.try_read(&mut buf).unwrap() {
            prop_assert_eq!(Some(buf.clone()), expect.pop_front());
        }
        prop_assert!(expect.is_empty(), "{} messages never arrived", expect.len());
    }

    /// Two threads, blocking calls, sizes up to three capacities: every message arrives whole
    /// and in order whatever the interleaving.
    #[test]
    fn concurrent_stream_delivers_every_message_in_order(
        shift in 6u32..=10,
        sizes in prop::collection::vec(0usize..=3 << 10, 1..n(60, 8)),
        in_place in any::<bool>(),
        park in any::<bool>(),
    ) {
        let cap = 1usize << shift;
        let (mut tx, mut rx) = with_capacity(cap);
        let strategy = if park { WaitStrategy::Park } else { WaitStrategy::SpinThenPark(Duration::from_micros(5)) };
        tx.set_wait_strategy(strategy);
        rx.set_wait_strategy(strategy);
        let sizes2 = sizes.clone();
        let writer = std::thread::spawn(move || {
            for (i, &len) in sizes2.iter().enumerate() {
                let msg = message(i as u64, len);
                if in_place && i % 2 == 0 {
                    let mut g = tx.reserve(len, None).unwrap();
                    g.copy_from_slice(&msg);
                    g.commit().unwrap();
                } else {
                    let (a, b) = msg.split_at(len / 3);
                    tx.write_parts(&[a, b], None).unwrap();
                }
            }
        });
        let mut buf = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            if in_place && i % 3 == 0 {
                let g = rx.read_in_place(None).unwrap();
                prop_assert_eq!(&*g, &message(i as u64, len)[..]);
            } else {
                rx.read(&mut buf).unwrap();
                prop_assert_eq!(&buf, &message(i as u64, len));
            }
        }
        writer.join().unwrap();
        prop_assert_eq!(rx.read(&mut buf), Err(RingError::Closed));
    }

    /// Forged record headers (this lap's tag or another, any kind, any length, with or
    /// without a position covering them, in a ring that may have lapped) are read, reported
    /// as a violation, or seen as nothing yet: never a panic, an access out of the data area
    /// or a record beyond the room.
    #[test]
    fn forged_headers_are_violations_never_panics(
        laps in 0u64..3,
        slot in 0u64..8,
        len in prop_oneof![0u32..80, any::<u32>()],
        kind in prop_oneof![0u32..8, any::<u8>().prop_map(u32::from)],
        tag_shift in prop_oneof![Just(0i64), Just(-1i64), Just(1i64), any::<i64>()],
        pos_ahead in prop_oneof![Just(None), (0u64..9).prop_map(Some)],
    ) {
        let cap = 64u64;
        let (mut tx, mut rx) = with_capacity(cap as usize);
        let mut buf = Vec::new();
        // Lap the ring `laps` times, then move to `slot`.
        for _ in 0..(laps * 4 + slot / 2) {
            tx.try_write(&[7; 8]).unwrap();
            prop_assert!(rx.try_read(&mut buf).unwrap());
        }
        let read = rx.read;
        let expected = layout::lap_tag(read, cap) as i64;
        let tag = (expected.wrapping_add(tag_shift)).rem_euclid(1 << layout::TAG_BITS) as u64;
        let word = u64::from(len) | (u64::from(kind & 0xff) << 32) | (tag << 40);
        scribble(&tx, read & (cap - 1), word);
        if let Some(n) = pos_ahead {
            tx.region.header().producer.pos.store(read + 8 * n, Ordering::Release);
        }
        let published = layout::published(word, read, cap);
        let r = rx.try_read(&mut buf);
        match &r {
            Ok(true) => {
                // Only a well-formed whole record of this lap within the room is read.
                prop_assert!(published && kind == Kind::Whole as u32);
                prop_assert!(layout::record_len(u64::from(len)) <= cap - (read & (cap - 1)));
                prop_assert_eq!(buf.len(), len as usize);
            }
            Ok(false) => prop_assert!(
                !published || kind == Kind::First as u32 || kind == Kind::Padding as u32,
                "a published record {word:#x} was ignored"
            ),
            Err(RingError::Violation(_)) => {}
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        if published && Kind::from_u32(kind).is_none() {
            prop_assert!(matches!(r, Err(RingError::Violation(Violation::Kind { .. }))), "{r:?}");
        }
        if published && kind == Kind::Whole as u32
            && layout::record_len(u64::from(len)) > cap - (read & (cap - 1))
        {
            prop_assert!(matches!(r, Err(RingError::Violation(Violation::Overrun { .. }))), "{r:?}");
        }
        if !published && pos_ahead.is_some_and(|n| n > 0) {
            prop_assert!(matches!(r, Err(RingError::Violation(Violation::Unpublished { .. }))), "{r:?}");
        }
    }

    /// Arbitrary bytes in the header words and records never crash the consumer: it either
    /// reads something or reports an error.
    #[test]
    fn scribbled_records_never_crash_the_consumer(
        words in prop::collection::vec(any::<u64>(), 8),
        pos in any::<u64>(),
        cached in 0u64..8,
    ) {
        let (mut tx, mut rx) = with_capacity(64);
        for _ in 0..cached { let _ = tx.try_write(&[1, 2, 3]); let _ = rx.try_read(&mut Vec::new()); }
        for (i, w) in words.iter().enumerate() {
            // 8 words of 8 bytes cover the 64-byte data area exactly.
            scribble(&tx, i as u64 * 8, *w);
        }
        tx.region.header().producer.pos.store(pos, Ordering::Release);
        let mut buf = Vec::new();
        for _ in 0..10 {
            match rx.try_read(&mut buf) {
                Ok(true) => prop_assert!(buf.len() <= 64),
                Ok(false) => {}
                Err(_) => break,
            }
        }
    }
}

// --- Reassembly memory: what a peer announces never decides an allocation. ---

/// Writes a first fragment carrying `payload` bytes of a message announced as `total` bytes.
fn plant_first_fragment(tx: &Producer, payload: usize, total: u64) {
    // The callers' rings have room for the record at offset 0.
    scribble(tx, 0, encode((8 + payload) as u32, Kind::First, 0));
    scribble(tx, 8, total);
    let end = (8 + 8 + payload as u64).next_multiple_of(8);
    tx.region
        .header()
        .producer
        .pos
        .store(end, Ordering::Release);
}

/// Defect: the consumer reserved the whole announced total at once, so a first fragment
/// announcing 2^40 bytes to a consumer whose limit allowed it aborted the process.
#[test]
fn a_huge_announced_total_allocates_only_what_arrived() {
    let (tx, mut rx) = with_capacity(4096);
    rx.set_max_message_len(usize::MAX);
    plant_first_fragment(&tx, 64, 1 << 40);
    assert_eq!(
        rx.try_read(&mut Vec::new()),
        Ok(false),
        "incomplete, not an error"
    );
    assert!(rx.assembly.capacity() < 4096, "{}", rx.assembly.capacity());
}

/// Defect: nothing capped the memory that incomplete messages of several publishers could
/// hold. Consumers sharing a budget: the ring whose fragment would go over it is violated,
/// the others go on, and a consumer that goes away gives its share back.
#[test]
fn incomplete_messages_are_held_within_a_shared_budget() {
    let budget = Budget::new(1000);
    let (tx_a, mut rx_a) = with_capacity(4096);
    let (tx_b, mut rx_b) = with_capacity(4096);
    let (mut tx_c, mut rx_c) = with_capacity(4096);
    for rx in [&mut rx_a, &mut rx_b, &mut rx_c] {
        rx.set_budget(std::sync::Arc::clone(&budget));
    }
    plant_first_fragment(&tx_a, 600, 10_000);
    assert_eq!(rx_a.try_read(&mut Vec::new()), Ok(false));
    assert_eq!(budget.held(), 600);
    plant_first_fragment(&tx_b, 600, 10_000);
    assert!(matches!(
        violated(rx_b.try_read(&mut Vec::new())),
        Violation::Budget {
            wanted: 1200,
            budget: 1000
        }
    ));
    assert_eq!(budget.held(), 600);
    // Whole messages are not reassembled and cost nothing; the third ring goes on.
    tx_c.try_write(&[7; 900]).unwrap();
    let mut buf = Vec::new();
    assert_eq!(rx_c.try_read(&mut buf), Ok(true));
    assert_eq!(buf, [7; 900]);
    drop(rx_a);
    assert_eq!(budget.held(), 0);
}

/// Defect: a consumer dropped while holding back read space (batched release) set its
/// closed flag without publishing its position first.
#[test]
fn a_dropped_consumer_publishes_its_position_before_closing() {
    let (mut tx, mut rx) = with_capacity(4096);
    for i in 0..10u8 {
        tx.try_write(&[i; 8]).unwrap();
    }
    let mut buf = Vec::new();
    for _ in 0..2 {
        assert_eq!(rx.try_read(&mut buf), Ok(true));
    }
    let read = rx.read;
    assert!(read > 0);
    drop(rx);
    assert_eq!(
        tx.region.header().consumer.pos.load(Ordering::Acquire),
        read
    );
}

/// Reads whatever `rx` has into `got`; false once it reports the ring closed.
fn drain(rx: &mut Consumer, got: &mut Vec<Vec<u8>>) -> bool {
    let mut buf = Vec::new();
    loop {
        match rx.try_read(&mut buf) {
            Ok(true) => got.push(buf.clone()),
            Ok(false) => return true,
            Err(RingError::Closed) => return false,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_consumer_parked_on_a_shared_doorbell_wakes_for_either_ring() {
    let bell = SharedBell::heap();
    let (mut tx1, mut rx1) = with_capacity(64);
    let (mut tx2, mut rx2) = with_capacity(64);
    tx1.set_doorbell(bell.clone());
    tx2.set_doorbell(bell.clone());
    let writer = std::thread::spawn(move || {
        for i in 0..n(100, 5) {
            std::thread::sleep(Duration::from_micros(50));
            let tx = if i % 2 == 0 { &mut tx1 } else { &mut tx2 };
            tx.write(&[i as u8]).unwrap();
        }
    });
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    let (mut open1, mut open2) = (true, true);
    while open1 || open2 {
        wait_until(bell.futex(), bell.bell(), WaitStrategy::Park, None, || {
            Ok::<_, RingError>((open1 && rx1.poll()) || (open2 && rx2.poll()))
        })
        .unwrap();
        open1 = open1 && drain(&mut rx1, &mut got1);
        open2 = open2 && drain(&mut rx2, &mut got2);
    }
    writer.join().unwrap();
    let expect = |parity: usize| -> Vec<Vec<u8>> {
        (0..n(100, 5))
            .filter(|i| i % 2 == parity)
            .map(|i| vec![i as u8])
            .collect()
    };
    assert_eq!((got1, got2), (expect(0), expect(1)));
}

/// A futex whose every sleep ends at once with `ends`, a peer having written meanwhile
/// without ringing (it came after the waiter unregistered, so rightly did not ring).
struct EndsAt {
    ends: crate::sys::FutexWait,
    written: crate::sync::AtomicBool,
}

impl super::wait::Futex for EndsAt {
    fn wait(
        &self,
        _: &crate::sync::AtomicU32,
        _: u32,
        _: Option<Duration>,
    ) -> crate::sys::FutexWait {
        self.written.store(true, Ordering::Release);
        self.ends
    }
    fn wake(&self, _: &crate::sync::AtomicU32) {}
}

/// Defect (seen under Wine, issue 13): a sleep ended by a wake-up meant for an earlier ring
/// (its waker was delayed between bumping `seq` and setting the event) that then found a
/// message was counted as a lost wake-up rescued by the sleep cap, although it slept 150 µs.
/// Only a sleep that ran out its timeout with the bell silent is a rescue.
#[test]
fn only_a_sleep_that_times_out_counts_as_a_rescued_wake_up() {
    use crate::sys::FutexWait;
    let bell = SharedBell::heap();
    let wait = |ends| {
        let futex = EndsAt {
            ends,
            written: crate::sync::AtomicBool::new(false),
        };
        let before = rescued_wakeups();
        wait_until(&futex, bell.bell(), WaitStrategy::Park, None, || {
            Ok::<_, RingError>(futex.written.load(Ordering::Acquire))
        })
        .unwrap();
        rescued_wakeups() - before
    };
    assert_eq!(
        wait(FutexWait::Woken),
        0,
        "an early wake-up is not a rescue"
    );
    assert!(wait(FutexWait::TimedOut) >= 1, "the cap rescued this one");
}

/// An eviction written while the consumer is still open (the runtime thread judging the
/// publisher hung as the reader drops its end) stays: the consumer's own close never
/// overwrites it (it used to load OPEN, then store CLOSED over the eviction).
#[test]
fn a_dropped_consumer_keeps_an_eviction_written_before_it() {
    let (tx, rx) = with_capacity(64);
    tx.control().evict();
    drop(rx);
    assert!(tx.control().evicted());
    assert_eq!(
        tx.region.header().consumer.closed.load(Ordering::Acquire),
        layout::EVICTED
    );
}
