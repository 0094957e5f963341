//! [`Subscriber`]: receives every message of every publisher on its channel.

#[cfg(all(any(unix, windows), feature = "tokio"))]
mod aio;
mod connections;
#[cfg(any(unix, windows))]
mod poll;
#[cfg(all(any(unix, windows), feature = "tokio"))]
pub use aio::Messages;

use std::collections::HashMap;
use std::sync::Arc;
use crate::sync::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use self::connections::connect_to_live_publishers;
use crate::connection::framing::{self, FRAME_HEADER, Frame};
use crate::connection::liveness::ConnInfo;
use crate::connection::payload::{Block, PayloadIn};
use crate::connection::segment;
use crate::connection::doorbell::Doorbell;
use crate::discovery::{EndpointId, EndpointKind};
use crate::endpoint::{Core, Handoff, Registration};
use crate::error::{Error, RecvTimeoutError, Result, WaitError};
use crate::event::{DisconnectReason, Events};
use crate::message::{Message, MessageRef};
use crate::options::{Common, DEFAULT_REASSEMBLY_BUDGET};
use crate::ring::{Budget, Consumer, RingError, WaitError as RingWaitError, wait_until};

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
    pub(crate) core: Arc<Core<Receiving>>,
    active: Vec<Incoming>,
    /// Newer rings of publishers that still have an older ring in `active` (a reconnect after
    /// a time-out): read only once the older one is drained, so that each publisher's
    /// messages arrive in order.
    waiting: Vec<Incoming>,
    next: usize,
    /// Registered as a waiter on the doorbell by [`Subscriber::arm`] (or an async receive);
    /// the next receive call unregisters.
    armed: bool,
    /// The async receive's registration of the wake-up pipe with the tokio reactor (dropped
    /// before the pipe).
    #[cfg(all(unix, feature = "tokio"))]
    reactor: Option<aio::Reactor>,
    /// An async receive's safety re-check found a message whose ring had bumped the bell
    /// but not yet reached the wake-up source; the next park checks that it did.
    #[cfg(all(any(unix, windows), feature = "tokio"))]
    ring_in_flight: bool,
    /// The wake-up pipe (Windows: the doorbell's event), made on first use by an event loop.
    #[cfg(any(unix, windows))]
    listener: Option<crate::sys::Listener>,
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
    crate::options::common_builder_options!("Subscriber", "a blocking receive", "publisher");

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

    /// Creates the subscriber and announces it; publishers connect to it from then on. Before
    /// returning it waits (normally well under a millisecond per publisher; half a second
    /// after the last one that connected for any that does not answer, five seconds at most)
    /// until every publisher of another process that is alive at that moment has connected, so
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
        let (registered, doorbell) = Registration::create(
            &self.common,
            &self.channel,
            EndpointKind::Subscriber,
            |dirs, id| Doorbell::create(&segment::bell_path(dirs, id), dirs.access),
        )?;
        let role = Receiving {
            doorbell,
            // The frame header travels with each message.
            budget: Budget::new(budget as u64 + FRAME_HEADER as u64),
            pending: Handoff::default(),
            stop: AtomicBool::new(false),
        };
        let state = Draining {
            draining: Vec::new(),
            seen: HashMap::new(),
        };
        let core = Core::start(registered, self.channel, self.common, role, state);
        connect_to_live_publishers(&core);
        Ok(Subscriber {
            core,
            active: Vec::new(),
            waiting: Vec::new(),
            next: 0,
            armed: false,
            #[cfg(all(unix, feature = "tokio"))]
            reactor: None,
            #[cfg(all(any(unix, windows), feature = "tokio"))]
            ring_in_flight: false,
            #[cfg(any(unix, windows))]
            listener: None,
        })
    }
}

/// The subscriber's part of the endpoint: what its data path shares with the runtime.
pub(crate) struct Receiving {
    /// Where publishers ring when they write to an empty ring; our heartbeat too.
    doorbell: Doorbell,
    /// Reassembly memory shared by all of this subscriber's rings.
    budget: Arc<Budget>,
    /// Rings opened by the runtime, picked up by the receive path.
    pending: Handoff<Incoming>,
    /// A stop was requested (the callbacks' handle was dropped): the receive loop ends.
    stop: AtomicBool,
}

