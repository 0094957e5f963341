//! [`Subscriber`]: receives every message of every publisher on its channel.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::channel::ChannelDirs;
use crate::control::Control;
use crate::discovery::{self, EndpointId, EndpointKind, Listing, Record};
use crate::error::{Error, Result};
use crate::event::{
    ConnInfo, ConnectionStats, DisconnectReason, Event, EventHub, Peer, PeerEnd, Silence,
    departure, lock, wait_for_count,
};
use crate::options::{Common, DEFAULT_REASSEMBLY_BUDGET};
use crate::ring::Budget;
use crate::ring::{
    Consumer, OsFutex, ReadGuard, RingError, RingSegment, WaitError, WaitStrategy, notify,
    wait_until,
};
use crate::runtime::{self, Endpoint};
use crate::sync::{AtomicBool, Ordering};
use crate::sys;

/// Bytes of framing before each payload in a ring message: the publisher's sequence number.
pub(crate) const FRAME_HEADER: usize = 8;

/// One message, with where it came from.
///
/// # Examples
///
/// ```no_run
/// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
/// let msg = subscriber.recv()?;
/// println!("{} bytes from publisher {} (pid {}), #{}", msg.len(), msg.publisher_id(), msg.publisher_pid(), msg.sequence());
/// # Ok::<(), mmipc::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    payload: Vec<u8>,
    publisher: Peer,
    sequence: u64,
}

impl Message {
    /// The payload bytes.
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
    /// let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
    /// assert_eq!(msg.payload(), b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, taken out.
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
    /// let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
    /// let bytes: Vec<u8> = msg.into_payload();
    /// assert_eq!(bytes, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// Payload length in bytes.
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
    /// let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
    /// assert_eq!(msg.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether the payload is empty (zero-length messages are valid).
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
    /// let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
    /// assert!(!msg.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// The id of the publisher that sent it.
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
    /// let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
    /// assert_eq!(msg.publisher_id(), publisher.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publisher_id(&self) -> EndpointId {
        self.publisher.id
    }

    /// The process id of the publisher that sent it, as its record said when this subscriber
    /// connected. `0` when the publisher had already gone, record and all, by the time this
    /// subscriber found its ring (a short-lived publisher that published and exited at once:
    /// its messages are still delivered, but no record was left to tell its pid).
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
    /// let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
    /// assert_eq!(msg.publisher_pid(), std::process::id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publisher_pid(&self) -> u32 {
        self.publisher.pid
    }

    /// The publisher's sequence number for this message: it increases by one per published
    /// message, so a gap means messages this subscriber did not get (full-ring drops).
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
    /// let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
    /// assert_eq!(msg.sequence(), 1); // the publisher's first message
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.payload
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("len", &self.payload.len())
            .field("publisher", &self.publisher.id)
            .field("pid", &self.publisher.pid)
            .field("sequence", &self.sequence)
            .finish()
    }
}

/// A message lent in place by [`Subscriber::recv_ref`]: its payload is read straight from
/// the shared ring, without a copy. The ring space goes back to the publisher when this is
/// dropped; until then the subscriber cannot receive (it is borrowed), and the publisher
/// has that much less room, so hold it briefly and [`to_message`](MessageRef::to_message)
/// it to keep it.
///
/// The bytes live in memory the publisher's process can write: a buggy or hostile
/// publisher can change them while you read (never out of bounds of the message). Copy
/// before validating if you do not trust the publisher.
///
/// # Examples
///
/// ```no_run
/// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
/// let msg = subscriber.recv_ref()?;
/// let first = msg.payload().first().copied();
/// let kept: mmipc::Message = msg.to_message(); // an owned copy
/// # Ok::<(), mmipc::Error>(())
/// ```
pub struct MessageRef<'a> {
    guard: ReadGuard<'a>,
    publisher: Peer,
    sequence: u64,
}

impl MessageRef<'_> {
    /// The payload bytes, in place.
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
    /// assert_eq!(msg.payload(), b"hi"); // read in place
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.guard[FRAME_HEADER..]
    }

    /// Payload length in bytes.
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
    /// assert_eq!(msg.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.guard.len() - FRAME_HEADER
    }

    /// Whether the payload is empty.
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
    /// assert!(!msg.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the publisher that sent it.
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
    /// assert_eq!(msg.publisher_id(), publisher.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publisher_id(&self) -> EndpointId {
        self.publisher.id
    }

    /// The process id of the publisher that sent it, as its record said when this subscriber
    /// connected. `0` when the publisher had already gone, record and all, by the time this
    /// subscriber found its ring (a short-lived publisher that published and exited at once:
    /// its messages are still delivered, but no record was left to tell its pid).
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
    /// assert_eq!(msg.publisher_pid(), std::process::id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publisher_pid(&self) -> u32 {
        self.publisher.pid
    }

    /// The publisher's sequence number for this message (see [`Message::sequence`]).
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
    /// assert_eq!(msg.sequence(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// An owned copy (one allocation), releasing the ring space.
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
    /// let kept: mmipc::Message = msg.to_message();
    /// assert_eq!(kept.payload(), b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_message(&self) -> Message {
        Message {
            payload: self.payload().to_vec(),
            publisher: self.publisher,
            sequence: self.sequence,
        }
    }
}

impl std::ops::Deref for MessageRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.payload()
    }
}

impl AsRef<[u8]> for MessageRef<'_> {
    fn as_ref(&self) -> &[u8] {
        self.payload()
    }
}

impl std::fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageRef")
            .field("len", &self.len())
            .field("publisher", &self.publisher.id)
            .field("pid", &self.publisher.pid)
            .field("sequence", &self.sequence)
            .finish()
    }
}

