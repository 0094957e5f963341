//! The pub/sub frame inside a ring message: an 8-byte little-endian sequence number, then the
//! payload. Owns encoding (publisher) and validation (subscriber) of that header; must not
//! touch rings or connections (it only sees byte slices).

use super::payload::DESCRIPTOR_FLAG;

/// Bytes of framing before each payload in a ring message: the publisher's sequence number.
pub(crate) const FRAME_HEADER: usize = 8;

/// How many parts fit in a frame without allocating (the header takes one).
const INLINE_PARTS: usize = 8;

/// Calls `f` with the frame of message number `seq` made of `parts`: the header, then the
/// parts, as one gather list (no copy, no allocation for up to 7 parts).
pub(crate) fn with_frame<R>(seq: u64, parts: &[&[u8]], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    let seq = seq.to_le_bytes();
    if parts.len() < INLINE_PARTS {
        let mut small: [&[u8]; INLINE_PARTS] = [&[]; INLINE_PARTS];
        small[0] = &seq;
        small[1..=parts.len()].copy_from_slice(parts);
        f(&small[..=parts.len()])
    } else {
        let big: Vec<&[u8]> = std::iter::once(&seq[..])
            .chain(parts.iter().copied())
            .collect();
        f(&big)
    }
}

/// What a subscriber makes of a frame from a peer's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A valid frame: the message's sequence number and payload length.
    Next { seq: u64, len: u64 },
    /// A descriptor of a message in the publisher's payload segment (`connection::payload`),
    /// whose bytes follow the header; they are checked there.
    Descriptor { seq: u64 },
    /// Too short for a header, or a sequence number not above `last` (they only go up):
    /// the publisher broke the protocol.
    Invalid,
}

/// Checks a frame against the sequence number of the previous message of the same
/// publisher (`0` before the first).
pub(crate) fn check(frame: &[u8], last: u64) -> Frame {
    let Some(raw) = frame.first_chunk::<FRAME_HEADER>() else {
        return Frame::Invalid;
    };
    let raw = u64::from_le_bytes(*raw);
    let seq = raw & !DESCRIPTOR_FLAG;
    if seq <= last {
        Frame::Invalid
    } else if raw & DESCRIPTOR_FLAG != 0 {
        Frame::Descriptor { seq }
    } else {
        Frame::Next {
            seq,
            len: (frame.len() - FRAME_HEADER) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(seq: u64, parts: &[&[u8]]) -> Vec<u8> {
        with_frame(seq, parts, |frame| frame.concat())
    }

    #[test]
    fn frames_round_trip_with_any_number_of_parts() {
        for n in [0, 1, 6, 7, 8, 20] {
            let parts: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i]).collect();
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let frame = encode(42, &refs);
            let len = parts.iter().map(Vec::len).sum::<usize>() as u64;
            assert_eq!(check(&frame, 41), Frame::Next { seq: 42, len });
            assert_eq!(&frame[FRAME_HEADER..], refs.concat().as_slice());
        }
    }

    #[test]
    fn short_frames_and_sequence_numbers_going_back_are_invalid() {
        assert_eq!(check(&[1, 0, 0], 0), Frame::Invalid);
        assert_eq!(check(&encode(5, &[b"x"]), 5), Frame::Invalid);
        assert_eq!(check(&encode(4, &[]), 5), Frame::Invalid);
        assert_eq!(check(&encode(6, &[]), 5), Frame::Next { seq: 6, len: 0 });
    }

    #[test]
    fn a_sequence_number_with_the_top_bit_is_a_descriptor() {
        let d = encode(6 | DESCRIPTOR_FLAG, &[&[0; 16]]);
        assert_eq!(check(&d, 5), Frame::Descriptor { seq: 6 });
        assert_eq!(check(&d, 6), Frame::Invalid);
    }
}
