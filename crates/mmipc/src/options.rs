//! Options shared by publishers and subscribers.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ring::{MAX_CAPACITY, MIN_CAPACITY, WaitStrategy};

/// Default capacity of each publisher→subscriber ring (256 KiB).
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::DEFAULT_RING_CAPACITY, 256 * 1024);
/// ```
pub const DEFAULT_RING_CAPACITY: usize = 256 * 1024;
/// Default largest message (64 MiB).
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::DEFAULT_MAX_MESSAGE_SIZE, 64 << 20);
/// ```
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Default heartbeat interval (how often an endpoint proves it is alive).
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::DEFAULT_HEARTBEAT_INTERVAL, std::time::Duration::from_secs(1));
/// ```
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default time without a heartbeat after which a peer is disconnected as hung.
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::DEFAULT_PEER_TIMEOUT, std::time::Duration::from_secs(5));
/// ```
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `max_message_size` accepted (1 TiB).
const MAX_MESSAGE_LIMIT: usize = 1 << 40;

/// What a publisher does when a subscriber's ring has no room for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// // A slow subscriber loses messages (counted) instead of slowing everyone down.
/// let publisher = mmipc::Publisher::builder("docs")
///     .dir(dir.path())
///     .on_full(mmipc::OnFull::DropNewest)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum OnFull {
    /// Wait for room (lossless). A subscriber that crashes or stops heartbeating releases the
    /// publisher within the peer timeout.
    #[default]
    Block,
    /// Wait at most this long, then skip that subscriber for this message (counted as a drop).
    BlockFor(Duration),
    /// Skip that subscriber for this message at once and count a drop; a slow subscriber
    /// never delays the others.
    DropNewest,
    /// Skip that subscriber and make `publish` return [`PublishError::Full`](crate::PublishError::Full) naming it (after every
    /// subscriber with room got the message).
    Fail,
}

/// Default memory a subscriber may hold in incomplete (fragmented, still arriving) messages,
/// all its publishers together (256 MiB, or its `max_message_size` if larger). A publisher
/// whose fragment would go over it has its connection failed as a protocol violation.
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::DEFAULT_REASSEMBLY_BUDGET, 256 << 20);
/// ```
pub const DEFAULT_REASSEMBLY_BUDGET: usize = 256 << 20;

/// Messages of at least this many bytes are written once into the publisher's payload
/// segment and sent to each subscriber as a small descriptor, instead of being copied into
/// every subscriber's ring (see [`PublisherBuilder::payload_threshold`](crate::PublisherBuilder::payload_threshold)).
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::DEFAULT_PAYLOAD_THRESHOLD, 16 * 1024);
/// ```
pub const DEFAULT_PAYLOAD_THRESHOLD: usize = 16 * 1024;

/// Bytes of a publisher's payload segment (see
/// [`PublisherBuilder::payload_capacity`](crate::PublisherBuilder::payload_capacity)): made
/// with the publisher as a sparse file; memory is backed (in steps of 1 MiB or more) as
/// blocks are first handed out.
///
/// # Examples
///
/// ```
/// assert_eq!(mmipc::DEFAULT_PAYLOAD_CAPACITY, 64 << 20);
/// ```
pub const DEFAULT_PAYLOAD_CAPACITY: usize = 64 << 20;

/// Largest heartbeat interval used (one minute; peers honour no more). Larger values are
/// taken as this.
pub(crate) const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);

/// The instant `timeout` from now, or `None` (no deadline: wait for ever) when that is past
/// what the clock can represent, as with `Duration::MAX`.
pub(crate) fn deadline_after(timeout: Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(timeout)
}

/// Settings common to both kinds of endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub dir: Option<PathBuf>,
    /// The channel is shared with the root directory's group (see `group_shared`).
    pub group_shared: bool,
    pub max_message_size: usize,
    pub wait: WaitStrategy,
    pub heartbeat_interval: Duration,
    pub peer_timeout: Duration,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            dir: None,
            group_shared: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            wait: WaitStrategy::default(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            peer_timeout: DEFAULT_PEER_TIMEOUT,
        }
    }
}

impl Common {
    /// Checks the settings, after saturating the heartbeat interval at one minute.
    pub(crate) fn validate(&mut self) -> Result<()> {
        self.heartbeat_interval = self.heartbeat_interval.min(MAX_HEARTBEAT_INTERVAL);
        let bad = |option, problem: String| Err(Error::InvalidOption { option, problem });
        if self.max_message_size > MAX_MESSAGE_LIMIT {
            return bad(
                "max_message_size",
                format!("{} exceeds the limit of 1 TiB", self.max_message_size),
            );
        }
        if self.group_shared && self.dir.is_none() {
            return bad(
                "group_shared",
                "needs an explicit directory, .dir(..), that every member of the group uses \
                 (the default root is private to each user)"
                    .into(),
            );
        }
        if self.heartbeat_interval < Duration::from_millis(1) {
            return bad("heartbeat_interval", "must be at least 1 ms".into());
        }
        if self.peer_timeout < 2 * self.heartbeat_interval {
            return bad(
                "peer_timeout",
                format!(
                    "{:?} must be at least twice the heartbeat interval ({:?})",
                    self.peer_timeout, self.heartbeat_interval
                ),
            );
        }
        Ok(())
    }

    /// How often the runtime ticks this endpoint: once per heartbeat (a tick beats when a
    /// beat is due), and at least four times per peer timeout, so that a silent peer is judged
    /// within a quarter of the timeout.
    pub(crate) fn tick_interval(&self) -> Duration {
        self.heartbeat_interval
            .min(self.peer_timeout / 4)
            .max(Duration::from_millis(1))
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(crate::channel::default_root)
    }
}

