//! [`Publisher`]: sends every message to every subscriber of its channel.

#[cfg(all(any(unix, windows), feature = "tokio"))]
mod aio;
mod large;

pub use large::Loan;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::framing;
use crate::connection::payload::{self, PayloadOut};
use crate::connection::liveness::{ConnInfo, PeerEnd, departure};
use crate::connection::segment;
use crate::connection::doorbell::Doorbell;
use crate::discovery::{self, EndpointId, EndpointKind, Listing};
use crate::endpoint::{Conn, Core, Handoff, Maint, Registration, Role};
use crate::error::{PublishError, Result, WaitError};
use crate::event::{DisconnectReason, Event, Events, Peer, lock};
use crate::options::{
    Common, DEFAULT_PAYLOAD_CAPACITY, DEFAULT_PAYLOAD_THRESHOLD, DEFAULT_RING_CAPACITY, OnFull,
    validate_capacity,
};
use crate::ring::{Producer, RingError, RingSegment};
use crate::runtime;
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
/// use std::time::{Duration, Instant};
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
/// assert_eq!(subscriber.recv().payload(), b"hello");
/// assert_eq!(subscriber.recv().payload(), b"hello again");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Publisher {
    core: Arc<Core<Sending>>,
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
    payload_threshold: usize,
    payload_capacity: usize,
}

impl PublisherBuilder {
    crate::options::common_builder_options!(
        "Publisher",
        "a publish blocked on a full ring",
        "subscriber"
    );

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
    /// assert!(matches!(publisher.publish(&[0; 2048]), Err(mmipc::PublishError::MessageTooLarge { .. })));
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
    /// # use std::time::{Duration, Instant};
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

    /// Messages of at least this many bytes (default [`DEFAULT_PAYLOAD_THRESHOLD`]) are
    /// written once into this publisher's payload segment, and each subscriber's ring gets
    /// a 24-byte descriptor of it instead of a copy: publishing costs one copy whatever the
    /// number of subscribers, and [`Publisher::loan`] none. Smaller messages are copied into
    /// each ring, which is faster for them; so are messages of [`Publisher::publish`] to a
    /// single subscriber that fit whole in its ring (one copy either way, and the ring stays
    /// warm in the cache). `usize::MAX` sends everything inline.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs")
    ///     .dir(dir.path())
    ///     .payload_threshold(256 * 1024)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload_threshold(mut self, bytes: usize) -> Self {
        self.payload_threshold = bytes;
        self
    }

    /// Bytes of the payload segment (default [`DEFAULT_PAYLOAD_CAPACITY`]; 0, or from 64
    /// bytes to 1 TiB), made with the publisher as a sparse file: pages are backed as blocks
    /// are first handed out, and a block is reused once every subscriber released it. Each
    /// message takes its length plus a 64-byte header, rounded up to 64; messages whose block
    /// is larger than half of the segment go inline (in fragments); `0` sends everything
    /// inline. Each subscriber may hold at most a share of it (`capacity / (subscribers +
    /// 1)`, always one message): beyond that it is treated as a full ring under the
    /// [`OnFull`] policy, so a stalled subscriber cannot hold the others hostage. Size it for
    /// the depth you want: with 4 MiB frames to 4 subscribers, 320 MiB lets each hold 15
    /// frames (measured: deeper queues keep subscribers that share a CPU busy in longer
    /// turns).
    ///
    /// # Errors
    /// [`build`](Self::build) fails with [`Error::InvalidOption`](crate::Error::InvalidOption)
    /// for a size out of range (a subscriber maps at most 1 TiB).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let publisher = mmipc::Publisher::builder("docs")
    ///     .dir(dir.path())
    ///     .payload_capacity(256 << 20) // frames of up to 128 MiB - 64 B, written once
    ///     .max_message_size(128 << 20)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload_capacity(mut self, bytes: usize) -> Self {
        self.payload_capacity = bytes;
        self
    }

    /// Whether subscribers in this same process receive this publisher's messages (default
    /// `false`, as in the C# library this follows: a process does not hear its own echo).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
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
    /// [`Error::InvalidChannel`](crate::Error::InvalidChannel), [`Error::InvalidOption`](crate::Error::InvalidOption), [`Error::InsecureDirectory`](crate::Error::InsecureDirectory) for a
    /// directory others can write, [`Error::Io`](crate::Error::Io) if files cannot be created.
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
        crate::options::validate_payload_capacity(self.payload_capacity)?;
        // The payload segment exists before any ring: every subscriber maps it when it opens
        // its ring, so it can read descriptors even after the file is gone.
        let payload_capacity = self.payload_capacity as u64;
        let (registered, payload) = Registration::create(
            &self.common,
            &self.channel,
            EndpointKind::Publisher,
            |dirs, id| match payload_capacity {
                0 => Ok(large::Segment::Unavailable),
                cap => PayloadOut::create(&segment::payload_path(dirs, id), cap, dirs.access)
                    .map(large::Segment::Ready),
            },
        )?;
        let role = Sending {
            ring_capacity: self.ring_capacity,
            on_full: self.on_full,
            same_process: self.same_process,
            payload_threshold: self.payload_threshold,
            payload_capacity: self.payload_capacity,
            out: Mutex::new(Out {
                conns: Vec::new(),
                seq: 0,
                backlog: None,
                payload,
                spare: Vec::new(),
            }),
            pending: Handoff::default(),
            #[cfg(all(any(unix, windows), feature = "tokio"))]
            aio: aio::AsyncState::default(),
        };
        let state = Reconnects {
            timed_out: HashMap::new(),
            generation: 0,
        };
        let core = Core::start(registered, self.channel, self.common, role, state);
        // Connect to every subscriber alive now, before returning: "subscriber first, then
        // publisher" loses nothing even without `wait_for_subscribers`. Later arrivals are
        // the runtime's.
        runtime::Endpoint::scan(&*core);
        Ok(Publisher { core })
    }
}

