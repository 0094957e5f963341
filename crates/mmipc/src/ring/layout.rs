//! Byte layout of a ring segment and the pure arithmetic over it (no memory access).
//!
//! ```text
//! offset 0    Header (256 bytes, #[repr(C)], see below)
//! offset 256  data: `capacity` bytes (a power of two), a sequence of records
//! ```
//!
//! A record is an 8-byte header word (`len: u32`, then `kind: u8` and a 24-bit lap tag, see
//! [`encode`]) followed by `len` payload bytes, padded to a multiple of 8. Records never wrap
//! around the end of the data area: the producer fills the tail with a [`Kind::Padding`]
//! record instead. The producer stores the header word last (Release), so a consumer learns of
//! a record from its header alone; the lap tag tells a header of this lap from a stale one of
//! an earlier lap. docs/PROTOCOL.md is the normative description.

use crate::sync::{AtomicU32, AtomicU64};

/// `b"mmipcRNG"` read as a little-endian `u64`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"mmipcRNG");
/// Protocol version of the ring layout. Bumped on any incompatible change (2: record headers
/// carry a lap tag and publish their record).
pub(crate) const VERSION: u32 = 2;
/// Size of [`Header`] and offset of the data area.
pub(crate) const HEADER_LEN: usize = 256;
/// Size of a record header.
pub(crate) const RECORD_HEADER: u64 = 8;
/// Records start and end on multiples of this.
pub(crate) const ALIGN: u64 = 8;
/// Smallest data area we accept.
///
/// # Examples
///
/// ```
/// assert!(mmipc::ring::RingSegment::create(std::env::temp_dir().join("never"), mmipc::ring::MIN_CAPACITY / 2).is_err());
/// ```
pub const MIN_CAPACITY: usize = 64;
/// Largest data area we accept (record lengths are `u32`).
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::ring::MAX_CAPACITY, 1 << 31);
/// ```
pub const MAX_CAPACITY: usize = 1 << 31;

/// One side's cache line: written by its owner, read by the peer.
#[repr(C, align(64))]
pub(crate) struct Side {
    /// Bytes this side has produced (producer) or consumed (consumer) since creation.
    pub pos: AtomicU64,
    /// A counter the owner bumps periodically; liveness is judged by the layer above.
    pub heartbeat: AtomicU64,
    /// [`OPEN`], [`CLOSED`] or [`VIOLATED`] (the consumer's; the producer's flag is
    /// `Header::producer_closed`).
    pub closed: AtomicU32,
}

/// A futex word plus the number of threads parked on it.
#[repr(C)]
pub(crate) struct Bell {
    /// Bumped by a notifier that saw waiters; sleepers wait on its value.
    pub seq: AtomicU32,
    /// Threads registered as about to sleep (or sleeping) on `seq`.
    pub waiters: AtomicU32,
}

/// Side is open.
pub(crate) const OPEN: u32 = 0;
/// Side closed normally.
pub(crate) const CLOSED: u32 = 1;
/// Side closed because it found a protocol violation.
pub(crate) const VIOLATED: u32 = 2;
/// Consumer side closed because one end judged the other hung (it stopped heartbeating for
/// longer than the peer timeout): the judged end, if it resumes, learns it was evicted.
pub(crate) const EVICTED: u32 = 3;