/// The receiving end of a channel. `Send`, not `Sync`: one thread receives at a time (move
/// it into a thread, or use [`Subscriber::on_message`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mmipc::{Publisher, Subscriber};
///
/// # let dir = tempfile::tempdir()?;
/// let mut subscriber = Subscriber::builder("docs-subscriber").dir(dir.path()).build()?;
/// let publisher = Publisher::builder("docs-subscriber").dir(dir.path()).deliver_to_same_process(true).build()?;
/// subscriber.wait_for_publishers(1, Duration::from_secs(10))?;
/// publisher.publish(b"ping")?;
/// let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
/// assert_eq!(msg.payload(), b"ping");
/// assert_eq!(msg.publisher_id(), publisher.id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subscriber {
    shared: Arc<Shared>,
    active: Vec<Incoming>,
    /// Newer rings of publishers that still have an older ring in `active` (a reconnect after
    /// a time-out): read only once the older one is drained, so that each publisher's
    /// messages arrive in order.
    waiting: Vec<Incoming>,
    next: usize,
}

/// Configures a [`Subscriber`]; from [`Subscriber::builder`].
#[derive(Debug, Clone)]
#[must_use]
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let builder: mmipc::SubscriberBuilder = mmipc::Subscriber::builder("docs").dir(dir.path());
/// let subscriber = builder.build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SubscriberBuilder {
    channel: String,
    common: Common,
    reassembly_budget: Option<usize>,
}

impl SubscriberBuilder {
    /// The root directory where peers find each other (default:
    /// [`default_root`](crate::default_root)).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.common.dir = Some(dir.into());
        self
    }

    /// Largest message accepted (default 64 MiB); publishers skip (and count) larger ones
    /// for this subscriber.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// // Larger messages are dropped for this subscriber (counted in `connections()`).
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).max_message_size(4096).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.common.max_message_size = bytes;
        self
    }

    /// Memory this subscriber may hold in messages still arriving in fragments (larger than
    /// a ring), all publishers together (default [`DEFAULT_REASSEMBLY_BUDGET`], or
    /// `max_message_size` if larger). A publisher whose fragment would go over it has its
    /// connection ended as [`DisconnectReason::ProtocolViolation`]; the others go on. Must be
    /// at least `max_message_size`. (The buffers themselves may be up to twice what they
    /// hold, as vectors grow by doubling.)
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs")
    ///     .dir(dir.path())
    ///     .max_message_size(16 << 20)
    ///     .reassembly_budget(64 << 20)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reassembly_budget(mut self, bytes: usize) -> Self {
        self.reassembly_budget = Some(bytes);
        self
    }

    /// How a blocking receive waits (default: spin briefly, then sleep on the doorbell).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs")
    ///     .dir(dir.path())
    ///     .wait_strategy(mmipc::WaitStrategy::Spin) // lowest latency, one busy core
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
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
    /// let subscriber = mmipc::Subscriber::builder("docs")
    ///     .dir(dir.path())
    ///     .heartbeat_interval(Duration::from_millis(100))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.common.heartbeat_interval = interval;
        self
    }

    /// How long a publisher may go without a heartbeat before it is disconnected as hung
    /// (default 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs")
    ///     .dir(dir.path())
    ///     .peer_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.common.peer_timeout = timeout;
        self
    }

    /// Creates the subscriber and announces it; publishers connect to it from then on. Before
    /// returning it waits (up to half a second, normally well under a millisecond each) until
    /// every publisher of another process that is alive at that moment has connected, so
    /// [`Subscriber::num_active_connections`] counts them at once. Publishers that start
    /// later connect in the background.
    ///
    /// # Errors
    /// As [`PublisherBuilder::build`](crate::PublisherBuilder::build).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// assert_eq!(subscriber.channel(), "docs");
    /// assert!(mmipc::Subscriber::builder("").build().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(mut self) -> Result<Subscriber> {
        self.common.validate()?;
        let budget = match self.reassembly_budget {
            Some(b) if b < self.common.max_message_size => {
                return Err(Error::InvalidOption {
                    option: "reassembly_budget",
                    problem: format!(
                        "{b} bytes is less than max_message_size ({}): such a message could \
                         never be received; raise the budget or lower max_message_size",
                        self.common.max_message_size
                    ),
                });
            }
            Some(b) => b,
            None => DEFAULT_REASSEMBLY_BUDGET.max(self.common.max_message_size),
        };
        let id = EndpointId::random();
        let (dirs, lock_file) =
            ChannelDirs::new_with_lock(&self.common.root(), &self.channel, |d| {
                discovery::lock_path(d, EndpointKind::Subscriber, id)
            })?;
        let cleanup = |e: Error| {
            let _ = std::fs::remove_file(lock_file.path());
            e
        };
        let control = Control::create(&discovery::bell_path(&dirs, id)).map_err(cleanup)?;
        let record = Record {
            protocol: discovery::PROTOCOL,
            kind: EndpointKind::Subscriber,
            id: id.to_string(),
            pid: std::process::id(),
            max_message_size: self.common.max_message_size as u64,
            heartbeat_interval_ms: self.common.heartbeat_interval.as_millis() as u64,
            created_unix_ms: discovery::unix_ms(),
        };
        let record_path = discovery::write_record(&dirs, &record, id).map_err(cleanup)?;
        let now = Instant::now();
        let shared = Arc::new(Shared {
            id,
            channel: self.channel,
            dirs,
            common: self.common,
            record_path,
            control,
            // The frame header travels with each message.
            budget: Budget::new(budget as u64 + FRAME_HEADER as u64),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
            maint: Mutex::new(Maint {
                conns: HashMap::new(),
                draining: Vec::new(),
                seen: HashMap::new(),
                next_beat: now,
                last_tick: now,
            }),
            changed: Condvar::new(),
            events: EventHub::default(),
            stop: AtomicBool::new(false),
            cleaned: AtomicBool::new(false),
            lock_file: Mutex::new(Some(lock_file)),
        });
        let weak = Arc::downgrade(&shared);
        runtime::register(weak);
        shared.connect_to_live_publishers();
        Ok(Subscriber {
            shared,
            active: Vec::new(),
            waiting: Vec::new(),
            next: 0,
        })
    }
}

