//! [`Publisher`]: sends every message to every subscriber of its channel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::channel::ChannelDirs;
use crate::control::Control;
use crate::discovery::{self, EndpointId, EndpointKind, Listing, Record};
use crate::error::{Error, Result};
use crate::event::{
    ConnInfo, ConnectionStats, DisconnectReason, Event, EventHub, Peer, PeerEnd, Silence,
    departure, lock, wait_for_count,
};
use crate::options::{Common, DEFAULT_RING_CAPACITY, OnFull, validate_capacity};
use crate::ring::{Producer, RingError, RingSegment, WaitStrategy};
use crate::runtime::{self, Endpoint};
use crate::sync::{AtomicBool, Ordering};
use crate::sys;

/// The sending end of a channel.
///
/// Every [`Subscriber`](crate::Subscriber) of the channel, in any process, receives every
/// message published after its connection, whole and in publish order. Each subscriber has
/// its own ring, so each goes at its own pace; what happens when a ring is full is the
/// [`OnFull`] policy.
///
/// `Send + Sync`: several threads may publish at once; each message is delivered whole and
/// all subscribers see the same order.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mmipc::{Publisher, Subscriber};
///
/// # let dir = tempfile::tempdir()?;
/// // Normally publisher and subscriber live in different processes; here both are in one,
/// // so the publisher must opt in to same-process delivery.
/// let publisher = Publisher::builder("docs-publisher").dir(dir.path()).deliver_to_same_process(true).build()?;
/// let mut subscriber = Subscriber::builder("docs-publisher").dir(dir.path()).build()?;
/// publisher.wait_for_subscribers(1, Duration::from_secs(10))?;
/// publisher.publish(b"hello")?;
/// publisher.publish_parts(&[b"hel", b"lo ", b"again"])?;
/// assert_eq!(subscriber.recv()?.payload(), b"hello");
/// assert_eq!(subscriber.recv()?.payload(), b"hello again");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Publisher {
    shared: Arc<Shared>,
}

/// Configures a [`Publisher`]; from [`Publisher::builder`].
#[derive(Debug, Clone)]
#[must_use]
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let builder: mmipc::PublisherBuilder = mmipc::Publisher::builder("docs").dir(dir.path());
/// let publisher = builder.build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PublisherBuilder {
    channel: String,
    common: Common,
    ring_capacity: usize,
    on_full: OnFull,
    same_process: bool,
}