/// The publisher's part of the endpoint: its data path.
struct Sending {
    ring_capacity: usize,
    on_full: OnFull,
    same_process: bool,
    /// Messages of at least this many bytes go through the payload segment.
    payload_threshold: usize,
    payload_capacity: usize,
    /// The publishing path: held for the duration of one `publish`.
    out: Mutex<Out>,
    /// Connections made by the runtime, picked up by the next `publish`.
    pending: Handoff<Outgoing>,
    /// Async publishes: the wake-up pipe they wait on.
    #[cfg(all(any(unix, windows), feature = "tokio"))]
    aio: aio::AsyncState,
}

struct Out {
    conns: Vec<Outgoing>,
    seq: u64,
    /// A message that an async publish could not write to every ring at once.
    backlog: Option<Backlog>,
    /// Where large messages are written once.
    payload: large::Segment,
    /// The private buffer of the last small [`Loan`](large::Loan), kept for the next one (no
    /// allocation, no zeroing): all its bytes are initialized.
    spare: Vec<u8>,
}

/// A message an async publish left owed to some connections (their rings were full): every
/// publish, sync or async, delivers it to them first, so that each ring keeps publish order;
/// it survives the cancellation of the publish that made it.
struct Backlog {
    #[cfg_attr(not(all(any(unix, windows), feature = "tokio")), allow(dead_code))]
    seq: u64,
    /// The framed message (header and payload), copied.
    frame: Vec<u8>,
    /// Payload bytes (for the counters).
    len: usize,
    /// Under [`OnFull::BlockFor`]: when the connections still owed it drop it.
    deadline: Option<Instant>,
}

struct Outgoing {
    producer: Producer,
    info: Arc<ConnInfo>,
    /// The subscriber's `max_message_size`.
    max_len: u64,
    /// A message above `max_len` was reported (once per connection).
    told_too_large: bool,
    /// Owed the backlog message, of which this many bytes are written.
    owed: Option<u64>,
    /// Registered as a waiter for room on this ring's space bell (an async publish).
    space_armed: bool,
    /// Windows: the space bell's event, which an async publish waits on.
    #[cfg(all(windows, feature = "tokio"))]
    space_listener: Option<sys::Listener>,
    /// The subscriber reads descriptors of the payload segment.
    payloads: bool,
    /// What it holds of the payload segment.
    holdings: payload::Holdings,
}

impl Outgoing {
    /// Whether a message of `len` bytes is above the subscriber's `max_message_size`: then
    /// it is a drop for this connection, reported once per connection.
    fn too_large(&mut self, len: usize, events: &crate::event::EventHub) -> bool {
        if len as u64 <= self.max_len {
            return false;
        }
        self.info.drops.add(1);
        if !self.told_too_large {
            self.told_too_large = true;
            events.emit(Event::MessageTooLarge {
                peer: self.info.peer,
                len,
                max: self.max_len,
            });
        }
        true
    }