/// How long `SubscriberBuilder::build` waits at most for live publishers to connect.
const CONNECT_WAIT: Duration = Duration::from_millis(500);

struct Shared {
    id: EndpointId,
    channel: String,
    dirs: ChannelDirs,
    common: Common,
    record_path: PathBuf,
    control: Control,
    /// Reassembly memory shared by all of this subscriber's rings.
    budget: Arc<Budget>,
    pending: Mutex<Vec<Incoming>>,
    has_pending: AtomicBool,
    maint: Mutex<Maint>,
    changed: Condvar,
    events: EventHub,
    /// A stop was requested: receives fail with `Closed`.
    stop: AtomicBool,
    /// Files removed.
    cleaned: AtomicBool,
    lock_file: Mutex<Option<sys::LockFile>>,
}

struct Incoming {
    consumer: Consumer,
    info: Arc<ConnInfo>,
    last_seq: u64,
    /// The ring reported its end (closed and drained, or violated): drop it.
    done: bool,
}

struct Maint {
    conns: HashMap<EndpointId, Tracked>,
    /// Ended connections whose ring still held messages: their `Disconnected` is reported
    /// once the receive path has drained them (by it, or by `tick` seeing the ring empty).
    draining: Vec<Arc<ConnInfo>>,
    /// Highest ring generation opened per publisher.
    seen: HashMap<EndpointId, u64>,
    next_beat: Instant,
    last_tick: Instant,
}

struct Tracked {
    info: Arc<ConnInfo>,
    ring_path: PathBuf,
    silence: Silence,
}

/// What reading one connection produced.
/// What looking at one incoming ring found.
enum Staged {
    /// A valid message is staged in ring `active[i]`, with this sequence number.
    Ready(u64),
    Nothing,
    Ended,
}

