//! Why ring operations fail: [`RingError`] and the protocol [`Violation`]s a consumer or
//! producer can find in the shared region. Plain values, shared by both ends; this module owns
//! no state and must not touch the region or wait.

/// Why a ring operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = mmipc::ring::with_capacity(4096);
/// drop(tx);
/// let mut buf = Vec::new();
/// assert_eq!(rx.try_read(&mut buf), Err(mmipc::ring::RingError::Closed));
/// ```
pub enum RingError {
    /// The peer closed the ring (for a consumer: after everything written was read).
    #[error("the peer closed the ring")]
    Closed,
    /// A non-blocking write found no room for the whole message; nothing was written.
    #[error("the ring is full; retry later or use a blocking write")]
    Full,
    /// The deadline passed before the operation could complete.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The peer broke the protocol; the ring is now closed.
    #[error("protocol violation by the peer ({0}); the ring is closed")]
    Violation(#[from] Violation),
    /// This consumer rejected what it read (a check of the layer above the ring failed); the
    /// ring is closed and the producer sees it as violated.
    #[error("the reader rejected the ring's content; the ring is closed")]
    Rejected,
}

/// A protocol violation found in the shared region: evidence of a buggy or hostile peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
///
/// # Examples
///
/// ```
/// use mmipc::ring::{RingError, Violation};
/// # let err = RingError::Violation(Violation::Fragments { total: 1 });
/// if let RingError::Violation(v) = err {
///     eprintln!("the peer broke the protocol: {v}; the ring is closed");
/// }
/// ```
pub enum Violation {
    /// The peer's position is misaligned, moved backwards or is more than a capacity away.
    #[error("peer position {theirs} is impossible (ours {ours}, capacity {capacity})")]
    Position {
        /// Our position.
        ours: u64,
        /// The peer's position as read.
        theirs: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// A record header names an unknown kind.
    #[error("unknown record kind {kind} at offset {offset}")]
    Kind {
        /// The kind read.
        kind: u32,
        /// Offset of the record in the data area.
        offset: u64,
    },
    /// The producer's position says a record is published at `offset`, but the record's
    /// header is not there: an empty slot, or a lap tag of another lap.
    #[error(
        "no record header at offset {offset} (lap tag {tag}, expected {expected}) although the producer's position covers it"
    )]
    Unpublished {
        /// Offset of the record in the data area.
        offset: u64,
        /// The lap tag read there.
        tag: u32,
        /// The lap tag of a record published there now.
        expected: u32,
    },
    /// A record is longer than the space before the end of the ring, or reaches further than
    /// a capacity past the space the consumer handed back.
    #[error("record of {len} bytes at offset {offset} overruns the {room} bytes available")]
    Overrun {
        /// Payload length read.
        len: u32,
        /// Offset of the record in the data area.
        offset: u64,
        /// Bytes it could occupy.
        room: u64,
    },
    /// A record arrived where the fragment sequence does not allow it.
    #[error("{found} record where {expected} was expected")]
    Sequence {
        /// Kind found.
        found: &'static str,
        /// What was allowed there.
        expected: &'static str,
    },
    /// A message exceeds the consumer's limit.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The consumer's limit.
        max: usize,
    },
    /// Fragments do not add up to the length the first one announced.
    #[error("fragments add up to more than the announced {total} bytes")]
    Fragments {
        /// Announced total.
        total: u64,
    },
    /// The fragments of incomplete messages would hold more memory than the reassembly
    /// budget shared by this consumer's group allows.
    #[error("reassembling would hold {wanted} bytes, over the budget of {budget} bytes")]
    Budget {
        /// Bytes of incomplete messages the group would hold.
        wanted: u64,
        /// The budget.
        budget: u64,
    },
    /// Memory for reassembling a message could not be allocated.
    #[error("could not allocate {len} bytes to reassemble a message")]
    OutOfMemory {
        /// Bytes the message would have needed so far.
        len: u64,
    },
}