    /// Ends the registration for room, if any.
    fn disarm(&mut self) {
        if self.space_armed {
            self.space_armed = false;
            self.producer.register_space_waiter(false);
        }
    }

    /// Counts what one write of a message of `len` bytes did; whether the connection stays.
    fn settle(
        &mut self,
        result: std::result::Result<(), RingError>,
        len: usize,
        events: &crate::event::EventHub,
    ) -> Delivery {
        match result {
            Ok(()) => {
                self.info.messages.add(1);
                self.info.bytes.add(len as u64);
                Delivery::Done
            }
            Err(RingError::Full | RingError::Timeout) => Delivery::NoRoom,
            Err(RingError::Violation(_)) => {
                self.info.end(DisconnectReason::ProtocolViolation, events);
                Delivery::Ended
            }
            // Closed: by the subscriber (normally, or because it judged us hung), or by us.
            Err(_) => {
                let reason = match self.info.control.evicted() {
                    true => DisconnectReason::Evicted,
                    false => DisconnectReason::Closed,
                };
                self.info.end(reason, events);
                Delivery::Ended
            }
        }
    }
}

/// What a write to one connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Done,
    /// No room (in time): a drop, or (async) owed.
    NoRoom,
    /// The connection ended (closed, or a protocol violation).
    Ended,
}

/// The publisher's part of the maintenance state.
struct Reconnects {
    /// Subscribers disconnected for silence: reconnected once their doorbell heartbeat moves
    /// again (checked on each tick, with the doorbell kept mapped: reopening it on every scan
    /// would cost a file event each time).
    timed_out: HashMap<EndpointId, TimedOut>,
    /// Of the last ring made (each connection gets a new one).
    generation: u64,
}

struct TimedOut {
    doorbell: Doorbell,
    heartbeat: u64,
    found: discovery::Found,
}

/// What the publisher keeps per connection besides the core's fields.
struct Subscribed {
    doorbell: Doorbell,
    /// The subscriber as found in its record (to reconnect it after a time-out).
    found: discovery::Found,
}

impl Publisher {
    crate::endpoint::endpoint_views!("let ep = mmipc::Publisher::builder(\"docs\").dir(dir.path()).build()?;", "subscribers", new: "Publisher", "ep.publish(b\"hello\")?;");

