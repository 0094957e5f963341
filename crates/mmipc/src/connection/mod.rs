//! One publisher→subscriber connection, below the endpoints and above the ring: the frame
//! inside each ring message ([`framing`]), whether the peer lives ([`liveness`]), the names
//! and lifetime rule of the shared files a connection uses ([`segment`]), the
//! subscriber's doorbell file that all its rings ring ([`doorbell`]), the wake-up pipes of
//! peers that wait in an event loop ([`wake`]), and the publisher's payload segment of large
//! messages ([`payload`]). Owns the
//! per-connection protocol; must not read the directory for peers (that is `discovery`) nor
//! know about more than one connection (that is the endpoint core).

pub(crate) mod doorbell;
pub(crate) mod framing;
pub(crate) mod liveness;
pub(crate) mod payload;
pub(crate) mod segment;
pub(crate) mod wake;
