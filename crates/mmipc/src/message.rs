//! What a subscriber receives: [`Message`] (owned bytes) and [`MessageRef`] (bytes read in
//! place in shared memory). Owns the mapping from a validated frame to a payload plus its
//! origin; must not parse frames (that is `connection::framing`) nor touch rings.

use crate::connection::framing::FRAME_HEADER;
use crate::discovery::EndpointId;
use crate::event::Peer;
use crate::ring::ReadGuard;

/// One message, with where it came from. Dereferences to its payload bytes (`msg.len()`,
/// `&msg[..4]`, `msg.is_empty()`).
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// # let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// # let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
/// # subscriber.wait_for_publishers(1, Duration::from_secs(10))?;
/// publisher.publish(b"hi")?;
/// let msg: mmipc::Message = subscriber.recv_timeout(Duration::from_secs(10))?;
/// assert_eq!(msg.payload(), b"hi");
/// assert_eq!(msg.len(), 2);
/// assert_eq!(msg.publisher_id(), publisher.id());
/// assert_eq!(msg.publisher_pid(), std::process::id());
/// assert_eq!(msg.sequence(), 1); // the publisher's first message
/// let bytes: Vec<u8> = msg.into_payload();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    payload: Vec<u8>,
    publisher: Peer,
    sequence: u64,
}

/// A message read in place from the publisher's ring, without a copy: it holds the ring
/// (no other message of that publisher can be received) until dropped. Dereferences to its
/// payload bytes. From [`Subscriber::recv_ref`](crate::Subscriber::recv_ref) and its
/// variants.
///
/// The bytes live in memory the publisher's process can write; a misbehaving publisher could
/// change them while you read (a well-behaved one never writes into a message it published).
/// Copy with [`MessageRef::to_message`] what you must keep or trust.
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// # let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// # let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
/// # subscriber.wait_for_publishers(1, Duration::from_secs(10))?;
/// publisher.publish(b"hi")?;
/// let msg = subscriber.recv_ref_timeout(Duration::from_secs(10))?;
/// assert_eq!(msg.payload(), b"hi");
/// assert_eq!(msg.sequence(), 1);
/// let kept: mmipc::Message = msg.to_message();
/// assert_eq!(kept.payload(), b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MessageRef<'a> {
    guard: ReadGuard<'a>,
    /// A large message's payload, in the publisher's payload segment (the guard holds its
    /// descriptor, and so the block).
    large: Option<&'a [u8]>,
    publisher: Peer,
    sequence: u64,
}

/// The accessors both message types share, written once.
macro_rules! origin_accessors {
    ($ty:ident, $recv:literal) => {
        #[doc = concat!("The payload bytes (the same as dereferencing the ", stringify!($ty), ").")]
        ///
        /// # Examples
        ///
        /// ```no_run
        /// # let mut subscriber = mmipc::Subscriber::new("telemetry")?;
        #[doc = concat!("let msg = subscriber.", $recv, "();")]
        /// println!("{:?}", msg.payload());
        /// # Ok::<(), mmipc::Error>(())
        /// ```
        pub fn payload(&self) -> &[u8] {
            self
        }

        /// The id of the publisher that sent it.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// # let mut subscriber = mmipc::Subscriber::new("telemetry")?;
        #[doc = concat!("let msg = subscriber.", $recv, "();")]
        /// println!("from {}", msg.publisher_id());
        /// # Ok::<(), mmipc::Error>(())
        /// ```
        pub fn publisher_id(&self) -> EndpointId {
            self.publisher.id
        }

        /// The process id of the publisher that sent it, as its record said when this
        /// subscriber connected. `0` when the publisher had already gone, record and all, by
        /// the time this subscriber found its ring (a short-lived publisher that published
        /// and exited at once: its messages are still delivered, but no record was left to
        /// tell its pid).
        ///
        /// # Examples
        ///
        /// ```no_run
        /// # let mut subscriber = mmipc::Subscriber::new("telemetry")?;
        #[doc = concat!("let msg = subscriber.", $recv, "();")]
        /// println!("from pid {}", msg.publisher_pid());
        /// # Ok::<(), mmipc::Error>(())
        /// ```
        pub fn publisher_pid(&self) -> u32 {
            self.publisher.pid
        }

        /// The publisher's sequence number for this message: it increases by one per
        /// published message, so a gap means messages this subscriber did not get
        /// (full-ring drops).
        ///
        /// # Examples
        ///
        /// ```no_run
        /// # let mut subscriber = mmipc::Subscriber::new("telemetry")?;
        #[doc = concat!("let msg = subscriber.", $recv, "();")]
        /// println!("#{}", msg.sequence());
        /// # Ok::<(), mmipc::Error>(())
        /// ```
        pub fn sequence(&self) -> u64 {
            self.sequence
        }
    };
}

impl Message {
    origin_accessors!(Message, "recv");

    /// The payload, taken out.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let bytes: Vec<u8> = subscriber.recv().into_payload();
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

impl<'a> MessageRef<'a> {
    /// A message in place: `guard` holds a frame whose framing was checked.
    pub(crate) fn new(guard: ReadGuard<'a>, publisher: Peer, sequence: u64) -> MessageRef<'a> {
        debug_assert!(guard.len() >= FRAME_HEADER);
        MessageRef {
            guard,
            large: None,
            publisher,
            sequence,
        }
    }

    /// A large message: `guard` holds its descriptor, `payload` is the block it names (in
    /// the publisher's payload segment, validated). The descriptor is released as soon as
    /// the message drops, so that the publisher can reuse the block.
    pub(crate) fn large(
        mut guard: ReadGuard<'a>,
        payload: &'a [u8],
        publisher: Peer,
        sequence: u64,
    ) -> MessageRef<'a> {
        guard.release_promptly();
        MessageRef {
            guard,
            large: Some(payload),
            publisher,
            sequence,
        }
    }

    origin_accessors!(MessageRef, "recv_ref");

    /// Copies the message out of the ring.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let kept: mmipc::Message = subscriber.recv_ref().to_message();
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn to_message(&self) -> Message {
        Message {
            payload: self.payload().to_vec(),
            publisher: self.publisher,
            sequence: self.sequence,
        }
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.payload
    }
}

impl std::ops::Deref for MessageRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self.large {
            Some(payload) => payload,
            None => self.guard.get(FRAME_HEADER..).unwrap_or_default(),
        }
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsRef<[u8]> for MessageRef<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

fn debug_fields(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    len: usize,
    publisher: Peer,
    sequence: u64,
) -> std::fmt::Result {
    f.debug_struct(name)
        .field("len", &len)
        .field("publisher", &publisher.id)
        .field("pid", &publisher.pid)
        .field("sequence", &sequence)
        .finish()
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(f, "Message", self.len(), self.publisher, self.sequence)
    }
}

impl std::fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(f, "MessageRef", self.len(), self.publisher, self.sequence)
    }
}