    /// A builder for a publisher on `channel`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
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
            payload_threshold: DEFAULT_PAYLOAD_THRESHOLD,
            payload_capacity: DEFAULT_PAYLOAD_CAPACITY,
        }
    }

    /// Sends `msg` to every connected subscriber.
    ///
    /// # Errors
    /// [`PublishError::MessageTooLarge`] above `max_message_size`;
    /// [`PublishError::Closed`] after [`Publisher::close`]; under [`OnFull::Fail`],
    /// [`PublishError::Full`] when some subscriber had no room and
    /// [`PublishError::TooLargeForSubscribers`] when the message is above some subscriber's
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
    pub fn publish(&self, msg: &[u8]) -> Result<(), PublishError> {
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
    pub fn publish_parts(&self, parts: &[&[u8]]) -> Result<(), PublishError> {
        let core = &*self.core;
        let s = &core.role;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut out = s.begin(core, len)?;
        let outcome = s.publish_in(core, &mut out, parts, len);
        drop(out);
        outcome.result(s, len)
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
    /// [`WaitError::Timeout`] if fewer than `n` connected in time (its `same_process` field
    /// counts the subscribers of this process left out).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::{Duration, Instant};
    /// let publisher = mmipc::Publisher::new("telemetry")?;
    /// publisher.wait_for_subscribers(1, Duration::from_secs(5))?;
    /// publisher.publish(b"nobody misses this")?;
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<usize, WaitError> {
        self.with_same_process_hint(self.core.wait_for_peers(n, timeout))
    }

    /// Adds to a time-out the number of subscribers of this process that were left out.
    fn with_same_process_hint(&self, result: Result<usize, WaitError>) -> Result<usize, WaitError> {
        let core = &*self.core;
        match result {
            Err(WaitError::Timeout {
                wanted,
                have,
                peers,
                ..
            }) if !core.role.same_process => {
                // The usual surprise: a subscriber in this very process, never counted.
                let me = std::process::id();
                let same_process = Listing::read(&core.dirs)
                    .records(EndpointKind::Subscriber)
                    .filter_map(|id| {
                        discovery::read_record_of(&core.dirs, EndpointKind::Subscriber, id)
                    })
                    .filter(|r| r.pid == me)
                    .count();
                Err(WaitError::Timeout {
                    wanted,
                    have,
                    peers,
                    same_process,
                })
            }
            other => other,
        }
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
    pub fn events(&self) -> Events {
        self.core.subscribe()
    }

    /// Closes the publisher: subscribers see the end of its stream, files are removed.
    /// Dropping it does the same. Everything published is delivered (rings still holding
    /// messages stay for their subscribers to drain), except a message a cancelled
    /// `publish_async` (the `tokio` feature) left owed to subscribers whose rings were full:
    /// those subscribers count it as a drop.
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
        self.core.role.close(&self.core);
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt_handle(f, "Publisher")
    }
}

impl Sending {
    /// Checks a `len`-byte message against `max_message_size` and takes the publishing path,
    /// unless the publisher is closed (checked under the lock: `close` takes it too, so no
    /// publish runs past a close).
    fn begin<'s>(
        &'s self,
        core: &Core<Sending>,
        len: usize,
    ) -> Result<std::sync::MutexGuard<'s, Out>, PublishError> {
        if len > core.common.max_message_size {
            return Err(PublishError::MessageTooLarge {
                len,
                max: core.common.max_message_size,
            });
        }
        let out = lock(&self.out);
        if runtime::Endpoint::is_closed(core) {
            return Err(PublishError::Closed);
        }
        Ok(out)
    }

    /// Numbers and sends message `parts` (`len` bytes) under the lock `begin` took: once
    /// into the payload segment if it goes there, else copied into every ring.
    fn publish_in(&self, core: &Core<Sending>, out: &mut Out, parts: &[&[u8]], len: usize) -> large::Outcome {
        let seq = self.next_seq(core, out);
        let large = if self.goes_large(len, &out.conns, false) {
            self.publish_large(core, out, seq, parts, len)
        } else {
            None
        };
        match large {
            Some(outcome) => outcome,
            None => framing::with_frame(seq, parts, |frame| self.deliver_inline(core, out, frame, len)),
        }
    }

    /// Picks up new connections, delivers a backlog first, and numbers the next message.
    fn next_seq(&self, core: &Core<Sending>, out: &mut Out) -> u64 {
        if let Some(mut new) = self.pending.take() {
            out.conns.append(&mut new);
        }
        if out.backlog.is_some() {
            self.finish_backlog(core, out);
        }
        out.seq += 1;
        out.seq
    }

    /// Writes one message to connection `c` as the [`OnFull`] policy says.
    fn write_as_policy(&self, c: &mut Outgoing, frame: &[&[u8]]) -> std::result::Result<(), RingError> {
        match self.on_full {
            OnFull::Block => c.producer.write_parts(frame, None),
            OnFull::BlockFor(d) => c
                .producer
                .write_parts(frame, crate::options::deadline_after(d)),
            OnFull::DropNewest | OnFull::Fail => c.producer.try_write_parts(frame),
        }
    }

    /// Copies the framed message `frame` (`len` payload bytes) into every connection's ring.
    fn deliver_inline(
        &self,
        core: &Core<Sending>,
        out: &mut Out,
        frame: &[&[u8]],
        len: usize,
    ) -> large::Outcome {
        let Out { conns, payload, .. } = out;
        let mut outcome = large::Outcome::default();
        conns.retain_mut(|c| {
            let stays = c.info.is_live()
                && if c.too_large(len, &core.events) {
                    outcome.too_large.push((c.info.peer.id, c.max_len));
                    true
                } else {
                    let result = self.write_as_policy(c, frame);
                    outcome.settle(self, c, result, len, &core.events)
                };
            if !stays {
                c.forget(payload, &core.dirs);
            }
            stays
        });
        outcome
    }

    /// Closes the publisher: no publish runs past this point (a concurrent one finishes
    /// first).
    fn close(&self, core: &Core<Sending>) {
        if !core.begin_close() {
            return;
        }
        let mut out = lock(&self.out);
        let mut m = core.maint();
        // Our side of every ring is closed before our record goes: a subscriber that finds
        // the record gone can tell a clean close from a crash by the ring.
        for c in &out.conns {
            c.info.control.close_producer_side();
        }
        self.pending
            .for_each(|c| c.info.control.close_producer_side());
        core.registration.remove_record();
        let mut rings_stay = false;
        for (&sub, c) in &m.conns {
            // A ring still holding messages stays for its live subscriber, which may not even
            // have opened it yet (it is told about rings by its directory watch): it drains
            // the ring and removes it. Everything published before `close` is delivered.
            let unread = c.info.control.fill() != 0;
            let alive = unread && discovery::is_alive(&core.dirs, EndpointKind::Subscriber, sub);
            if segment::ring_outlives_publisher(alive, Some(unread)) {
                rings_stay = true;
            } else {
                let _ = sys::unlink_segment(&c.ring_path);
            }
        }
        // The payload segment stays with the rings that stay (their descriptors name its
        // blocks); the last subscriber to drain one, or a cleaner, removes it. Looked at again
        // after our own rings went: a subscriber that drained and removed the last of them
        // meanwhile may have seen our record and left the segment to us.
        if let large::Segment::Ready(seg) = &out.payload
            && (!rings_stay
                || discovery::rings_of(&core.dirs, EndpointKind::Publisher, core.id).is_empty())
        {
            let _ = sys::unlink_segment(seg.path());
        }
        m.conns.clear();
        drop(m);
        // A message an async publish left owed is not delivered to those still owed it.
        if out.backlog.take().is_some() {
            for c in &mut out.conns {
                if let Some(done) = c.owed.take() {
                    c.producer.abandon(done);
                    c.info.drops.add(1);
                }
            }
        }
        // Dropping the producers marks each ring closed and rings each subscriber's doorbell.
        out.conns.clear();
        drop(out);
        self.pending.clear();
        #[cfg(all(any(unix, windows), feature = "tokio"))]
        self.aio.close();
        core.finish_close();
    }

    /// Writes what fits now of the backlog message to the connections owed it, never
    /// waiting; forgets the backlog once nobody is owed it, or once its deadline passed
    /// (those still owed count a drop). Returns whether a backlog remains.
    #[cfg_attr(not(all(any(unix, windows), feature = "tokio")), allow(dead_code))]
    fn advance_backlog(&self, core: &Core<Sending>, out: &mut Out) -> bool {
        let Some(b) = out.backlog.take() else {
            return false;
        };
        let expired = b.deadline.is_some_and(|d| Instant::now() >= d);
        let mut owed = false;
        let Out { conns, payload, .. } = out;
        conns.retain_mut(|c| {
            let Some(mut done) = c.owed else {
                return true;
            };
            if !c.info.is_live() {
                // Unregister first: the subscriber may still drain this ring, and a count
                // left behind makes each of its releases ring (and write our pipe).
                c.disarm();
                c.forget(payload, &core.dirs);
                return false;
            }
            let result = c.producer.write_some(&[&b.frame], &mut done);
            let delivery = c.settle(result, b.len, &core.events);
            if delivery == Delivery::NoRoom && !expired {
                c.owed = Some(done);
                owed = true;
                return true;
            }
            if delivery == Delivery::NoRoom {
                c.producer.abandon(done);
                c.info.drops.add(1);
            }
            c.owed = None;
            c.disarm();
            if delivery == Delivery::Ended {
                c.forget(payload, &core.dirs);
            }
            delivery != Delivery::Ended
        });
        if owed {
            out.backlog = Some(b);
        }
        owed
    }

    /// Delivers the backlog message to the connections owed it, waiting for room as the
    /// policy says (for ever under [`OnFull::Block`], until its deadline under
    /// [`OnFull::BlockFor`]): a sync publish after an async one that left it.
    fn finish_backlog(&self, core: &Core<Sending>, out: &mut Out) {
        let Some(b) = out.backlog.take() else {
            return;
        };
        let Out { conns, payload, .. } = out;
        conns.retain_mut(|c| {
            let Some(mut done) = c.owed.take() else {
                return true;
            };
            c.disarm();
            let result = if c.info.is_live() {
                c.producer.write_rest(&[&b.frame], &mut done, b.deadline)
            } else {
                Err(RingError::Closed)
            };
            match c.settle(result, b.len, &core.events) {
                Delivery::Done => true,
                Delivery::NoRoom => {
                    c.info.drops.add(1);
                    true
                }
                Delivery::Ended => {
                    c.forget(payload, &core.dirs);
                    false
                }
            }
        });
    }

    fn connect(
        &self,
        core: &Core<Sending>,
        m: &mut Maint<Sending>,
        sub: &discovery::Found,
    ) -> Result<()> {
        let doorbell = Doorbell::open(&segment::bell_path(&core.dirs, sub.id), core.dirs.access)?;
        m.state.generation += 1;
        let ring_path = segment::ring_path(&core.dirs, core.id, sub.id, m.state.generation);
        let mut producer =
            RingSegment::create_kept(&ring_path, self.ring_capacity, core.dirs.access)?.into_producer();
        producer.set_doorbell(doorbell.shared_bell());
        producer.set_wait_strategy(core.common.wait);
        let peer = Peer {
            id: sub.id,
            pid: sub.record.pid,
        };
        let info = Arc::new(ConnInfo::new(peer, producer.control()));
        self.pending.push(Outgoing {
            producer,
            info: Arc::clone(&info),
            max_len: sub.record.max_message_size,
            told_too_large: false,
            owed: None,
            space_armed: false,
            #[cfg(all(windows, feature = "tokio"))]
            space_listener: None,
            payloads: sub.record.payloads,
            holdings: payload::Holdings::default(),
        });
        let silence = core.silence_for(&info, &sub.record);
        let extra = Subscribed {
            doorbell,
            found: sub.clone(),
        };
        core.add(
            m,
            sub.id,
            Conn {
                info,
                ring_path,
                silence,
                extra,
                exit_watch: None,
            },
        );
        Ok(())
    }
}

