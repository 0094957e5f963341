//! What the messages carry, and how the receiving side checks them.
//!
//! A message for sequence number `seq` of `n` bytes is a pseudo-random pattern that depends on
//! `seq`, with `seq` itself in the first 8 bytes, `seq ^ MID` in an aligned word in the middle
//! (from 24 bytes) and `!seq` in the last 8 (from 16 bytes): [`fill`] writes all of it,
//! [`stamp`] only the three words. Payloads are at least 8 bytes. Ping-pong sends [`fill`]ed messages and compares every echo
//! with what it sent, byte for byte; a throughput sender [`fill`]s every [`SAMPLE_EVERY`]th
//! message and only [`stamp`]s the others, and the receiver checks what was written.

use anyhow::{Result, bail, ensure};

/// Every this many messages of a throughput run carry the full pattern, checked byte by byte.
pub const SAMPLE_EVERY: u64 = 1024;
/// First word of the end marker of a throughput run (never a sequence number).
const END_MARK: u64 = u64::MAX;
/// The end marker: [`END_MARK`], message count, checksum. Shorter than any payload.
pub const END_LEN: usize = 24;
/// The message that ends a ping-pong run: one byte, shorter than any payload.
pub const STOP: &[u8] = b"!";
const MID: u64 = 0x5bd1_e995_5bd1_e995;

/// Word `i` of the pattern of message `seq`.
#[inline]
fn pattern_word(seq: u64, i: usize) -> u64 {
    let x =
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^ (x >> 29)
}

fn put(buf: &mut [u8], at: usize, w: u64) {
    buf[at..at + 8].copy_from_slice(&w.to_le_bytes());
}

/// The 8 bytes at `at` as a little-endian word.
pub fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn mid(n: usize) -> Option<usize> {
    (n >= 24).then_some((n / 2) & !7)
}

/// Writes the sequence words of message `seq` into `buf` (at least 8 bytes).
pub fn stamp(buf: &mut [u8], seq: u64) {
    let n = buf.len();
    put(buf, 0, seq);
    if let Some(m) = mid(n) {
        put(buf, m, seq ^ MID);
    }
    if n >= 16 {
        put(buf, n - 8, !seq);
    }
}

