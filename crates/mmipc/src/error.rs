//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in mmipc: creating endpoints, publishing, receiving, and the
/// segment and platform operations beneath them.
#[derive(thiserror::Error)]
#[non_exhaustive]
///
/// # Examples
///
/// ```
/// match mmipc::Publisher::new("bad/name") {
///     Err(mmipc::Error::InvalidChannel { problem, .. }) => println!("refused: {problem}"),
///     Err(e) => println!("other error: {e}"),
///     Ok(_) => unreachable!(),
/// }
/// ```
pub enum Error {
    /// An operating-system call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create segment", "lock", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A directory is not private to the current user, so peers of another user could read or
    /// tamper with channels in it.
    #[error(
        "directory {} {problem}; mmipc needs a private directory (owned by you, mode 0700): \
         if you did not make it, someone else may have, to block or spy on mmipc; remove it \
         (as its owner or root: rm -r '{}'), or choose another directory \
         (PublisherBuilder::dir / SubscriberBuilder::dir, `mmipc --dir`, or XDG_RUNTIME_DIR)",
        path.display(),
        path.display()
    )]
    InsecureDirectory {
        /// The directory concerned.
        path: PathBuf,
        /// What is wrong with it ("is owned by uid 0", "is writable by other users", ...).
        problem: String,
    },
    /// A shared segment exists but is not what we expect (too small, not a regular file, not
    /// ours, or its header does not match).
    #[error("segment {} is unusable: {problem}; remove it or let the peer recreate it", path.display())]
    BadSegment {
        /// The segment file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A channel name is unusable.
    #[error(
        "invalid channel name {name:?}: {problem}; use 1 to 100 printable characters without '/'"
    )]
    InvalidChannel {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A builder option is out of range.
    #[error("invalid option {option}: {problem}")]
    InvalidOption {
        /// The option ("ring_capacity", ...).
        option: &'static str,
        /// What is wrong with the value given.
        problem: String,
    },
    /// A wait ended before its condition held.
    #[error("timed out {what}")]
    Timeout {
        /// What was being waited for ("waiting for 2 subscribers (have 1)", ...).
        what: String,
    },
    /// The endpoint was closed.
    #[error("the {0} is closed")]
    Closed(&'static str),
    /// A message is larger than the publisher's `max_message_size`.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes; raise max_message_size")]
    MessageTooLarge {
        /// Length of the message.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Under [`OnFull::Fail`](crate::OnFull::Fail), some subscribers' rings were full: they
    /// did not get the message (every other subscriber did).
    #[cfg(not(loom))]
    #[error("{} subscriber(s) had a full ring and did not get the message", .subscribers.len())]
    Full {
        /// The subscribers that missed the message.
        subscribers: Vec<crate::EndpointId>,
    },
    /// Under [`OnFull::Fail`](crate::OnFull::Fail), the message is larger than some
    /// subscribers accept (their `max_message_size`): they did not get it (every other
    /// subscriber did). Under the other policies this is a counted drop and an
    /// [`Event::MessageTooLarge`](crate::Event::MessageTooLarge).
    #[cfg(not(loom))]
    #[error(
        "message of {len} bytes is larger than {} subscriber(s) accept (smallest limit {} \
         bytes); they did not get it: raise their max_message_size or split the message",
        .subscribers.len(),
        .subscribers.iter().map(|s| s.1).min().unwrap_or(0)
    )]
    TooLargeForSubscribers {
        /// Length of the message.
        len: usize,
        /// Each subscriber that did not get it, with its limit.
        subscribers: Vec<(crate::EndpointId, u64)>,
    },
    /// The platform lacks an implementation of this operation.
    #[error("{what} is not supported on this platform yet (Linux is)")]
    Unsupported {
        /// The missing operation.
        what: &'static str,
    },
}

/// The `Debug` form is the message (with its advice) and the chain of causes, so that
/// `fn main() -> Result<(), mmipc::Error>` prints something a person can act on.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate's segment and platform operations.
///
/// # Examples
///
/// ```
/// fn start() -> mmipc::Result<mmipc::Publisher> {
///     mmipc::Publisher::new("telemetry")
/// }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
