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
    pub max_message_size: usize,
    pub wait: WaitStrategy,
    pub heartbeat_interval: Duration,
    pub peer_timeout: Duration,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            dir: None,
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