pub(crate) struct Incoming {
    consumer: Consumer,
    info: Arc<ConnInfo>,
    last_seq: u64,
    /// The ring reported its end (closed and drained, or violated): drop it.
    done: bool,
    /// The publisher's payload segment, mapped when seen at connect or on the first
    /// descriptor.
    payload: Option<PayloadIn>,
    /// The block of the staged message, when it is a descriptor.
    staged: Option<Block>,
}

/// The subscriber's part of the maintenance state.
pub(crate) struct Draining {
    /// Ended connections whose ring still held messages: their `Disconnected` is reported
    /// once the receive path has drained them (by it, or by `tick` seeing the ring empty).
    draining: Vec<Arc<ConnInfo>>,
    /// Highest ring generation opened per publisher.
    seen: HashMap<EndpointId, u64>,
}

/// What looking at one incoming ring found.
enum Staged {
    /// A valid message is staged in ring `active[i]`, with this sequence number.
    Ready(u64),
    Nothing,
    Ended,
}

impl Subscriber {
    crate::endpoint::endpoint_views!("let ep = mmipc::Subscriber::builder(\"docs\").dir(dir.path()).build()?;", "publishers", new: "Subscriber", "let msg = ep.recv();");

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

    /// Waits for the next message from any publisher. It cannot fail: a subscriber without
    /// publishers waits for new ones (use [`Subscriber::recv_timeout`] to bound the wait).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let msg = subscriber.recv();
    /// println!("{} bytes", msg.len());
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv(&mut self) -> Message {
        self.recv_ref().to_message()
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// # Errors
    /// [`RecvTimeoutError`] if none arrived in time.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// match subscriber.recv_timeout(Duration::from_secs(1)) {
    ///     Ok(msg) => println!("{msg:?}"),
    ///     Err(mmipc::RecvTimeoutError) => println!("quiet"),
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.recv_ref_timeout(timeout).map(|m| m.to_message())
    }

    /// The next message if one is waiting; never blocks.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// while let Some(msg) = subscriber.try_recv() {
    ///     println!("{} bytes", msg.len());
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Option<Message> {
        self.try_recv_ref().map(|m| m.to_message())
    }