impl PublisherBuilder {
    /// The root directory where peers find each other (default:
    /// [`default_root`](crate::default_root)).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.common.dir = Some(dir.into());
        self
    }

    /// Bytes of each subscriber's ring, a power of two from 4 KiB to 2 GiB (default 256 KiB).
    /// Larger messages still pass, in fragments.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).ring_capacity(1 << 20).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring_capacity(mut self, bytes: usize) -> Self {
        self.ring_capacity = bytes;
        self
    }

    /// Largest message accepted by `publish` (default 64 MiB).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).max_message_size(1024).build()?;
    /// assert!(matches!(publisher.publish(&[0; 2048]), Err(mmipc::Error::MessageTooLarge { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.common.max_message_size = bytes;
        self
    }

    /// What to do when a subscriber's ring is full (default [`OnFull::Block`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// // Never wait more than 10 ms for a slow subscriber; count a drop instead.
    /// let publisher = mmipc::Publisher::builder("docs")
    ///     .dir(dir.path())
    ///     .on_full(mmipc::OnFull::BlockFor(Duration::from_millis(10)))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_full(mut self, policy: OnFull) -> Self {
        self.on_full = policy;
        self
    }

    /// How a publish blocked on a full ring waits (default: spin briefly, then sleep).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs")
    ///     .dir(dir.path())
    ///     .wait_strategy(mmipc::WaitStrategy::Park)
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
    /// let publisher = mmipc::Publisher::builder("docs")
    ///     .dir(dir.path())
    ///     .heartbeat_interval(Duration::from_millis(100))
    ///     .peer_timeout(Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.common.heartbeat_interval = interval;
        self
    }

    /// How long a subscriber may go without a heartbeat before it is disconnected as hung
    /// (default 5 s; at least twice the heartbeat interval).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// // A subscriber silent for 2 s is disconnected as `TimedOut`.
    /// let publisher = mmipc::Publisher::builder("docs")
    ///     .dir(dir.path())
    ///     .peer_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.common.peer_timeout = timeout;
        self
    }

    /// Whether subscribers in this same process receive this publisher's messages (default
    /// `false`, as in the C# library this follows: a process does not hear its own echo).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let mut subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let publisher = mmipc::Publisher::builder("docs")
    ///     .dir(dir.path())
    ///     .deliver_to_same_process(true)
    ///     .build()?;
    /// assert_eq!(publisher.wait_for_subscribers(1, Duration::from_secs(10))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deliver_to_same_process(mut self, yes: bool) -> Self {
        self.same_process = yes;
        self
    }

    /// Creates the publisher, announces it in the channel directory, and connects to every
    /// subscriber that is alive at that moment before returning: a message published right
    /// after `build` reaches every subscriber that was already running (no
    /// `wait_for_subscribers` needed for them). Subscribers that start later are connected by
    /// the background thread; use [`Publisher::wait_for_subscribers`] to wait for them.
    ///
    /// # Errors
    /// [`Error::InvalidChannel`], [`Error::InvalidOption`], [`Error::InsecureDirectory`] for a
    /// directory others can write, [`Error::Io`] if files cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
    /// assert_eq!(publisher.channel(), "docs");
    /// assert!(mmipc::Publisher::builder("no/slash").build().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(mut self) -> Result<Publisher> {
        self.common.validate()?;
        validate_capacity(self.ring_capacity)?;
        let id = EndpointId::random();
        let (dirs, lock_file) =
            ChannelDirs::new_with_lock(&self.common.root(), &self.channel, |d| {
                discovery::lock_path(d, EndpointKind::Publisher, id)
            })?;
        let record = Record {
            protocol: discovery::PROTOCOL,
            kind: EndpointKind::Publisher,
            id: id.to_string(),
            pid: std::process::id(),
            max_message_size: self.common.max_message_size as u64,
            heartbeat_interval_ms: self.common.heartbeat_interval.as_millis() as u64,
            created_unix_ms: discovery::unix_ms(),
        };
        let record_path = match discovery::write_record(&dirs, &record, id) {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_file(lock_file.path());
                return Err(e);
            }
        };
        let now = Instant::now();
        let shared = Arc::new(Shared {
            id,
            channel: self.channel,
            dirs,
            common: self.common,
            ring_capacity: self.ring_capacity,
            on_full: self.on_full,
            same_process: self.same_process,
            record_path,
            out: Mutex::new(Out {
                conns: Vec::new(),
                seq: 0,
            }),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
            maint: Mutex::new(Maint {
                conns: HashMap::new(),
                timed_out: HashMap::new(),
                generation: 0,
                next_beat: now,
                last_tick: now,
            }),
            changed: Condvar::new(),
            events: EventHub::default(),
            closed: AtomicBool::new(false),
            lock_file: Mutex::new(Some(lock_file)),
        });
        let weak = Arc::downgrade(&shared);
        runtime::register(weak);
        // Connect to every subscriber alive now, before returning: "subscriber first, then
        // publisher" loses nothing even without `wait_for_subscribers`. Later arrivals are
        // the runtime's.
        shared.scan();
        Ok(Publisher { shared })
    }
}

struct Shared {
    id: EndpointId,
    channel: String,
    dirs: ChannelDirs,
    common: Common,
    ring_capacity: usize,
    on_full: OnFull,
    same_process: bool,
    record_path: PathBuf,
    /// The publishing path: held for the duration of one `publish`.
    out: Mutex<Out>,
    /// Connections made by the runtime, picked up by the next `publish`.
    pending: Mutex<Vec<Outgoing>>,
    has_pending: AtomicBool,
    /// The runtime's view of the connections.
    maint: Mutex<Maint>,
    changed: Condvar,
    events: EventHub,
    closed: AtomicBool,
    lock_file: Mutex<Option<sys::LockFile>>,
}

