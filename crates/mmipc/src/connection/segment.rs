//! Names of a connection's shared files in the channel's segment directory, and the rule of
//! who removes a ring: `ring-<publisher>-<subscriber>-<generation>` (one per connection; a
//! reconnect takes the next generation), `sub-<subscriber>.bell` (the subscriber's doorbell,
//! shared by all its rings), `pub-<publisher>.pay` (the publisher's payload segment) and
//! `pub-<publisher>.wake` (its wake-up pipe). Owns naming and parsing; must not create, open or
//! remove files.

use std::path::PathBuf;

use crate::channel::ChannelDirs;
use crate::discovery::EndpointId;

/// The doorbell file of subscriber `sub`.
pub(crate) fn bell_path(dirs: &ChannelDirs, sub: EndpointId) -> PathBuf {
    dirs.segments.join(format!("sub-{sub}.bell"))
}

/// The wake-up pipe of publisher `publisher` (made by it when an async publish first waits
/// for room). A subscriber's is beside its doorbell (`sub-<id>.wake`).
pub(crate) fn publisher_pipe_path(dirs: &ChannelDirs, publisher: EndpointId) -> PathBuf {
    dirs.segments.join(format!("pub-{publisher}.wake"))
}

/// The payload segment of publisher `publisher` (`connection::payload`), beside its rings.
pub(crate) fn payload_path(dirs: &ChannelDirs, publisher: EndpointId) -> PathBuf {
    dirs.segments.join(format!("pub-{publisher}.pay"))
}

/// The ring of connection `generation` from `publisher` to `sub`.
pub(crate) fn ring_path(
    dirs: &ChannelDirs,
    publisher: EndpointId,
    sub: EndpointId,
    generation: u64,
) -> PathBuf {
    dirs.segments
        .join(format!("ring-{publisher}-{sub}-{generation}"))
}

/// Parses `ring-<pub>-<sub>-<gen>`.
pub(crate) fn parse_ring_name(name: &str) -> Option<(EndpointId, EndpointId, u64)> {
    let rest = name.strip_prefix("ring-")?;
    let (p, rest) = rest.split_at_checked(32)?;
    let rest = rest.strip_prefix('-')?;
    let (s, rest) = rest.split_at_checked(32)?;
    let generation = rest.strip_prefix('-')?;
    if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((p.parse().ok()?, s.parse().ok()?, generation.parse().ok()?))
}

/// The one rule for a ring whose publisher is gone (closed or dead): it stays while its
/// subscriber lives and may not have read everything; that subscriber drains it and removes
/// it (nothing published is lost to a close). `unread` is whether the ring holds messages,
/// `None` when the caller cannot look into it (a cleaner listing files). Everyone else
/// (the closing publisher, cleaners) removes it.
pub(crate) fn ring_outlives_publisher(subscriber_alive: bool, unread: Option<bool>) -> bool {
    subscriber_alive && unread != Some(false)
}