impl Subscriber {
    /// A subscriber on `channel` in the default directory, with default options.
    ///
    /// # Errors
    /// As [`SubscriberBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let msg = subscriber.recv()?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn new(channel: &str) -> Result<Subscriber> {
        Subscriber::builder(channel).build()
    }

    /// A builder for a subscriber on `channel`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let subscriber = mmipc::Subscriber::builder("telemetry").max_message_size(1 << 20).build()?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn builder(channel: &str) -> SubscriberBuilder {
        SubscriberBuilder {
            channel: channel.to_owned(),
            common: Common::default(),
            reassembly_budget: None,
        }
    }

    /// This subscriber's id.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// println!("subscriber {}", subscriber.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> EndpointId {
        self.shared.id
    }

    /// The channel name.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// assert_eq!(subscriber.channel(), "docs");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel(&self) -> &str {
        &self.shared.channel
    }

    /// Waits for the next message from any publisher.
    ///
    /// # Errors
    /// [`Error::Closed`] if the subscriber was closed through its [`CallbackHandle`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let msg = subscriber.recv()?;
    /// println!("{} bytes", msg.len());
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv(&mut self) -> Result<Message> {
        self.recv_ref().map(|m| m.to_message())
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// # Errors
    /// [`Error::Timeout`] if none arrived in time.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// match subscriber.recv_timeout(Duration::from_secs(1)) {
    ///     Ok(msg) => println!("{msg:?}"),
    ///     Err(mmipc::Error::Timeout { .. }) => println!("quiet"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        self.recv_ref_timeout(timeout).map(|m| m.to_message())
    }

    /// The next message if one is waiting; never blocks.
    ///
    /// # Errors
    /// As [`Subscriber::recv`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// while let Some(msg) = subscriber.try_recv()? {
    ///     println!("{} bytes", msg.len());
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Option<Message>> {
        Ok(self.try_recv_ref()?.map(|m| m.to_message()))
    }

    /// Waits for the next message and lends it in place, without copying or allocating: the
    /// payload is read straight from shared memory (or from the subscriber's reassembly
    /// buffer for a message larger than the ring). The publisher gets the space back when the
    /// [`MessageRef`] drops, so hold it briefly.
    ///
    /// # Errors
    /// As [`Subscriber::recv`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let mut total = 0usize;
    /// for _ in 0..1000 {
    ///     let msg = subscriber.recv_ref()?;
    ///     total += msg.len(); // no copy, no allocation
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv_ref(&mut self) -> Result<MessageRef<'_>> {
        self.recv_ref_until(None)
    }

    /// As [`Subscriber::recv_ref`], waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if none arrived in time.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let msg = subscriber.recv_ref_timeout(Duration::from_secs(1))?;
    /// println!("#{}: {} bytes", msg.sequence(), msg.len());
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<MessageRef<'_>> {
        // A message already waiting costs no clock read.
        if let Some(found) = self.find()? {
            return Ok(self.take(found));
        }
        // A timeout too large for the clock (`Duration::MAX`) means no deadline.
        self.recv_ref_until(crate::options::deadline_after(timeout))
    }

    /// As [`Subscriber::try_recv`], lending the message in place like
    /// [`Subscriber::recv_ref`].
    ///
    /// # Errors
    /// As [`Subscriber::recv`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// if let Some(msg) = subscriber.try_recv_ref()? {
    ///     println!("{} bytes", msg.payload().len());
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn try_recv_ref(&mut self) -> Result<Option<MessageRef<'_>>> {
        let found = self.find()?;
        Ok(found.map(|f| self.take(f)))
    }

    /// An iterator of received messages; it ends when the subscriber is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// for msg in subscriber.iter().take(10) {
    ///     println!("{} bytes", msg.len());
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn iter(&mut self) -> impl Iterator<Item = Message> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Runs `callback` on a thread of its own for each message (like the C# library's
    /// `ReceivedBytes` event), until the returned handle is closed or dropped. The same as
    /// `self.callbacks().on_message(callback).start()`; see [`Subscriber::callbacks`] for
    /// connect and disconnect handlers. Dropping the handle from inside the callback is
    /// allowed and does not deadlock.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let handle = subscriber.on_message(|msg| println!("{} bytes", msg.len()));
    /// std::thread::sleep(std::time::Duration::from_secs(1));
    /// println!("{} publishers", handle.num_active_connections());
    /// handle.close();
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn on_message<F>(self, callback: F) -> CallbackHandle
    where
        F: FnMut(Message) + Send + 'static,
    {
        self.callbacks().on_message(callback).start()
    }

    /// Handlers for messages, connections and disconnections, run in order on one thread
    /// that the returned [`CallbackHandle`] owns (the C# library's `ReceivedBytes`,
    /// `OnConnect` and `OnDisconnect`). The handle still answers
    /// [`num_active_connections`](CallbackHandle::num_active_connections),
    /// [`connections`](CallbackHandle::connections) and [`events`](CallbackHandle::events);
    /// dropping it stops the thread and closes the subscriber.
    ///
    /// Order: a publisher's connect handler runs before any of its messages, its disconnect
    /// handler after the last of them.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let handle = subscriber
    ///     .callbacks()
    ///     .on_connect(|peer| println!("publisher pid {} connected", peer.pid))
    ///     .on_message(move |msg| tx.send(msg.into_payload()).unwrap())
    ///     .on_disconnect(|peer, reason| println!("pid {} left: {reason:?}", peer.pid))
    ///     .start();
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
    /// publisher.publish(b"hello")?;
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(10))?, b"hello");
    /// assert_eq!(handle.num_active_connections(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn callbacks(self) -> Callbacks {
        Callbacks {
            subscriber: self,
            on_message: None,
            on_connect: None,
            on_disconnect: None,
        }
    }

    /// Waits for the next message, or returns `None` as soon as an event was emitted after
    /// `seen` (for the callback thread, which handles both). With a message comes the number
    /// of events emitted before it.
    fn recv_or_event(&mut self, seen: u64) -> Result<Option<(Message, u64)>> {
        loop {
            if let Some(found) = self.find()? {
                // Events emitted up to now came before this message (a ring's `Connected`
                // is emitted before the ring reaches us; its `Disconnected` not before the
                // ring is drained, which it is not while this message is still in it).
                let emitted = self.shared.events.emitted();
                return Ok(Some((self.take(found).to_message(), emitted)));
            }
            if self.shared.events.emitted() != seen {
                return Ok(None);
            }
            let control = self.shared.control.clone();
            let strategy = self.shared.common.wait;
            let _ = wait_until(&OsFutex, control.bell(), strategy, None, || {
                Ok::<bool, ()>(self.ready() || self.shared.events.emitted() != seen)
            });
        }
    }

    /// Waits until at least `n` publishers are connected; returns the number connected.
    ///
    /// # Errors
    /// [`Error::Timeout`] if fewer than `n` connected in time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
    /// assert_eq!(subscriber.wait_for_publishers(1, Duration::from_secs(10))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_publishers(&self, n: usize, timeout: Duration) -> Result<usize> {
        runtime::rescan();
        wait_for_count(
            &self.shared.maint,
            &self.shared.changed,
            n,
            timeout,
            "publisher",
            |m| m.conns.len(),
        )
    }

    /// Number of publishers currently connected.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// assert_eq!(subscriber.num_active_connections(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn num_active_connections(&self) -> usize {
        self.shared.num_connections()
    }

    /// A snapshot of every connection: peer, counters, ring fill.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let subscriber = mmipc::Subscriber::new("telemetry")?;
    /// for c in subscriber.connections() {
    ///     println!("publisher pid {}: {} msgs, {} missed", c.peer.pid, c.messages, c.drops);
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn connections(&self) -> Vec<ConnectionStats> {
        self.shared.connection_stats()
    }

    /// A new receiver of this subscriber's connection events.
    ///
    /// **Order against messages.** A publisher's `Connected` comes before any of its
    /// messages can be received. Its `Disconnected` comes after the last of its messages
    /// that this subscriber delivers: if its ring still holds messages when it goes (closed,
    /// crashed or timed out), the event is sent by the receive call that finds the ring
    /// drained — so a program that stops receiving also stops getting that publisher's
    /// `Disconnected`. The same holds for callbacks.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let events = subscriber.events();
    /// std::thread::spawn(move || {
    ///     for event in events {
    ///         println!("{event:?}"); // Connected { .. } / Disconnected { .., reason }
    ///     }
    /// });
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn events(&self) -> mpsc::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Closes the subscriber and removes its files. Dropping it does the same.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// subscriber.close(); // the same as dropping it: its files are removed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) {}

    fn recv_ref_until(&mut self, deadline: Option<Instant>) -> Result<MessageRef<'_>> {
        loop {
            if let Some(found) = self.find()? {
                return Ok(self.take(found));
            }
            let control = self.shared.control.clone();
            let strategy = self.shared.common.wait;
            let ready = wait_until(&OsFutex, control.bell(), strategy, deadline, || {
                Ok::<bool, ()>(self.ready())
            });
            if let Err(WaitError::TimedOut) = ready {
                return Err(Error::Timeout {
                    what: "waiting for a message".into(),
                });
            }
        }
    }

    fn ready(&mut self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
            || self.shared.has_pending.load(Ordering::Relaxed)
            || self.active.iter_mut().any(|c| c.consumer.poll())
    }

    /// Finds the next message, round-robin over the publishers, and leaves it staged in its
    /// ring; returns which ring and its sequence number. Finding and taking are two steps so
    /// that no borrow of a ring is held across the search.
    fn find(&mut self) -> Result<Option<(usize, u64)>> {
        let s = &*self.shared;
        if s.stop.load(Ordering::Acquire) {
            return Err(Error::Closed("subscriber"));
        }
        // A plain load first: the swap (a locked RMW) only when a new connection waits.
        if s.has_pending.load(Ordering::Relaxed) && s.has_pending.swap(false, Ordering::AcqRel) {
            let pending = std::mem::take(&mut *lock(&s.pending));
            for c in pending {
                let id = c.info.peer.id;
                let mut older = self.active.iter().chain(&self.waiting);
                if older.any(|o| o.info.peer.id == id) {
                    self.waiting.push(c);
                } else {
                    self.active.push(c);
                }
            }
        }
        let n = self.active.len();
        let mut ended = false;
        for k in 0..n {
            let i = (self.next + k) % n;
            match stage(&mut self.active[i], &s.events) {
                Staged::Ready(seq) => {
                    self.next = i + 1;
                    return Ok(Some((i, seq)));
                }
                Staged::Nothing => {}
                Staged::Ended => ended = true,
            }
        }
        if ended {
            self.retire();
        }
        Ok(None)
    }

    /// Drops the rings that ended, and moves the next ring of the same publisher (if one is
    /// waiting) into their place, carrying the sequence number on so that what the
    /// publisher sent while disconnected counts as drops.
    fn retire(&mut self) {
        let mut k = 0;
        while k < self.active.len() {
            if !self.active[k].done {
                k += 1;
                continue;
            }
            let old = self.active.swap_remove(k);
            let id = old.info.peer.id;
            if let Some(pos) = self.waiting.iter().position(|w| w.info.peer.id == id) {
                let mut next = self.waiting.remove(pos);
                next.last_seq = next.last_seq.max(old.last_seq);
                self.active.push(next);
            }
        }
    }

    /// Takes the message `find` staged.
    fn take(&mut self, (i, sequence): (usize, u64)) -> MessageRef<'_> {
        let c = &mut self.active[i];
        let publisher = c.info.peer;
        let guard = c
            .consumer
            .try_read_in_place()
            .ok()
            .flatten()
            .expect("find() staged a message in this ring");
        MessageRef {
            guard,
            publisher,
            sequence,
        }
    }
}