struct Out {
    conns: Vec<Outgoing>,
    seq: u64,
}

struct Outgoing {
    producer: Producer,
    info: Arc<ConnInfo>,
    /// The subscriber's `max_message_size`.
    max_len: u64,
    /// A message above `max_len` was reported (once per connection).
    told_too_large: bool,
}

struct Maint {
    conns: HashMap<EndpointId, Tracked>,
    /// Subscribers disconnected for silence: reconnected once their doorbell heartbeat moves
    /// again (checked on each tick, with the doorbell kept mapped: reopening it on every scan
    /// would cost a file event each time).
    timed_out: HashMap<EndpointId, TimedOut>,
    generation: u64,
    next_beat: Instant,
    last_tick: Instant,
}

struct TimedOut {
    doorbell: Control,
    heartbeat: u64,
    found: discovery::Found,
}

struct Tracked {
    info: Arc<ConnInfo>,
    ring_path: PathBuf,
    doorbell: Control,
    silence: Silence,
    /// The subscriber as found in its record (to reconnect it after a time-out).
    found: discovery::Found,
}

impl Publisher {
    /// A publisher on `channel` in the default directory, with default options.
    ///
    /// # Errors
    /// As [`PublisherBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// publisher.publish(b"hello")?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn new(channel: &str) -> Result<Publisher> {
        Publisher::builder(channel).build()
    }

    /// A builder for a publisher on `channel`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let publisher = mmipc::Publisher::builder("telemetry")
    ///     .ring_capacity(1 << 20)
    ///     .on_full(mmipc::OnFull::DropNewest)
    ///     .heartbeat_interval(Duration::from_millis(200))
    ///     .build()?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn builder(channel: &str) -> PublisherBuilder {
        PublisherBuilder {
            channel: channel.to_owned(),
            common: Common::default(),
            ring_capacity: DEFAULT_RING_CAPACITY,
            on_full: OnFull::default(),
            same_process: false,
        }
    }

    /// This publisher's id (subscribers see it in each [`Message`](crate::Message)).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
    /// println!("publisher {}", publisher.id()); // 32 hex digits
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
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
    /// assert_eq!(publisher.channel(), "docs");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel(&self) -> &str {
        &self.shared.channel
    }

    /// Sends `msg` to every connected subscriber.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] above `max_message_size`; under [`OnFull::Fail`],
    /// [`Error::Full`] when some subscriber had no room and
    /// [`Error::TooLargeForSubscribers`] when the message is above some subscriber's
    /// `max_message_size` (the others got it). Under the other policies a message above a
    /// subscriber's limit is a drop counted for that subscriber and reported once per
    /// connection as [`Event::MessageTooLarge`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// publisher.publish(b"")?; // zero-length messages are delivered too
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn publish(&self, msg: &[u8]) -> Result<()> {
        self.publish_parts(&[msg])
    }

    /// Sends one message made of `parts` concatenated, without concatenating them first.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// let header = [1u8, 2, 3];
    /// publisher.publish_parts(&[&header, b"body"])?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn publish_parts(&self, parts: &[&[u8]]) -> Result<()> {
        let s = &*self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(Error::Closed("publisher"));
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > s.common.max_message_size {
            return Err(Error::MessageTooLarge {
                len,
                max: s.common.max_message_size,
            });
        }
        let mut out = lock(&s.out);
        // A plain load first: the swap (a locked RMW) only when a new connection waits.
        if s.has_pending.load(Ordering::Relaxed) && s.has_pending.swap(false, Ordering::AcqRel) {
            out.conns.append(&mut lock(&s.pending));
        }
        out.seq += 1;
        let seq = out.seq.to_le_bytes();
        let mut small: [&[u8]; 8] = [&[]; 8];
        let big: Vec<&[u8]>;
        let frame: &[&[u8]] = if parts.len() < small.len() {
            small[0] = &seq;
            small[1..=parts.len()].copy_from_slice(parts);
            &small[..=parts.len()]
        } else {
            big = std::iter::once(&seq[..])
                .chain(parts.iter().copied())
                .collect();
            &big
        };
        let mut full = Vec::new();
        let mut too_large = Vec::new();
        out.conns.retain_mut(|c| {
            if !c.info.is_live() {
                return false;
            }
            if len as u64 > c.max_len {
                c.info.drops.add(1);
                too_large.push((c.info.peer.id, c.max_len));
                if !c.told_too_large {
                    c.told_too_large = true;
                    s.events.emit(Event::MessageTooLarge {
                        peer: c.info.peer,
                        len,
                        max: c.max_len,
                    });
                }
                return true;
            }
            let result = match s.on_full {
                OnFull::Block => c.producer.write_parts(frame, None),
                OnFull::BlockFor(d) => c
                    .producer
                    .write_parts(frame, crate::options::deadline_after(d)),
                OnFull::DropNewest | OnFull::Fail => c.producer.try_write_parts(frame),
            };
            match result {
                Ok(()) => {
                    c.info.messages.add(1);
                    c.info.bytes.add(len as u64);
                    true
                }
                Err(RingError::Full | RingError::Timeout) => {
                    c.info.drops.add(1);
                    if s.on_full == OnFull::Fail {
                        full.push(c.info.peer.id);
                    }
                    true
                }
                Err(RingError::Violation(_)) => {
                    c.info.end(DisconnectReason::ProtocolViolation, &s.events);
                    false
                }
                Err(_) => {
                    c.info.end(DisconnectReason::Closed, &s.events);
                    false
                }
            }
        });
        drop(out);
        if s.on_full == OnFull::Fail && !too_large.is_empty() {
            Err(Error::TooLargeForSubscribers {
                len,
                subscribers: too_large,
            })
        } else if full.is_empty() {
            Ok(())
        } else {
            Err(Error::Full { subscribers: full })
        }
    }

    /// Waits until at least `n` subscribers are connected. Once this returns `Ok`, nothing
    /// published afterwards can be lost to them (their rings exist and hold every message
    /// until read). Returns the number connected.
    ///
    /// Subscribers in this same process are not counted (nor delivered to) unless the
    /// publisher was built with
    /// [`deliver_to_same_process(true)`](PublisherBuilder::deliver_to_same_process), as in the
    /// C# library this follows; the timeout error says so when such a subscriber exists.
    ///
    /// # Errors
    /// [`Error::Timeout`] if fewer than `n` connected in time.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// publisher.wait_for_subscribers(1, Duration::from_secs(5))?;
    /// publisher.publish(b"nobody misses this")?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<usize> {
        runtime::rescan();
        let waited = wait_for_count(
            &self.shared.maint,
            &self.shared.changed,
            n,
            timeout,
            "subscriber",
            |m| m.conns.len(),
        );
        match waited {
            Err(Error::Timeout { what }) if !self.shared.same_process => {
                // The usual surprise: a subscriber in this very process, never counted.
                let me = std::process::id();
                let here = Listing::read(&self.shared.dirs)
                    .records(EndpointKind::Subscriber)
                    .filter_map(|id| {
                        discovery::read_record_of(&self.shared.dirs, EndpointKind::Subscriber, id)
                    })
                    .filter(|r| r.pid == me)
                    .count();
                Err(Error::Timeout {
                    what: if here == 0 {
                        what
                    } else {
                        format!(
                            "{what}; {here} subscriber(s) of this channel are in this same \
                             process and are not counted: a publisher does not deliver to its \
                             own process unless built with .deliver_to_same_process(true)"
                        )
                    },
                })
            }
            other => other,
        }
    }

    /// Number of subscribers currently connected.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
    /// assert_eq!(publisher.num_active_connections(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn num_active_connections(&self) -> usize {
        lock(&self.shared.maint).conns.len()
    }

    /// A snapshot of every connection: peer, counters, ring fill.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// for c in publisher.connections() {
    ///     println!("pid {}: {} msgs, {} dropped, ring {}/{}", c.peer.pid, c.messages, c.drops, c.ring_fill, c.ring_capacity);
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn connections(&self) -> Vec<ConnectionStats> {
        lock(&self.shared.maint)
            .conns
            .values()
            .map(|t| t.info.stats())
            .collect()
    }

    /// A new receiver of this publisher's connection events (each call gets its own copy of
    /// every later event).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// for event in publisher.events() {
    ///     println!("{event:?}");
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn events(&self) -> mpsc::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Closes the publisher: subscribers see the end of its stream, files are removed.
    /// Dropping it does the same.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
    /// publisher.close(); // the same as dropping it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) {}
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("channel", &self.shared.channel)
            .field("id", &self.shared.id)
            .finish()
    }
}