pub(crate) fn validate_capacity(capacity: usize) -> Result<()> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY.max(4096)..=MAX_CAPACITY).contains(&capacity) {
        return Err(Error::InvalidOption {
            option: "ring_capacity",
            problem: format!("{capacity} is not a power of two between 4096 and {MAX_CAPACITY}"),
        });
    }
    Ok(())
}

/// Checks a publisher's `payload_capacity`: 0 (no payload segment) or from 64 bytes to what
/// a subscriber maps ([`crate::connection::payload::MAX_CAPACITY`], 1 TiB). A larger segment
/// would be refused by every subscriber, each of its large messages lost to a protocol
/// violation.
pub(crate) fn validate_payload_capacity(bytes: usize) -> Result<()> {
    let max = crate::connection::payload::MAX_CAPACITY;
    if bytes != 0 && !(64..=max).contains(&(bytes as u64)) {
        return Err(Error::InvalidOption {
            option: "payload_capacity",
            problem: format!(
                "{bytes} bytes: use 0 (every message inline) or from 64 bytes to {max} (1 TiB)"
            ),
        });
    }
    Ok(())
}

/// The builder options both endpoints take, written once: `dir`, `wait_strategy`,
/// `heartbeat_interval`, `peer_timeout`. The builder has a `common: Common`; `$ty` is the
/// endpoint's type name, `$waits` says what a wait strategy governs, `$peer` names the peer.
macro_rules! common_builder_options {
    ($ty:literal, $waits:literal, $peer:literal) => {
        /// The root directory where peers find each other (default:
        /// [`default_root`](crate::default_root)).
        ///
        /// # Examples
        ///
        /// ```
        /// # let dir = tempfile::tempdir()?;
        #[doc = concat!("let ep = mmipc::", $ty, "::builder(\"docs\").dir(dir.path()).build()?;")]
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
            self.common.dir = Some(dir.into());
            self
        }

        /// Shares the channel with the other users of the root directory's group (default:
        /// off, the channel is private to this user). Needs an explicit [`dir`](Self::dir)
        /// that every member uses, ideally on a memory file system such as `/dev/shm`
        /// (shared memory then never touches a disk).
        ///
        /// With sharing on, directories are made with mode 2770 (setgid: files take the directory's
        /// group) and files with mode 0660, whatever the umask; an existing root must belong to a
        /// group this process is a member of, and every directory and file used must belong to that
        /// group and give no access to other users, or the endpoint refuses it
        /// ([`Error::GroupDirectory`](crate::Error::GroupDirectory) for a directory,
        /// [`Error::BadSegment`](crate::Error::BadSegment) for a file); a file owned by another
        /// member is fine. Every member of the group can then read, publish and disturb the channel
        /// as you can: share only with accounts you trust (see the threat model in
        /// `docs/PROTOCOL.md`). Every endpoint of the channel must use the same setting: an
        /// endpoint without it refuses the group's directory as not private.
        ///
        /// Create the root for the group once, e.g. `install -d -m 2770 -g svc /dev/shm/svc`
        /// (or let the first endpoint create it with your effective group).
        ///
        /// # Examples
        ///
        /// ```
        /// # let dir = tempfile::tempdir()?;
        /// # let root = dir.path().join("shared");
        #[doc = concat!("let ep = mmipc::", $ty, "::builder(\"docs\")")]
        ///     .dir(&root)
        ///     .group_shared(true)
        ///     .build()?;
        /// # #[cfg(unix)] {
        /// use std::os::unix::fs::PermissionsExt;
        /// assert_eq!(std::fs::metadata(&root)?.permissions().mode() & 0o7777, 0o2770);
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn group_shared(mut self, shared: bool) -> Self {
            self.common.group_shared = shared;
            self
        }

        #[doc = concat!("How ", $waits, " waits (default: spin briefly, then sleep).")]
        ///
        /// # Examples
        ///
        /// ```
        /// # let dir = tempfile::tempdir()?;
        #[doc = concat!("let ep = mmipc::", $ty, "::builder(\"docs\")")]
        ///     .dir(dir.path())
        ///     .wait_strategy(mmipc::WaitStrategy::Park)
        ///     .build()?;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn wait_strategy(mut self, strategy: crate::WaitStrategy) -> Self {
            self.common.wait = strategy;
            self
        }

        /// How often this endpoint proves it is alive (default 1 s).
        ///
        /// # Examples
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let dir = tempfile::tempdir()?;
        #[doc = concat!("let ep = mmipc::", $ty, "::builder(\"docs\")")]
        ///     .dir(dir.path())
        ///     .heartbeat_interval(Duration::from_millis(100))
        ///     .peer_timeout(Duration::from_millis(500))
        ///     .build()?;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn heartbeat_interval(mut self, interval: std::time::Duration) -> Self {
            self.common.heartbeat_interval = interval;
            self
        }

        #[doc = concat!("How long a ", $peer, " may go without a heartbeat (or ring progress) before it is")]
        /// disconnected as hung, [`DisconnectReason::TimedOut`](crate::DisconnectReason::TimedOut)
        /// (default 5 s; at least twice the heartbeat interval).
        ///
        /// # Examples
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let dir = tempfile::tempdir()?;
        #[doc = concat!("let ep = mmipc::", $ty, "::builder(\"docs\")")]
        ///     .dir(dir.path())
        ///     .peer_timeout(Duration::from_secs(2))
        ///     .build()?;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn peer_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.common.peer_timeout = timeout;
            self
        }
    };
}
pub(crate) use common_builder_options;