/// The segment header. Every field is atomic because another process may write any of them
/// at any time; values are copied into locals once and validated before use.
#[repr(C)]
pub(crate) struct Header {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`]; stored last, with `Release`, once the rest is initialised.
    pub version: AtomicU32,
    /// [`HEADER_LEN`].
    pub header_len: AtomicU32,
    /// Size of the data area in bytes, a power of two.
    pub capacity: AtomicU64,
    /// Process id of the creator (informational: untrusted, 0 if unknown). Was reserved
    /// (zero) space: older peers ignore it.
    pub creator_pid: AtomicU32,
    _pad: u32,
    /// The producer's closed flag ([`OPEN`], [`CLOSED`] or [`VIOLATED`]), since version 2:
    /// on this line, which nothing writes after initialisation but a close, rather than on
    /// the producer's, which every record's position store writes, so that a waiting consumer
    /// polls it beside the next record's header without pulling a busy line.
    pub producer_closed: AtomicU32,
    _pad2: u32,
    _reserved: [u64; 3],
    /// Producer's line: write position and heartbeat (its `closed` is unused since version 2,
    /// see `producer_closed`).
    pub producer: Side,
    /// Consumer's line: read position, heartbeat, closed flag.
    pub consumer: Side,
    /// Consumer parks here waiting for data; the producer rings it.
    pub data_bell: Bell,
    /// Producer parks here waiting for space; the consumer rings it.
    pub space_bell: Bell,
    /// Non-zero once the producer also waits on a wake-up pipe: after a ring of
    /// `space_bell` the consumer runs its space hook (writes the publisher's pipe). Was
    /// reserved (zero) space: older consumers ignore it.
    pub space_listen: AtomicU32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(core::mem::size_of::<Header>() <= HEADER_LEN);
    assert!(core::mem::offset_of!(Header, creator_pid) == 24);
    assert!(core::mem::offset_of!(Header, producer_closed) == 32);
    assert!(core::mem::offset_of!(Header, producer) == 64);
    assert!(core::mem::offset_of!(Header, consumer) == 128);
    assert!(core::mem::offset_of!(Header, data_bell) == 192);
    assert!(core::mem::offset_of!(Header, space_bell) == 200);
    assert!(core::mem::offset_of!(Header, space_listen) == 208);
    assert!(core::mem::align_of::<Header>() == 64);
};

#[cfg(loom)]
impl Header {
    /// A fresh header value for the loom model (shared segments are initialised in place by
    /// `Region::init` instead); `version` stays 0 until published.
    pub(crate) fn new(capacity: u64) -> Self {
        let side = || Side {
            pos: AtomicU64::new(0),
            heartbeat: AtomicU64::new(0),
            closed: AtomicU32::new(OPEN),
        };
        let bell = || Bell {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        };
        Header {
            magic: AtomicU64::new(MAGIC),
            version: AtomicU32::new(0),
            header_len: AtomicU32::new(HEADER_LEN as u32),
            capacity: AtomicU64::new(capacity),
            creator_pid: AtomicU32::new(0),
            _pad: 0,
            producer_closed: AtomicU32::new(OPEN),
            _pad2: 0,
            _reserved: [0; 3],
            producer: side(),
            consumer: side(),
            data_bell: bell(),
            space_bell: bell(),
            space_listen: AtomicU32::new(0),
        }
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    /// A whole message.
    Whole = 1,
    /// First fragment; its payload starts with the message's total length as a `u64`.
    First = 2,
    /// A middle fragment.
    Middle = 3,
    /// The last fragment.
    Last = 4,
    /// Filler up to the end of the data area; `len` covers the rest of it.
    Padding = 5,
    /// The producer gave up on a fragmented message (a deadline expired); drop what was
    /// assembled.
    Abort = 6,
}

impl Kind {
    pub(crate) fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Whole,
            2 => Kind::First,
            3 => Kind::Middle,
            4 => Kind::Last,
            5 => Kind::Padding,
            6 => Kind::Abort,
            _ => return None,
        })
    }
}

/// Bits of the lap tag in a record header word.
pub(crate) const TAG_BITS: u32 = 24;

/// The lap tag of a record starting at position `pos`: the number of the lap it is in
/// (`pos / capacity`), modulo 2^24.
#[inline]
pub(crate) fn lap_tag(pos: u64, capacity: u64) -> u32 {
    ((pos >> capacity.trailing_zeros()) & ((1 << TAG_BITS) - 1)) as u32
}

/// Packs a record header into the 8-byte word stored in the ring: `len` in bits 0..32,
/// `kind` in bits 32..40, `tag` (a [`lap_tag`]) in bits 40..64. An all-zero word (kind 0) is
/// an empty slot: what the producer stores where the next record will go.
#[inline]
pub(crate) fn encode(len: u32, kind: Kind, tag: u32) -> u64 {
    debug_assert!(tag < 1 << TAG_BITS);
    u64::from(len) | (u64::from(kind as u32) << 32) | (u64::from(tag) << 40)
}

/// Splits a stored record header into `(len, kind, tag)`; nothing is validated.
#[inline]
pub(crate) fn decode(word: u64) -> (u32, u32, u32) {
    (word as u32, (word >> 32) as u32 & 0xff, (word >> 40) as u32)
}

/// Whether `word`, read where a record starting at `pos` would have its header, says that
/// record is published: its lap tag is `pos`'s and it is not an empty slot. Says nothing of
/// the rest (kind, length), which the reader validates.
#[inline]
pub(crate) fn published(word: u64, pos: u64, capacity: u64) -> bool {
    let (_, kind, tag) = decode(word);
    kind != 0 && tag == lap_tag(pos, capacity)
}

/// Bytes a record with `payload` bytes occupies: header plus payload rounded up to 8.
#[inline]
pub(crate) const fn record_len(payload: u64) -> u64 {
    RECORD_HEADER + payload.next_multiple_of(ALIGN)
}

/// Whether `capacity` is acceptable for a ring's data area.
pub(crate) fn valid_capacity(capacity: u64) -> bool {
    capacity.is_power_of_two() && (MIN_CAPACITY as u64..=MAX_CAPACITY as u64).contains(&capacity)
}

/// The producer's next step, decided from the free space alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write a record of `kind` carrying `chunk` message bytes (plus, for `First`, the 8-byte
    /// total length).
    Record { kind: Kind, chunk: u64 },
    /// Fill the tail with a padding record and continue at offset 0.
    Pad,
    /// Not enough free space: wait for the consumer.
    Wait,
}

/// Decides what to write next for a message with `remaining` bytes still to write.
///
/// * `offset`: write offset within the data area; `free`: free bytes in the ring;
/// * `first`: nothing of this message is written yet.
///
/// Messages whose record is at most half the capacity are written whole (waiting for room if
/// needed), so the consumer can read them in place. Larger ones stream through as fragments
/// sized to the contiguous free space, so a message of any size passes through any ring.
pub(crate) fn plan(capacity: u64, offset: u64, free: u64, remaining: u64, first: bool) -> Step {
    debug_assert!(offset < capacity && offset.is_multiple_of(ALIGN) && free <= capacity);
    let contig = capacity - offset;
    let room = free.min(contig);
    let tail_free = free >= contig;
    let whole = record_len(remaining);
    if whole <= room {
        let kind = if first { Kind::Whole } else { Kind::Last };
        return Step::Record {
            kind,
            chunk: remaining,
        };
    }
    if first && whole <= capacity / 2 {
        // Prefer one contiguous record: skip the tail if it is too short, else wait.
        return if contig < whole && tail_free {
            Step::Pad
        } else {
            Step::Wait
        };
    }
    // Fragment. Don't cut slivers: a fragment carries at least `min_chunk` bytes.
    let overhead = RECORD_HEADER + if first { 8 } else { 0 };
    // Capped at a quarter of the capacity so that an empty ring always takes a fragment
    // (else a 64-byte ring would wait for ever for room it can never have).
    let min_chunk = remaining.min((capacity / 16).max(64)).min(capacity / 4);
    let chunk = room.saturating_sub(overhead) & !(ALIGN - 1);
    if chunk >= min_chunk {
        debug_assert!(chunk < remaining);
        let kind = if first { Kind::First } else { Kind::Middle };
        Step::Record { kind, chunk }
    } else if tail_free && free > contig {
        Step::Pad
    } else {
        Step::Wait
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// An empty ring must never make the producer wait: nobody would ever wake it.
    #[test]
    #[cfg_attr(miri, ignore = "pure arithmetic, millions of cases")]
    fn empty_ring_never_waits() {
        for shift in 6..=12 {
            let cap = 1u64 << shift;
            for offset in (0..cap).step_by(8) {
                for remaining in (0..4 * cap).chain([u32::MAX as u64]) {
                    for first in [true, false] {
                        let step = plan(cap, offset, cap, remaining, first);
                        assert_ne!(
                            step,
                            Step::Wait,
                            "cap {cap} offset {offset} remaining {remaining} first {first}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn record_len_rounds_payload_up_to_eight() {
        assert_eq!(record_len(0), 8);
        assert_eq!(record_len(1), 16);
        assert_eq!(record_len(8), 16);
        assert_eq!(record_len(9), 24);
    }

    #[test]
    fn header_round_trips_through_encoding() {
        let (len, kind, tag) = decode(encode(12345, Kind::Last, 0xab_cdef));
        assert_eq!(
            (len, Kind::from_u32(kind), tag),
            (12345, Some(Kind::Last), 0xab_cdef)
        );
        assert_eq!(Kind::from_u32(0), None);
        assert_eq!(Kind::from_u32(7), None);
    }

    #[test]
    fn lap_tags_tell_laps_apart_and_empty_slots_are_never_published() {
        let cap = 1024;
        assert_eq!(lap_tag(0, cap), 0);
        assert_eq!(lap_tag(1016, cap), 0);
        assert_eq!(lap_tag(1024, cap), 1);
        assert_eq!(lap_tag(5 * 1024 + 8, cap), 5);
        assert_eq!(
            lap_tag((1 << TAG_BITS) * cap, cap),
            0,
            "wraps after 2^24 laps"
        );
        let word = encode(8, Kind::Whole, lap_tag(2048, cap));
        assert!(published(word, 2048, cap));
        assert!(
            !published(word, 2048 + cap, cap),
            "a header of the previous lap"
        );
        assert!(!published(word, 2048 - cap, cap));
        for pos in [0, 8, cap, (1 << TAG_BITS) * cap] {
            assert!(!published(0, pos, cap), "an empty slot at {pos}");
        }
    }

    #[test]
    fn capacity_must_be_a_power_of_two_within_bounds() {
        assert!(valid_capacity(64));
        assert!(valid_capacity(1 << 20));
        assert!(!valid_capacity(32));
        assert!(!valid_capacity(100));
        assert!(!valid_capacity(1 << 32));
    }

    #[test]
    fn small_message_is_written_whole_when_it_fits() {
        assert_eq!(
            plan(1024, 0, 1024, 100, true),
            Step::Record {
                kind: Kind::Whole,
                chunk: 100
            }
        );
        assert_eq!(
            plan(1024, 0, 1024, 0, true),
            Step::Record {
                kind: Kind::Whole,
                chunk: 0
            }
        );
    }

    #[test]
    fn small_message_pads_the_tail_rather_than_fragmenting() {
        // 64 bytes left at the end, all free; the record needs 112.
        assert_eq!(plan(1024, 960, 1024, 100, true), Step::Pad);
        // Tail not entirely free yet: wait.
        assert_eq!(plan(1024, 960, 32, 100, true), Step::Wait);
    }

    #[test]
    fn large_message_is_fragmented_to_the_contiguous_space() {
        assert_eq!(
            plan(1024, 0, 1024, 5000, true),
            Step::Record {
                kind: Kind::First,
                chunk: 1008
            }
        );
        assert_eq!(
            plan(1024, 512, 1024, 5000, false),
            Step::Record {
                kind: Kind::Middle,
                chunk: 504
            }
        );
        assert_eq!(
            plan(1024, 0, 1024, 300, false),
            Step::Record {
                kind: Kind::Last,
                chunk: 300
            }
        );
    }

    #[test]
    fn fragments_are_never_slivers() {
        // 16 free bytes at the tail: too small for a fragment; pad if the rest is free.
        assert_eq!(plan(1024, 1008, 1024, 5000, false), Step::Pad);
        assert_eq!(plan(1024, 0, 16, 5000, false), Step::Wait);
    }
}