impl Shared {
    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // No publish runs past this point (a concurrent one finishes first).
        let mut out = lock(&self.out);
        let mut m = lock(&self.maint);
        // Our side of every ring is closed before our record goes: a subscriber that finds
        // the record gone can tell a clean close from a crash by the ring.
        for c in &out.conns {
            c.info.control.close_producer_side();
        }
        for c in lock(&self.pending).iter() {
            c.info.control.close_producer_side();
        }
        let _ = std::fs::remove_file(&self.record_path);
        for (&sub, t) in &m.conns {
            // A ring still holding messages stays for its live subscriber, which may not even
            // have opened it yet (it is told about rings by its directory watch): it drains
            // the ring and removes it. Everything published before `close` is delivered.
            let keep = t.info.control.fill() != 0
                && discovery::is_alive(&self.dirs, EndpointKind::Subscriber, sub);
            if !keep {
                let _ = sys::unlink_segment(&t.ring_path);
            }
        }
        m.conns.clear();
        drop(m);
        // Dropping the producers marks each ring closed and rings each subscriber's doorbell.
        out.conns.clear();
        drop(out);
        lock(&self.pending).clear();
        if let Some(l) = lock(&self.lock_file).take() {
            let _ = std::fs::remove_file(l.path());
        }
        self.dirs.remove_if_empty();
        self.changed.notify_all();
    }

    fn connect(&self, m: &mut Maint, sub: &discovery::Found) -> Result<()> {
        let doorbell = Control::open(&discovery::bell_path(&self.dirs, sub.id))?;
        m.generation += 1;
        let ring_path = discovery::ring_path(&self.dirs, self.id, sub.id, m.generation);
        let mut producer =
            RingSegment::create_kept(&ring_path, self.ring_capacity)?.into_producer();
        producer.set_doorbell(doorbell.shared_bell());
        producer.set_wait_strategy(self.common.wait);
        let peer = Peer {
            id: sub.id,
            pid: sub.record.pid,
        };
        let info = Arc::new(ConnInfo::new(peer, producer.control()));
        lock(&self.pending).push(Outgoing {
            producer,
            info: Arc::clone(&info),
            max_len: sub.record.max_message_size,
            told_too_large: false,
        });
        self.has_pending.store(true, Ordering::Release);
        let timeout = sub.record.timeout_for(self.common.peer_timeout);
        let silence = Silence::new(&info, PeerEnd::Consumer, timeout);
        m.conns.insert(
            sub.id,
            Tracked {
                info,
                ring_path,
                doorbell,
                silence,
                found: sub.clone(),
            },
        );
        self.events.emit(Event::Connected { peer });
        self.changed.notify_all();
        Ok(())
    }

    fn end(&self, m: &mut Maint, id: EndpointId, reason: DisconnectReason) {
        if let Some(t) = m.conns.remove(&id) {
            t.info.end(reason, &self.events);
            // Release a publish blocked on this ring, and tell a resumed subscriber the
            // connection is over.
            t.info.control.close_consumer_side();
            t.info.control.close_producer_side();
            crate::ring::notify(&crate::ring::OsFutex, t.doorbell.bell());
            let _ = sys::unlink_segment(&t.ring_path);
            if reason == DisconnectReason::TimedOut {
                let heartbeat = t.doorbell.heartbeat();
                m.timed_out.insert(
                    id,
                    TimedOut {
                        doorbell: t.doorbell,
                        heartbeat,
                        found: t.found,
                    },
                );
            }
            self.changed.notify_all();
        }
    }
}

