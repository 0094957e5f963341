//! The crate's errors: one type per operation, so that a caller can match what can
//! actually happen in each call ([`PublishError`], [`RecvTimeoutError`], [`WaitError`]), and [`Error`] for creating endpoints and the segment and platform
//! operations beneath them, into which every other one converts (for `?`). Owns the
//! messages users read; must not decide policy.

use std::io;
use std::path::PathBuf;

/// What creating an endpoint (and the segment and platform operations beneath it) can
/// report, and any other mmipc error converted by `?` (so `fn main() -> Result<(),
/// mmipc::Error>` can use every call).
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
    /// A directory of a group-shared channel
    /// ([`group_shared`](crate::PublisherBuilder::group_shared)) is not one the group alone
    /// can use: a symbolic link, of a group you are not in, of another group than the root,
    /// open to other users, or not writable by the group.
    #[error(
        "directory {} {problem}; a group-shared channel needs a directory of one of your \
         groups, mode 2770, closed to other users: make it with `install -d -m 2770 -g GROUP \
         '{}'` (or fix it with chgrp and chmod 2770), or choose another directory",
        path.display(),
        path.display()
    )]
    GroupDirectory {
        /// The directory concerned.
        path: PathBuf,
        /// What is wrong with it ("belongs to group 100, which you are not a member of", ...).
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
    /// `publish` failed (from `?` on a [`PublishError`]).
    #[cfg(not(loom))]
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A receive with a time limit found nothing (from `?` on a [`RecvTimeoutError`]).
    #[error(transparent)]
    RecvTimeout(#[from] RecvTimeoutError),
    /// Waiting for peers failed (from `?` on a [`WaitError`]).
    #[cfg(not(loom))]
    #[error(transparent)]
    Wait(#[from] WaitError),
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

/// Shorthand for results with [`Error`].
///
/// # Examples
///
/// ```
/// fn start() -> mmipc::Result<mmipc::Publisher> {
///     mmipc::Publisher::new("telemetry")
/// }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why [`Publisher::publish`](crate::Publisher::publish) failed.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use mmipc::PublishError;
/// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).max_message_size(4).build()?;
/// match publisher.publish(b"too long") {
///     Err(PublishError::MessageTooLarge { len, max }) => println!("{len} > {max}"),
///     Err(PublishError::Full { subscribers }) => println!("{} missed it", subscribers.len()),
///     Err(PublishError::TooLargeForSubscribers { subscribers, .. }) => println!("{subscribers:?}"),
///     Err(PublishError::Closed) => println!("closed"),
///     Ok(()) => println!("sent"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The message is larger than the publisher's `max_message_size`; nobody got it.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes; raise max_message_size")]
    MessageTooLarge {
        /// Length of the message.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Under [`OnFull::Fail`](crate::OnFull::Fail), some subscribers' rings were full: they
    /// did not get the message (every other subscriber did).
    #[error("{} subscriber(s) had a full ring and did not get the message", .subscribers.len())]
    Full {
        /// The subscribers that missed the message.
        subscribers: Vec<crate::EndpointId>,
    },
    /// Under [`OnFull::Fail`](crate::OnFull::Fail), the message is larger than some
    /// subscribers accept (their `max_message_size`): they did not get it (every other
    /// subscriber did). Under the other policies this is a counted drop and an
    /// [`Event::MessageTooLarge`](crate::Event::MessageTooLarge).
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
    /// The publisher is closed.
    #[error("the publisher is closed")]
    Closed,
}

/// A receive with a time limit ([`Subscriber::recv_timeout`](crate::Subscriber::recv_timeout),
/// [`recv_ref_timeout`](crate::Subscriber::recv_ref_timeout)) found no message in time. (A
/// receive cannot fail otherwise: a subscriber without publishers waits for new ones.)
///
/// # Examples
///
/// ```no_run
/// # use std::time::Duration;
/// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
/// match subscriber.recv_timeout(Duration::from_secs(1)) {
///     Ok(msg) => println!("{} bytes", msg.len()),
///     Err(mmipc::RecvTimeoutError) => println!("nothing for a second"),
/// }
/// # Ok::<(), mmipc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for a message")]
pub struct RecvTimeoutError;

/// Why [`Publisher::wait_for_subscribers`](crate::Publisher::wait_for_subscribers) or
/// [`Subscriber::wait_for_publishers`](crate::Subscriber::wait_for_publishers) failed.
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
/// match publisher.wait_for_subscribers(1, Duration::from_millis(10)) {
///     Err(mmipc::WaitError::Timeout { wanted, have, .. }) => println!("{have} of {wanted}"),
///     Err(e) => println!("{e}"),
///     Ok(n) => println!("{n} connected"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// Fewer than `wanted` peers connected in time.
    #[error(
        "timed out waiting for {wanted} {}(s) (have {have}){}",
        peers.noun(),
        same_process_hint(*same_process)
    )]
    Timeout {
        /// How many peers were waited for.
        wanted: usize,
        /// How many were connected at the end.
        have: usize,
        /// What kind of peers.
        peers: crate::EndpointKind,
        /// Subscribers of the channel in this same process, which a publisher does not
        /// deliver to (nor count) unless built with `.deliver_to_same_process(true)`; `0`
        /// when waiting for publishers.
        same_process: usize,
    },
    /// The endpoint was closed while waiting.
    #[error("the endpoint was closed while waiting")]
    Closed,
}

#[cfg(not(loom))]
fn same_process_hint(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(
            "; {n} subscriber(s) of this channel are in this same process and are not \
             counted: a publisher does not deliver to its own process unless built with \
             .deliver_to_same_process(true)"
        )
    }
}