    /// Waits for the next message and lends it in place, without copying or allocating: the
    /// payload is read straight from shared memory (or from the subscriber's reassembly
    /// buffer for a message larger than the ring). The publisher gets the space back when the
    /// [`MessageRef`] drops, so hold it briefly.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let mut total = 0usize;
    /// for _ in 0..1000 {
    ///     let msg = subscriber.recv_ref();
    ///     total += msg.len(); // no copy, no allocation
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn recv_ref(&mut self) -> MessageRef<'_> {
        loop {
            if let Some(found) = self.find() {
                return self.take(found);
            }
            let _ = self.wait(None, || false);
        }
    }

    /// As [`Subscriber::recv_ref`], waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError`] if none arrived in time.
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
    pub fn recv_ref_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<MessageRef<'_>, RecvTimeoutError> {
        // A message already waiting costs no clock read.
        if let Some(found) = self.find() {
            return Ok(self.take(found));
        }
        // A timeout too large for the clock (`Duration::MAX`) means no deadline.
        let deadline = crate::options::deadline_after(timeout);
        loop {
            if let Some(found) = self.find() {
                return Ok(self.take(found));
            }
            if let Err(RingWaitError::TimedOut) = self.wait(deadline, || false) {
                return Err(RecvTimeoutError);
            }
        }
    }

    /// As [`Subscriber::try_recv`], lending the message in place like
    /// [`Subscriber::recv_ref`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut subscriber = mmipc::Subscriber::new("telemetry")?;
    /// if let Some(msg) = subscriber.try_recv_ref() {
    ///     println!("{} bytes", msg.payload().len());
    /// }
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn try_recv_ref(&mut self) -> Option<MessageRef<'_>> {
        let found = self.find()?;
        Some(self.take(found))
    }

    /// An endless iterator of received messages (each `next` waits like
    /// [`Subscriber::recv`]).
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
        std::iter::repeat_with(move || self.recv())
    }

    /// Waits until at least `n` publishers are connected; returns the number connected.
    ///
    /// # Errors
    /// [`WaitError::Timeout`] if fewer than `n` connected in time.
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
    pub fn wait_for_publishers(&self, n: usize, timeout: Duration) -> Result<usize, WaitError> {
        self.core.wait_for_peers(n, timeout)
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
    pub fn events(&self) -> Events {
        self.core.subscribe()
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

    /// Sleeps on the doorbell until a ring may have a message, a new ring was handed over,
    /// a stop was requested, `also()` holds, or `deadline` passed.
    pub(crate) fn wait(
        &mut self,
        deadline: Option<Instant>,
        mut also: impl FnMut() -> bool,
    ) -> Result<(), RingWaitError<()>> {
        let doorbell = self.core.role.doorbell.clone();
        let strategy = self.core.common.wait;
        wait_until(doorbell.futex(), doorbell.bell(), strategy, deadline, || {
            Ok::<bool, ()>(self.ready() || also())
        })
        .map(|_| ())
        .or_else(|e| match e {
            RingWaitError::TimedOut => Err(e),
            _ => Ok(()),
        })
    }

    /// Whether a stop was requested (the callback thread ends).
    pub(crate) fn stopping(&self) -> bool {
        self.core.role.stop.load(Ordering::Acquire)
    }

    /// Ends the registration as a waiter that [`Subscriber::arm`] made.
    #[cold]
    fn disarm(&mut self) {
        self.armed = false;
        let bell = self.core.role.doorbell.bell();
        bell.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    fn ready(&mut self) -> bool {
        self.core.role.stop.load(Ordering::Relaxed)
            || self.core.role.pending.maybe_waiting()
            || self.active.iter_mut().any(|c| c.consumer.poll())
    }

    /// Finds the next message, round-robin over the publishers, and leaves it staged in its
    /// ring; returns which ring and its sequence number. Finding and taking are two steps so
    /// that no borrow of a ring is held across the search.
    pub(crate) fn find(&mut self) -> Option<(usize, u64)> {
        if self.armed {
            self.disarm();
        }
        let core = &*self.core;
        if let Some(pending) = core.role.pending.take() {
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
            match stage(&mut self.active[i], core) {
                Staged::Ready(seq) => {
                    self.next = i + 1;
                    return Some((i, seq));
                }
                Staged::Nothing => {}
                Staged::Ended => ended = true,
            }
        }
        if ended {
            self.retire();
        }
        None
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
    pub(crate) fn take(&mut self, (i, sequence): (usize, u64)) -> MessageRef<'_> {
        let Incoming {
            consumer,
            info,
            payload,
            staged,
            ..
        } = &mut self.active[i];
        let publisher = info.peer;
        let guard = consumer
            .try_read_in_place()
            .ok()
            .flatten()
            .expect("find() staged a message in this ring");
        match (staged.take(), payload.as_ref()) {
            (Some(block), Some(view)) => {
                MessageRef::large(guard, view.payload(block), publisher, sequence)
            }
            _ => MessageRef::new(guard, publisher, sequence),
        }
    }
}

/// Stages the next message of one ring if there is one, checking its framing and counting
/// it (and any gap in sequence numbers as drops).
fn stage(c: &mut Incoming, core: &Core<Receiving>) -> Staged {
    let events = &core.events;
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
    // A staged record that breaks the protocol: the violation is recorded before the record
    // is consumed, because once the ring reads empty the runtime reports a departed
    // publisher's end with the reason recorded so far (`Crashed`, `Closed`).
    let refuse = |c: &mut Incoming| {
        c.info.record(DisconnectReason::ProtocolViolation);
        drop(c.consumer.try_read_in_place());
        c.consumer.reject();
        end(c, DisconnectReason::ProtocolViolation)
    };
    match c.consumer.prepare() {
        Ok(true) => {
            let frame = c.consumer.staged().unwrap_or_default();
            match framing::check(frame, c.last_seq) {
                Frame::Next { seq, len } => {
                    if c.last_seq != 0 {
                        info.drops.add(seq - c.last_seq - 1);
                    }
                    info.messages.add(1);
                    info.bytes.add(len);
                    c.last_seq = seq;
                    Staged::Ready(seq)
                }
                Frame::Descriptor { seq } => match resolve(c, core, seq) {
                    Some(block) => {
                        if c.last_seq != 0 {
                            c.info.drops.add(seq - c.last_seq - 1);
                        }
                        c.info.messages.add(1);
                        c.info.bytes.add(block.len);
                        c.last_seq = seq;
                        c.staged = Some(block);
                        Staged::Ready(seq)
                    }
                    None => refuse(c),
                },
                // Too short for a frame, or a sequence number that went backwards.
                Frame::Invalid => refuse(c),
            }
        }
        Ok(false) => Staged::Nothing,
        Err(RingError::Violation(_) | RingError::Rejected) => {
            end(c, DisconnectReason::ProtocolViolation)
        }
        // The publisher closed its side: because it found us (or the ring) broken, judged us
        // hung, or normally.
        Err(_) => {
            let reason = crate::connection::liveness::closed_reason(&c.info.control);
            end(c, reason)
        }
    }
}

/// Maps the publisher's payload segment if not yet done and checks the staged descriptor of
/// message `seq` against it; `None` if the segment cannot be opened or the descriptor is
/// refused (the publisher broke the protocol).
fn resolve(c: &mut Incoming, core: &Core<Receiving>, seq: u64) -> Option<Block> {
    if c.payload.is_none() {
        let path = segment::payload_path(&core.dirs, c.info.peer.id);
        c.payload = Some(PayloadIn::open(&path, core.dirs.access).ok()?);
    }
    let desc = c.consumer.staged()?.get(FRAME_HEADER..)?;
    let view = c.payload.as_ref()?;
    view.resolve(seq, desc, core.common.max_message_size as u64)
        .ok()
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // The wake-up pipe goes before the record and the lock (the order of `close`).
        #[cfg(all(any(unix, windows), feature = "tokio"))]
        self.judge_ring_in_flight();
        #[cfg(all(unix, feature = "tokio"))]
        drop(self.reactor.take());
        #[cfg(any(unix, windows))]
        drop(self.listener.take());
        self.core.role.stop.store(true, Ordering::Release);
        self.core.role.close(&self.core);
        // Dropping our consumers marks the rings closed and wakes blocked publishers.
        self.active.clear();
        self.waiting.clear();
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt_handle(f, "Subscriber")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect (seen under Wine, where a directory listing taken while files come and go can
    /// miss entries): a listing without a connected publisher's record and ring made the
    /// subscriber forget the ring's generation; the next scan took the same ring for a new
    /// one, ended the connection and closed the publisher's side, and thousands of messages
    /// of a live publisher were lost. Forgetting the generation (what such a listing did) must
    /// change nothing.
    #[test]
    fn a_connection_is_never_replaced_by_its_own_ring() {
        use crate::runtime::Endpoint as _;
        let dir = tempfile::tempdir().unwrap();
        let mut sub = Subscriber::builder("regen").dir(dir.path()).build().unwrap();
        let events = sub.events();
        let publisher = crate::Publisher::builder("regen")
            .dir(dir.path())
            .deliver_to_same_process(true)
            .build()
            .unwrap();
        sub.wait_for_publishers(1, Duration::from_secs(60)).unwrap();
        publisher.publish(b"one").unwrap();
        sub.core.maint().state.seen.clear();
        sub.core.scan();
        publisher.publish(b"two").unwrap();
        for want in [&b"one"[..], b"two"] {
            let msg = sub.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(msg.payload(), want);
        }
        assert_eq!(sub.num_active_connections(), 1);
        let disconnects: Vec<_> = events
            .try_iter()
            .filter(|e| matches!(e, crate::Event::Disconnected { .. }))
            .collect();
        assert!(disconnects.is_empty(), "{disconnects:?}");
    }

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
        while sub.core.maint().state.seen.len() > 1 {
            assert!(
                Instant::now() < deadline,
                "still remembered: {}",
                sub.core.maint().state.seen.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
#[cfg(test)]
mod directory_tests {
    use std::time::{Duration, Instant};

    /// Defect (Windows): every endpoint watched its channel directory anew, and notify's
    /// Windows backend dropped the old watch without closing its directory handle; after many
    /// endpoints came and went the directory could never be removed (the channel's last
    /// endpoint left it behind, and removing the root hung `remove_dir_all` under Wine).
    #[test]
    fn a_channel_directory_goes_after_many_endpoints_came_and_went() {
        let dir = tempfile::tempdir().unwrap();
        let sub = crate::Subscriber::builder("churn")
            .dir(dir.path())
            .build()
            .unwrap();
        for _ in 0..10 {
            let publisher = crate::Publisher::builder("churn")
                .dir(dir.path())
                .deliver_to_same_process(true)
                .build()
                .unwrap();
            assert_eq!(publisher.num_active_connections(), 1);
        }
        drop(sub);
        let channel = dir.path().join("churn");
        let deadline = Instant::now() + Duration::from_secs(30);
        while channel.exists() {
            assert!(Instant::now() < deadline, "{} stays", channel.display());
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_dir_all(dir.path()).unwrap();
    }
}