impl Endpoint for Shared {
    fn dirs(&self) -> &ChannelDirs {
        &self.dirs
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn scan(&self) -> bool {
        let mut m = lock(&self.maint);
        if self.is_closed() {
            return false;
        }
        let listing = Listing::read(&self.dirs);
        let mut cleanup = discovery::CLEANUP_BATCH;
        let mut present = std::collections::HashSet::new();
        for id in listing.records(EndpointKind::Subscriber) {
            present.insert(id);
            if !discovery::is_alive(&self.dirs, EndpointKind::Subscriber, id) {
                let reason = m.conns.get(&id).map_or(DisconnectReason::Crashed, |t| {
                    departure(&t.info, PeerEnd::Consumer)
                });
                self.end(&mut m, id, reason);
                if cleanup > 0 && listing.is_ours(&self.dirs, EndpointKind::Subscriber, id) {
                    cleanup -= 1;
                    listing.remove_dead(&self.dirs, EndpointKind::Subscriber, id);
                }
                continue;
            }
            if m.conns.contains_key(&id) {
                continue;
            }
            // Records are read only for live subscribers we are not connected to.
            let Some(record) = discovery::read_record_of(&self.dirs, EndpointKind::Subscriber, id)
            else {
                continue;
            };
            if !self.same_process && record.pid == std::process::id() {
                continue;
            }
            let found = discovery::Found { id, record };
            if let Some(t) = m.timed_out.get_mut(&id) {
                // Reconnected by `tick` once its heartbeat moves again.
                t.found = found;
                continue;
            }
            // A subscriber whose doorbell is missing or malformed is skipped for now.
            let _ = self.connect(&mut m, &found);
        }
        let gone: Vec<EndpointId> = m
            .conns
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        // A record that disappeared was removed by its owner closing, or by a peer cleaning
        // up after its crash: the ring tells which (a closing subscriber closes its side
        // before it removes its record).
        for id in gone {
            let reason = m.conns.get(&id).map_or(DisconnectReason::Closed, |t| {
                if t.doorbell.is_closed() && !t.info.control.violated() {
                    // It marked its doorbell closed before removing its record (also when
                    // it never attached to our ring): a departure, not a crash.
                    DisconnectReason::Closed
                } else {
                    departure(&t.info, PeerEnd::Consumer)
                }
            });
            self.end(&mut m, id, reason);
        }
        m.timed_out.retain(|id, _| present.contains(id));
        // Dead publishers' leftovers, whoever notices first.
        listing.clean_dead(&self.dirs, EndpointKind::Publisher, self.id, &mut cleanup);
        // Out of cleanup budget: more dead endpoints may wait; scan again soon.
        cleanup == 0
    }

    fn tick(&self, now: Instant) -> Instant {
        let mut m = lock(&self.maint);
        let interval = self.common.tick_interval();
        if self.is_closed() {
            return now + interval;
        }
        if now + runtime::tick_slack(interval) >= m.next_beat {
            for t in m.conns.values() {
                t.info.control.beat_producer();
            }
            m.next_beat = now + self.common.heartbeat_interval;
        }
        // Timed-out subscribers whose heartbeat moved again are alive: reconnect them.
        let resumed: Vec<discovery::Found> = m
            .timed_out
            .values()
            .filter(|t| t.doorbell.heartbeat() != t.heartbeat)
            .map(|t| t.found.clone())
            .collect();
        for sub in resumed {
            m.timed_out.remove(&sub.id);
            if discovery::is_alive(&self.dirs, EndpointKind::Subscriber, sub.id) {
                let _ = self.connect(&mut m, &sub);
            }
        }
        // If this thread itself was held up (machine suspended, process stopped), judge no
        // one on the stale clock: restart every silence count.
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