/// Stages the next message of one ring if there is one, checking its framing and counting
/// it (and any gap in sequence numbers as drops).
fn stage(c: &mut Incoming, events: &EventHub) -> Staged {
    // A ring that ended (a violation included) yields nothing more, even if the
    // round-robin comes back to it before it is dropped from the active list.
    if c.done {
        return Staged::Ended;
    }
    let info = &c.info;
    let end = |c: &mut Incoming, reason| {
        c.info.end(reason, events);
        c.done = true;
        Staged::Ended
    };
    match c.consumer.prepare() {
        Ok(true) => {
            let frame = c.consumer.staged().unwrap_or_default();
            let seq = frame
                .first_chunk::<FRAME_HEADER>()
                .map(|seq| u64::from_le_bytes(*seq));
            let len = frame.len().saturating_sub(FRAME_HEADER) as u64;
            match seq {
                Some(seq) if seq > c.last_seq => {
                    if c.last_seq != 0 {
                        info.drops.add(seq - c.last_seq - 1);
                    }
                    info.messages.add(1);
                    info.bytes.add(len);
                    c.last_seq = seq;
                    Staged::Ready(seq)
                }
                _ => {
                    // Too short for a frame, or a sequence number that went backwards.
                    drop(c.consumer.try_read_in_place());
                    c.consumer.violate();
                    end(c, DisconnectReason::ProtocolViolation)
                }
            }
        }
        Ok(false) => Staged::Nothing,
        Err(RingError::Violation(_)) => end(c, DisconnectReason::ProtocolViolation),
        // The publisher closed its side: because it found us (or the ring) broken, or
        // normally.
        Err(_) if c.info.control.violated() => end(c, DisconnectReason::ProtocolViolation),
        Err(_) => end(c, DisconnectReason::Closed),
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.shutdown();
        // Dropping our consumers marks the rings closed and wakes blocked publishers.
        self.active.clear();
        self.waiting.clear();
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("channel", &self.shared.channel)
            .field("id", &self.shared.id)
            .finish()
    }
}

type MessageFn = Box<dyn FnMut(Message) + Send>;
type ConnectFn = Box<dyn FnMut(Peer) + Send>;
type DisconnectFn = Box<dyn FnMut(Peer, DisconnectReason) + Send>;

/// Handlers of a subscriber, from [`Subscriber::callbacks`]; [`Callbacks::start`] runs them.
#[must_use = "the handlers run only once `.start()` is called"]
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// let callbacks: mmipc::Callbacks = subscriber.callbacks().on_message(|msg| println!("{msg:?}"));
/// let handle = callbacks.start();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Callbacks {
    subscriber: Subscriber,
    on_message: Option<MessageFn>,
    on_connect: Option<ConnectFn>,
    on_disconnect: Option<DisconnectFn>,
}

