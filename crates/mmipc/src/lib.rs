//! # mmipc — publish/subscribe between processes over shared memory
//!
//! A [`Publisher`] on a named channel sends byte messages; every [`Subscriber`] of that
//! channel, in any process of the same user on this machine, receives every message, each at
//! its own pace. Peers find each other through a directory (no broker, no daemon), notice each
//! other's arrival, departure, crash and hang ([`Event`]), and clean up after the dead.
//!
//! Each publisher→subscriber pair has its own lock-free ring in shared memory ([`ring`]); a
//! subscriber sleeps on one futex doorbell for all of its publishers, and a busy one costs the
//! publisher no system call.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! // Process A
//! let publisher = mmipc::Publisher::new("telemetry")?;
//! publisher.wait_for_subscribers(1, Duration::from_secs(5))?;
//! publisher.publish(b"hello")?;
//! publisher.publish_parts(&[b"header|", b"body"])?; // gathered into one message
//!
//! // Process B
//! let mut subscriber = mmipc::Subscriber::new("telemetry")?;
//! let msg = subscriber.recv(); // sleeps in the kernel while idle
//! assert_eq!(msg.payload(), b"hello");
//! # Ok::<(), mmipc::Error>(())
//! ```
//!
//! Large messages (from [`DEFAULT_PAYLOAD_THRESHOLD`]) to two or more subscribers are written
//! once into the publisher's payload segment, whatever their number, and a
//! [`Publisher::loan`] lets you write one in place ([`Loan`]: zero copies, also to one
//! subscriber); subscribers read them in place with [`Subscriber::recv_ref`].
//!
//! Files live under [`default_root`] (or the directory given to the builders): one JSON record
//! and one lock file per endpoint, plus shared segments on tmpfs. See docs/ARCHITECTURE.md and
//! docs/PROTOCOL.md in the repository.
//!
//! # Trust
//!
//! Everything another process writes (records, ring headers and records, doorbells,
//! descriptors of large messages and their blocks' headers) is
//! validated before use: a misbehaving peer causes a clean error and a dropped connection
//! ([`DisconnectReason::ProtocolViolation`]), never an out-of-bounds access, a panic or
//! unbounded memory. One limit: a process of your user that **truncates** a segment file
//! makes the next access of a peer to the cut pages raise `SIGBUS`, which kills that peer.
//! Shared files cannot be protected from shrinking without giving up that rings outlive
//! their publisher (docs/PROTOCOL.md, "Threat model"); such a process could also simply kill
//! yours.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]
// Atomics come from `sync` (the loom shim); clippy.toml lists the std ones.
#![deny(clippy::disallowed_types)]
// Under loom only the ring is built (see `cfg_not_loom!`); what the layers above would use
// of it is dead code there.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

/// Items of the layers above the ring, which loom builds leave out (they model-check the ring
/// alone), as mio's `cfg_os_poll!` leaves out its OS layer: one switch instead of an
/// attribute per item.
macro_rules! cfg_not_loom {
    ($($item:item)*) => {
        $(
            #[cfg(not(loom))]
            $item
        )*
    };
}

mod error;
pub mod ring;
mod sync;
mod sys;

/// Under loom, of the connection layer only the payload segment's bookkeeping (its reuse rule
/// is modelled in `ring::loom_tests`).
#[cfg(loom)]
#[allow(dead_code)]
mod connection {
    pub(crate) mod payload;
}

cfg_not_loom! {
    mod callbacks;
    mod channel;
    mod connection;
    mod discovery;
    mod endpoint;
    mod event;
    pub mod inspect;
    mod message;
    mod options;
    mod publisher;
    mod runtime;
    mod subscriber;

    pub use callbacks::{CallbackHandle, Callbacks};
    pub use channel::{MAX_CHANNEL_LEN, default_root, validate_channel};
    pub use discovery::{EndpointId, EndpointKind};
    pub use error::{PublishError, WaitError};
    pub use event::{ConnectionStats, DisconnectReason, Event, Events, Peer};
    pub use message::{Message, MessageRef};
    pub use options::{
        DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PAYLOAD_CAPACITY,
        DEFAULT_PAYLOAD_THRESHOLD, DEFAULT_PEER_TIMEOUT, DEFAULT_REASSEMBLY_BUDGET,
        DEFAULT_RING_CAPACITY, OnFull,
    };
    pub use publisher::{Loan, Publisher, PublisherBuilder};
    pub use subscriber::{Subscriber, SubscriberBuilder};
    #[cfg(all(any(unix, windows), feature = "tokio"))]
    pub use subscriber::Messages;
}

pub use error::{Error, RecvTimeoutError, Result};
pub use ring::WaitStrategy;