impl Role for Sending {
    const KIND: EndpointKind = EndpointKind::Publisher;
    const PEER_END: PeerEnd = PeerEnd::Consumer;
    type Conn = Subscribed;
    type State = Reconnects;

    fn connect_new(
        core: &Core<Self>,
        m: &mut Maint<Self>,
        _listing: &Listing,
        live: &HashSet<EndpointId>,
    ) {
        for &id in live {
            if m.conns.contains_key(&id) {
                continue;
            }
            // Records are read only for live subscribers we are not connected to.
            let Some(record) = discovery::read_record_of(&core.dirs, EndpointKind::Subscriber, id)
            else {
                continue;
            };
            if !core.role.same_process && record.pid == std::process::id() {
                continue;
            }
            let found = discovery::Found { id, record };
            if let Some(t) = m.state.timed_out.get_mut(&id) {
                // Reconnected by `tick` once its heartbeat moves again.
                t.found = found;
                continue;
            }
            // A subscriber whose doorbell is missing or malformed is skipped for now.
            let _ = core.role.connect(core, m, &found);
        }
        m.state.timed_out.retain(|id, _| live.contains(id));
    }

    fn end(
        core: &Core<Self>,
        m: &mut Maint<Self>,
        id: EndpointId,
        conn: Conn<Subscribed>,
        reason: DisconnectReason,
    ) {
        conn.info.end(reason, &core.events);
        // Release a publish blocked on this ring, and tell a resumed subscriber the
        // connection is over (and, if we judged it hung, that it was evicted).
        if reason == DisconnectReason::TimedOut {
            conn.info.control.evict();
        } else {
            conn.info.control.close_consumer_side();
        }
        conn.info.control.close_producer_side();
        conn.extra.doorbell.ring();
        // An async publish waiting for room in this ring looks again.
        #[cfg(all(any(unix, windows), feature = "tokio"))]
        core.role.aio.wake_self();
        let _ = sys::unlink_segment(&conn.ring_path);
        if reason == DisconnectReason::TimedOut {
            let heartbeat = conn.extra.doorbell.heartbeat();
            m.state.timed_out.insert(
                id,
                TimedOut {
                    doorbell: conn.extra.doorbell,
                    heartbeat,
                    found: conn.extra.found,
                },
            );
        }
    }

    fn gone_reason(conn: &Conn<Subscribed>) -> DisconnectReason {
        if conn.extra.doorbell.is_closed() && !conn.info.control.violated() {
            // It marked its doorbell closed before removing its record (also when it never
            // attached to our ring): a departure, not a crash.
            DisconnectReason::Closed
        } else {
            departure(&conn.info, PeerEnd::Consumer)
        }
    }

    fn tick(core: &Core<Self>, m: &mut Maint<Self>) {
        // Timed-out subscribers whose heartbeat moved again are alive: reconnect them.
        let resumed: Vec<discovery::Found> = m
            .state
            .timed_out
            .values()
            .filter(|t| t.doorbell.heartbeat() != t.heartbeat)
            .map(|t| t.found.clone())
            .collect();
        for sub in resumed {
            m.state.timed_out.remove(&sub.id);
            if discovery::is_alive(&core.dirs, EndpointKind::Subscriber, sub.id) {
                let _ = core.role.connect(core, m, &sub);
            }
        }
    }
}