impl Callbacks {
    /// Runs `f` for each message.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber.callbacks().on_message(|msg| println!("{} bytes", msg.len())).start();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_message(mut self, f: impl FnMut(Message) + Send + 'static) -> Self {
        self.on_message = Some(Box::new(f));
        self
    }

    /// Runs `f` when a publisher connects (also, at start, for each publisher already
    /// connected), before any of its messages.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber.callbacks().on_connect(|peer| println!("pid {} here", peer.pid)).start();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_connect(mut self, f: impl FnMut(Peer) + Send + 'static) -> Self {
        self.on_connect = Some(Box::new(f));
        self
    }

    /// Runs `f` when a publisher's connection ends, after the last of its messages.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber
    ///     .callbacks()
    ///     .on_disconnect(|peer, reason| println!("pid {} left: {reason:?}", peer.pid))
    ///     .start();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_disconnect(mut self, f: impl FnMut(Peer, DisconnectReason) + Send + 'static) -> Self {
        self.on_disconnect = Some(Box::new(f));
        self
    }

    /// Starts the handler thread. It runs until the handle is closed or dropped (which also
    /// closes the subscriber).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber.callbacks().on_message(|_| {}).start();
    /// handle.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(self) -> CallbackHandle {
        let Callbacks {
            mut subscriber,
            mut on_message,
            mut on_connect,
            mut on_disconnect,
        } = self;
        let shared = Arc::clone(&subscriber.shared);
        // Subscribed before the snapshot of current connections: a connection made in
        // between is announced once (the set of announced publishers dedups).
        let events = subscriber.events();
        // Events emitted before this were not sent to `events` (or are counted in it).
        let base = subscriber.shared.events.emitted();
        let thread = std::thread::Builder::new()
            .name("mmipc-callback".into())
            .spawn(move || {
                let mut announced: HashSet<EndpointId> = HashSet::new();
                for c in subscriber.connections() {
                    announced.insert(c.peer.id);
                    if let Some(f) = on_connect.as_mut() {
                        f(c.peer);
                    }
                }
                let mut handled = 0u64;
                // Handles the events in the channel, up to the one numbered `upto` (counted
                // from `base`) if given.
                let mut dispatch = |upto: Option<u64>, handled: &mut u64| loop {
                    if upto.is_some_and(|u| base + *handled >= u) {
                        return;
                    }
                    let Ok(event) = events.try_recv() else { return };
                    *handled += 1;
                    match event {
                        Event::Connected { peer } => {
                            if announced.insert(peer.id)
                                && let Some(f) = on_connect.as_mut()
                            {
                                f(peer);
                            }
                        }
                        Event::Disconnected { peer, reason } => {
                            announced.remove(&peer.id);
                            if let Some(f) = on_disconnect.as_mut() {
                                f(peer, reason);
                            }
                        }
                        _ => {}
                    }
                };
                loop {
                    let seen = subscriber.shared.events.emitted();
                    dispatch(None, &mut handled);
                    match subscriber.recv_or_event(seen) {
                        Ok(Some((msg, emitted))) => {
                            // The events that came before this message, first.
                            dispatch(Some(emitted), &mut handled);
                            if let Some(f) = on_message.as_mut() {
                                f(msg);
                            }
                        }
                        Ok(None) => {}
                        Err(_) => return,
                    }
                }
            })
            .expect("cannot spawn the callback thread");
        CallbackHandle {
            shared,
            thread: Some(thread),
        }
    }
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("subscriber", &self.subscriber.shared.id)
            .finish()
    }
}

/// Owns the handler thread of [`Subscriber::callbacks`] / [`Subscriber::on_message`]; stops it
/// (and closes the subscriber) when closed or dropped, and still answers for the subscriber.
#[must_use = "the callbacks stop when the handle is dropped: keep it in a variable \
              (`let handle = ...`), not `let _ = ...`"]
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// let handle: mmipc::CallbackHandle = subscriber.on_message(|msg| println!("{msg:?}"));
/// drop(handle); // stops the callback
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CallbackHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl CallbackHandle {
    /// Stops the callback thread and waits for it (unless called from the callback itself),
    /// then closes the subscriber.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber.on_message(|msg| println!("{} bytes", msg.len()));
    /// handle.close(); // stops the callback thread and closes the subscriber
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) {}

    /// Number of publishers currently connected (the C# `NumActiveConnections()`).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let handle = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?.on_message(|_| {});
    /// assert_eq!(handle.num_active_connections(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn num_active_connections(&self) -> usize {
        self.shared.num_connections()
    }

    /// A snapshot of every connection, as [`Subscriber::connections`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let handle = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?.on_message(|_| {});
    /// assert!(handle.connections().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connections(&self) -> Vec<ConnectionStats> {
        self.shared.connection_stats()
    }

    /// A new receiver of the subscriber's connection events, as [`Subscriber::events`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let handle = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?.on_message(|_| {});
    /// let events = handle.events();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn events(&self) -> mpsc::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The subscriber's id.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let handle = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?.on_message(|_| {});
    /// println!("subscriber {}", handle.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> EndpointId {
        self.shared.id
    }
}

impl Drop for CallbackHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        notify(&OsFutex, self.shared.control.bell());
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for CallbackHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackHandle")
            .field("subscriber", &self.shared.id)
            .finish()
    }
}

impl Shared {
    fn num_connections(&self) -> usize {
        lock(&self.maint).conns.len()
    }

    fn connection_stats(&self) -> Vec<ConnectionStats> {
        lock(&self.maint)
            .conns
            .values()
            .map(|t| t.info.stats())
            .collect()
    }