/// Writes the whole of message `seq` into `buf`: the pattern, then the sequence words.
pub fn fill(buf: &mut [u8], seq: u64) {
    let mut chunks = buf.chunks_exact_mut(8);
    for (i, c) in (&mut chunks).enumerate() {
        c.copy_from_slice(&pattern_word(seq, i).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = pattern_word(seq, usize::MAX).to_le_bytes();
    let len = rest.len();
    rest.copy_from_slice(&last[..len]);
    stamp(buf, seq);
}

/// Writes message `seq` of a stream into `buf`: [`fill`] every [`SAMPLE_EVERY`]th message,
/// [`stamp`] the others (what [`StreamCheck`] expects).
pub fn write_sampled(buf: &mut [u8], seq: u64) {
    if seq.is_multiple_of(SAMPLE_EVERY) {
        fill(buf, seq);
    } else {
        stamp(buf, seq);
    }
}

/// One term of the running checksum of a stream.
#[inline]
pub fn mix(seq: u64, len: usize) -> u64 {
    (seq ^ (len as u64).rotate_left(40))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

/// The end marker of a stream that carried `count` messages with checksum `sum`.
pub fn end_marker(count: u64, sum: u64) -> [u8; END_LEN] {
    let mut m = [0u8; END_LEN];
    put(&mut m, 0, END_MARK);
    put(&mut m, 8, count);
    put(&mut m, 16, sum);
    m
}

/// Compares an echoed message with the one sent.
pub fn check_echo(got: &[u8], sent: &[u8], seq: u64) -> Result<()> {
    if got == sent {
        return Ok(());
    }
    ensure!(
        got.len() == sent.len(),
        "round trip {seq}: {} bytes came back, {} were sent",
        got.len(),
        sent.len()
    );
    let at = got.iter().zip(sent).position(|(a, b)| a != b).unwrap_or(0);
    bail!(
        "round trip {seq}: byte {at} of {} came back as {:#04x}, {:#04x} was sent",
        sent.len(),
        got[at],
        sent[at]
    )
}

/// The receiving end of a stream: checks each message, counts, sums.
pub struct StreamCheck {
    size: usize,
    /// The next expected sequence number = messages taken so far.
    pub next: u64,
    /// Running checksum of what arrived.
    pub sum: u64,
    scratch: Vec<u8>,
}

/// What [`StreamCheck::take`] found.
pub enum Taken {
    /// A payload message, checked.
    Message,
    /// The end marker; its count and checksum matched what arrived.
    End,
}

impl StreamCheck {
    /// A checker for a stream of `size`-byte messages.
    pub fn new(size: usize) -> StreamCheck {
        StreamCheck {
            size,
            next: 0,
            sum: 0,
            scratch: vec![0; size],
        }
    }

    /// Checks one message.
    pub fn take(&mut self, msg: &[u8]) -> Result<Taken> {
        let seq = self.next;
        if msg.len() == END_LEN && word(msg, 0) == END_MARK {
            let (count, sum) = (word(msg, 8), word(msg, 16));
            ensure!(
                count == seq,
                "the sender sent {count} messages, {seq} arrived"
            );
            ensure!(
                sum == self.sum,
                "checksum of the {seq} messages differs from the sender's"
            );
            return Ok(Taken::End);
        }
        let n = self.size;
        ensure!(
            msg.len() == n,
            "message {seq}: {} bytes, expected {n}",
            msg.len()
        );
        let head = word(msg, 0);
        ensure!(head == seq, "message {seq}: sequence number {head} instead");
        if let Some(m) = mid(n) {
            ensure!(
                word(msg, m) == seq ^ MID,
                "message {seq}: middle word differs"
            );
        }
        if n >= 16 {
            ensure!(word(msg, n - 8) == !seq, "message {seq}: last word differs");
        }
        if seq.is_multiple_of(SAMPLE_EVERY) {
            fill(&mut self.scratch, seq);
            if msg != self.scratch.as_slice() {
                let at = msg.iter().zip(&self.scratch).position(|(a, b)| a != b);
                bail!("message {seq}: byte {at:?} differs from what was sent");
            }
        }
        self.sum = self.sum.wrapping_add(mix(head, msg.len()));
        self.next += 1;
        Ok(Taken::Message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_checks_out_and_corruption_is_caught() {
        for size in [8usize, 16, 24, 64, 100, 4096] {
            let mut buf = vec![0u8; size];
            let mut check = StreamCheck::new(size);
            let mut sum = 0u64;
            for seq in 0..3000u64 {
                write_sampled(&mut buf, seq);
                sum = sum.wrapping_add(mix(seq, size));
                assert!(matches!(check.take(&buf).unwrap(), Taken::Message));
            }
            assert!(matches!(
                check.take(&end_marker(3000, sum)).unwrap(),
                Taken::End
            ));
            // A sampled message with one byte flipped.
            let mut check = StreamCheck::new(size);
            fill(&mut buf, 0);
            let at = if size >= 16 { size - 9 } else { size - 1 };
            buf[at] ^= 1;
            assert!(check.take(&buf).is_err(), "size {size}");
        }
        // Wrong count in the end marker.
        let mut check = StreamCheck::new(64);
        assert!(check.take(&end_marker(1, 0)).is_err());
    }

    #[test]
    fn echoes_compare_whole() {
        let mut a = vec![0u8; 1000];
        fill(&mut a, 7);
        let mut b = a.clone();
        assert!(check_echo(&b, &a, 7).is_ok());
        b[500] ^= 0x10;
        let e = check_echo(&b, &a, 7).unwrap_err().to_string();
        assert!(e.contains("byte 500"), "{e}");
        assert!(check_echo(&b[..10], &a, 7).is_err());
        // Different sequence numbers give different bodies.
        let mut c = vec![0u8; 1000];
        fill(&mut c, 8);
        assert_ne!(a[100..900], c[100..900]);
    }
}