    fn shutdown(&self) {
        if self.cleaned.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut m = lock(&self.maint);
        // Our side of every ring, and our doorbell, are closed before our record goes: a
        // publisher that finds the record gone can tell a clean close from a crash.
        self.control.mark_closed();
        for t in m.conns.values() {
            t.info.control.close_consumer_side();
        }
        let _ = std::fs::remove_file(&self.record_path);
        for t in m.conns.values() {
            let _ = sys::unlink_segment(&t.ring_path);
        }
        m.conns.clear();
        drop(m);
        for ring in discovery::rings_of(&self.dirs, EndpointKind::Subscriber, self.id) {
            let _ = sys::unlink_segment(&ring);
        }
        lock(&self.pending).clear();
        let _ = sys::unlink_segment(&discovery::bell_path(&self.dirs, self.id));
        if let Some(l) = lock(&self.lock_file).take() {
            let _ = std::fs::remove_file(l.path());
        }
        self.dirs.remove_if_empty();
        self.changed.notify_all();
    }

    /// Connects to every publisher of another process alive now, before `build` returns:
    /// they make our rings as soon as their runtime sees our record (well under a
    /// millisecond), and we open them. Waits at most [`CONNECT_WAIT`] for publishers that do
    /// not answer (stopped, hung). Publishers of this process are left to the runtime (they
    /// may not deliver to their own process).
    fn connect_to_live_publishers(&self) {
        self.scan();
        let me = std::process::id();
        let listing = Listing::read(&self.dirs);
        let targets: Vec<EndpointId> = listing
            .records(EndpointKind::Publisher)
            .filter(|&id| discovery::is_alive(&self.dirs, EndpointKind::Publisher, id))
            .filter(|&id| {
                discovery::read_record_of(&self.dirs, EndpointKind::Publisher, id)
                    .is_some_and(|r| r.pid != me)
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let deadline = Instant::now() + CONNECT_WAIT;
        let mut m = lock(&self.maint);
        while !targets.iter().all(|id| m.conns.contains_key(id)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            // The runtime opens rings as their files appear and signals `changed`.
            m = self
                .changed
                .wait_timeout(m, left.min(Duration::from_millis(5)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    fn ring_doorbell(&self) {
        notify(&OsFutex, self.control.bell());
    }

    fn end(&self, m: &mut Maint, id: EndpointId, reason: DisconnectReason) {
        if let Some(t) = m.conns.remove(&id) {
            // The publisher's `Disconnected` comes after its last message: reported now if
            // its ring holds nothing more, else by the receive path once it has delivered
            // everything (`stage` reports the end of a drained ring).
            t.info.record(reason);
            if t.info.control.fill() == 0 {
                t.info.report(&self.events);
            } else {
                m.draining.push(Arc::clone(&t.info));
            }
            // Its side is closed (a departed publisher closed it already; a dead or hung
            // one cannot), so that the reader, after the last complete message, sees the
            // end and reports it.
            t.info.control.close_producer_side();
            if reason != DisconnectReason::Closed {
                // Ours too, so that a resumed (hung) publisher stops writing.
                t.info.control.close_consumer_side();
            }
            let _ = sys::unlink_segment(&t.ring_path);
            self.ring_doorbell();
            self.changed.notify_all();
        }
    }

    fn open(
        &self,
        m: &mut Maint,
        publisher: &discovery::Found,
        path: PathBuf,
        generation: u64,
    ) -> Result<()> {
        let mut consumer = RingSegment::open(&path)?.into_consumer();
        consumer.set_max_message_len(self.common.max_message_size.saturating_add(FRAME_HEADER));
        consumer.set_budget(Arc::clone(&self.budget));
        consumer.set_wait_strategy(self.common.wait);
        let control = consumer.control();
        let peer = Peer {
            id: publisher.id,
            // A publisher known only by its ring (gone, record and all): the ring's header
            // names its creator.
            pid: match publisher.record.pid {
                0 => control.creator_pid(),
                pid => pid,
            },
        };
        let info = Arc::new(ConnInfo::new(peer, control));
        m.seen.insert(publisher.id, generation);
        m.conns.insert(
            publisher.id,
            Tracked {
                info: Arc::clone(&info),
                ring_path: path,
                silence: Silence::new(
                    &info,
                    PeerEnd::Producer,
                    publisher.record.timeout_for(self.common.peer_timeout),
                ),
            },
        );
        // `Connected` first: whoever receives a message of this ring has had the event
        // emitted before it (the callback thread relies on it).
        self.events.emit(Event::Connected { peer });
        lock(&self.pending).push(Incoming {
            consumer,
            info,
            last_seq: 0,
            done: false,
        });
        self.has_pending.store(true, Ordering::Release);
        self.ring_doorbell();
        self.changed.notify_all();
        Ok(())
    }
}

impl Endpoint for Shared {
    fn dirs(&self) -> &ChannelDirs {
        &self.dirs
    }

    fn is_closed(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.cleaned.load(Ordering::Acquire)
    }

    fn scan(&self) -> bool {
        let mut m = lock(&self.maint);
        if self.is_closed() {
            return false;
        }
        let listing = Listing::read(&self.dirs);
        let mut cleanup = discovery::CLEANUP_BATCH;
        // Publishers with a ring addressed to us, newest generation each.
        let mut newest: HashMap<EndpointId, (u64, PathBuf)> = HashMap::new();
        for (p, generation, path) in listing.rings_to(self.id) {
            if newest.get(&p).is_none_or(|(g, _)| generation > *g) {
                newest.insert(p, (generation, path.to_path_buf()));
            }
        }
        let mut live: HashSet<EndpointId> = HashSet::new();
        // Dead publishers with a ring to us: the pid from their record, read before it goes.
        let mut crashed: HashMap<EndpointId, u32> = HashMap::new();
        for id in listing.records(EndpointKind::Publisher) {
            if discovery::is_alive(&self.dirs, EndpointKind::Publisher, id) {
                live.insert(id);
                continue;
            }
            let reason = m.conns.get(&id).map_or(DisconnectReason::Crashed, |t| {
                departure(&t.info, PeerEnd::Producer)
            });
            self.end(&mut m, id, reason);
            if newest.contains_key(&id) {
                let pid = discovery::read_record_of(&self.dirs, EndpointKind::Publisher, id)
                    .map_or(0, |r| r.pid);
                crashed.insert(id, pid);
            }
            if cleanup > 0 && listing.is_ours(&self.dirs, EndpointKind::Publisher, id) {
                cleanup -= 1;
                // Rings addressed to live subscribers (us included) are left for them.
                listing.remove_dead(&self.dirs, EndpointKind::Publisher, id);
            }
        }
        let gone: Vec<EndpointId> = m
            .conns
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        // Gone by a clean close or by a crash another peer cleaned up after: the ring tells.
        for id in gone {
            let reason = m.conns.get(&id).map_or(DisconnectReason::Closed, |t| {
                departure(&t.info, PeerEnd::Producer)
            });
            self.end(&mut m, id, reason);
        }
        for (&p, (generation, path)) in &newest {
            let (p, generation, path) = (p, *generation, path.clone());
            if m.seen.get(&p).is_some_and(|&g| g >= generation) {
                continue;
            }
            if let Some(t) = m.conns.get(&p) {
                // A newer generation replaces an old connection the publisher gave up on:
                // the old ring gets no more messages. Its reader drains it before it reads
                // the new one (per-publisher order).
                let reason = if t.info.control.violated() {
                    DisconnectReason::ProtocolViolation
                } else {
                    DisconnectReason::Closed
                };
                t.info.control.close_producer_side();
                self.end(&mut m, p, reason);
            }
            // A malformed or half-gone ring is skipped; the publisher's next attempt or the
            // next scan retries.
            if live.contains(&p) {
                if let Some(record) =
                    discovery::read_record_of(&self.dirs, EndpointKind::Publisher, p)
                {
                    let found = discovery::Found { id: p, record };
                    let _ = self.open(&mut m, &found, path, generation);
                }
                continue;
            }
            // A publisher whose lock is held is alive: between its lock and its record
            // (starting) or its record and its rings (closing). The next scan sees it whole.
            if discovery::is_alive(&self.dirs, EndpointKind::Publisher, p) {
                continue;
            }
            // The publisher connected to us and then closed or crashed before we saw its
            // ring: what it published is still there. Deliver it, then end the connection
            // (the reader drains the ring before it reports the end).
            let pid = crashed.get(&p).copied().unwrap_or(0);
            let found = discovery::Found {
                id: p,
                record: discovery::Record::orphan(p, pid),
            };
            if self.open(&mut m, &found, path, generation).is_ok()
                && let Some(t) = m.conns.get(&p)
            {
                let reason = departure(&t.info, PeerEnd::Producer);
                self.end(&mut m, p, reason);
            }
        }
        // Forget publishers that left nothing behind (bounded memory over many lifetimes):
        // no record, no ring to us, no connection.
        let known: HashSet<EndpointId> = listing.records(EndpointKind::Publisher).collect();
        m.seen
            .retain(|p, _| known.contains(p) || newest.contains_key(p));
        // Dead subscribers' leftovers, whoever notices first.
        listing.clean_dead(&self.dirs, EndpointKind::Subscriber, self.id, &mut cleanup);
        cleanup == 0
    }

    fn tick(&self, now: Instant) -> Instant {
        let mut m = lock(&self.maint);
        let interval = self.common.tick_interval();
        if self.is_closed() {
            return now + interval;
        }
        if now + runtime::tick_slack(interval) >= m.next_beat {
            self.control.beat();
            for t in m.conns.values() {
                t.info.control.beat_consumer();
            }
            m.next_beat = now + self.common.heartbeat_interval;
        }
        // Rings drained since their connection ended: report the end now.
        let events = &self.events;
        m.draining.retain(|info| {
            if info.is_reported() {
                return false;
            }
            if info.control.fill() == 0 {
                info.report(events);
                // Wake a callback thread waiting for messages or events.
                notify(&OsFutex, self.control.bell());
                return false;
            }
            true
        });
        let delayed = now.duration_since(m.last_tick) > self.common.peer_timeout / 2;
        m.last_tick = now;
        let ended: Vec<_> = m
            .conns
            .iter_mut()
            .filter_map(|(&id, t)| Some((id, t.silence.judge(&t.info, now, delayed)?)))
            .collect();
        for (id, reason) in ended {
            self.end(&mut m, id, reason);
        }
        now + interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect: the set of publishers a subscriber had seen grew with every publisher
    /// lifetime (RSS +1.1 MB over 4,000 of them). Publishers that left nothing behind are
    /// forgotten.
    #[test]
    fn publishers_that_left_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let sub = Subscriber::builder("seen").dir(dir.path()).build().unwrap();
        for _ in 0..30 {
            let publisher = crate::Publisher::builder("seen")
                .dir(dir.path())
                .deliver_to_same_process(true)
                .build()
                .unwrap();
            publisher
                .wait_for_subscribers(1, Duration::from_secs(60))
                .unwrap();
            sub.wait_for_publishers(1, Duration::from_secs(60)).unwrap();
            drop(publisher);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while lock(&sub.shared.maint).seen.len() > 1 {
            assert!(
                Instant::now() < deadline,
                "still remembered: {}",
                lock(&sub.shared.maint).seen.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
