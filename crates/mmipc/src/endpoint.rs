//! The endpoint core: what a publisher and a subscriber share, so that each of them is only
//! its data path. Owns registration (lock file, then record; closing removes the record,
//! then the lock), the connection table and its liveness bookkeeping (heartbeats, silence,
//! dead and departed peers, cleanup after the dead), event delivery and waiting for counts.
//! A [`Role`] supplies what differs: how a connection is made and ended, and what the data
//! path needs handed over. Must not touch ring contents (that is the data path's).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use crate::sync::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::ChannelDirs;
use crate::connection::liveness::{ConnInfo, PeerEnd, Silence, departure};
use crate::discovery::{self, EndpointId, EndpointKind, Listing, Record};
use crate::error::{Error, WaitError};
use crate::event::{ConnectionStats, DisconnectReason, EventHub, Events, lock};
use crate::options::Common;
use crate::runtime::{self, Endpoint as _};
use crate::sys;

/// What a publisher or a subscriber adds to the core.
pub(crate) trait Role: Sized + Send + Sync + 'static {
    /// This endpoint's kind.
    const KIND: EndpointKind;
    /// Which end of each ring the peer holds.
    const PEER_END: PeerEnd;
    /// What the role keeps per connection besides the core's [`Conn`] fields.
    type Conn: Send;
    /// What the role keeps under the maintenance lock.
    type State: Send;

    /// Connects to the live peers of `listing` (`live`) it is not connected to yet. Called
    /// by every scan, after the core has ended the connections to dead and departed peers
    /// and before it removes the dead peers' files.
    fn connect_new(
        core: &Core<Self>,
        m: &mut Maint<Self>,
        listing: &Listing,
        live: &HashSet<EndpointId>,
    );

    /// Ends connection `conn` (already out of the table): reports the reason, closes what
    /// must be closed, removes the ring file if it is the role's to remove.
    fn end(
        core: &Core<Self>,
        m: &mut Maint<Self>,
        id: EndpointId,
        conn: Conn<Self::Conn>,
        reason: DisconnectReason,
    );

    /// Why a connected peer whose record vanished left (closed, or cleaned up after by
    /// another peer): by default the ring tells.
    fn gone_reason(conn: &Conn<Self::Conn>) -> DisconnectReason {
        departure(&conn.info, Self::PEER_END)
    }

    /// Heartbeats beyond the rings' (the subscriber's doorbell).
    fn beat(&self) {}

    /// Periodic work of the role, under the maintenance lock.
    fn tick(_core: &Core<Self>, _m: &mut Maint<Self>) {}

    /// A stop was requested (the endpoint is going away).
    fn stopping(&self) -> bool {
        false
    }
}

/// One connection as the core tracks it.
pub(crate) struct Conn<X> {
    pub info: Arc<ConnInfo>,
    pub ring_path: PathBuf,
    pub silence: Silence,
    pub extra: X,
    /// Where the OS announces no dead process through the directory (Windows): a watch for
    /// the peer's exit that triggers a scan. Set by [`Core::add`].
    pub exit_watch: Option<sys::ExitWatch>,
}

/// Everything under the maintenance lock.
pub(crate) struct Maint<R: Role> {
    pub conns: HashMap<EndpointId, Conn<R::Conn>>,
    pub state: R::State,
    next_beat: Instant,
    last_tick: Instant,
}

/// An endpoint's announcement in its channel directory: the lock file (held while the
/// process lives) and the record. Removed in that order's reverse: the record first, so that
/// a peer never sees a record without a live lock from a clean close.
pub(crate) struct Registration {
    record_path: PathBuf,
    /// The lock, and this process's note that the endpoint lives (released together).
    lock_file: Mutex<Option<(sys::LockFile, discovery::LocalEndpoint)>>,
}

impl Registration {
    /// Creates the channel directories, takes the lock, lets `prepare` make what must exist
    /// before peers can see us (the subscriber's doorbell), then writes the record.
    pub(crate) fn create<T>(
        common: &Common,
        channel: &str,
        kind: EndpointKind,
        prepare: impl FnOnce(&ChannelDirs, EndpointId) -> Result<T, Error>,
    ) -> Result<(Registered, T), Error> {
        let id = EndpointId::random();
        let (dirs, lock_file) = ChannelDirs::new_with_lock(&common.root(), channel, common.group_shared, |d| {
            discovery::lock_path(d, kind, id)
        })?;
        let record = Record {
            protocol: discovery::PROTOCOL,
            kind,
            id: id.to_string(),
            pid: std::process::id(),
            max_message_size: common.max_message_size as u64,
            heartbeat_interval_ms: common.heartbeat_interval.as_millis() as u64,
            created_unix_ms: discovery::unix_ms(),
            payloads: kind == EndpointKind::Subscriber,
        };
        let made = prepare(&dirs, id)
            .and_then(|made| Ok((made, discovery::write_record(&dirs, &record, id)?)));
        match made {
            Ok((made, record_path)) => {
                let registration = Registration {
                    record_path,
                    lock_file: Mutex::new(Some((lock_file, discovery::LocalEndpoint::new(id)))),
                };
                Ok((
                    Registered {
                        id,
                        dirs,
                        registration,
                    },
                    made,
                ))
            }
            Err(e) => {
                let _ = sys::remove_file(lock_file.path());
                Err(e)
            }
        }
    }

    /// Removes the record: peers now see us gone.
    pub(crate) fn remove_record(&self) {
        let _ = sys::remove_file(&self.record_path);
    }

    /// Removes the lock file and releases the lock: the last step of closing.
    fn release(&self) {
        if let Some((l, _local)) = lock(&self.lock_file).take() {
            let _ = sys::remove_file(l.path());
        }
    }
}

/// A new endpoint's identity, directories and registration, from [`Registration::create`].
pub(crate) struct Registered {
    id: EndpointId,
    dirs: ChannelDirs,
    registration: Registration,
}

/// The shared state of one endpoint: the core's fields plus the role's.
pub(crate) struct Core<R: Role> {
    pub id: EndpointId,
    pub channel: String,
    pub dirs: ChannelDirs,
    pub common: Common,
    pub registration: Registration,
    pub maint: Mutex<Maint<R>>,
    pub changed: Condvar,
    pub events: EventHub,
    closed: AtomicBool,
    pub role: R,
}

impl<R: Role> Core<R> {
    /// Puts the endpoint together and hands it to the runtime thread.
    pub(crate) fn start(
        Registered {
            id,
            dirs,
            registration,
        }: Registered,
        channel: String,
        common: Common,
        role: R,
        state: R::State,
    ) -> Arc<Core<R>> {
        let now = Instant::now();
        let core = Arc::new(Core {
            id,
            channel,
            dirs,
            common,
            registration,
            maint: Mutex::new(Maint {
                conns: HashMap::new(),
                state,
                next_beat: now,
                last_tick: now,
            }),
            changed: Condvar::new(),
            events: EventHub::default(),
            closed: AtomicBool::new(false),
            role,
        });
        let weak = Arc::downgrade(&core);
        runtime::register(weak);
        core
    }

    /// The maintenance lock.
    pub(crate) fn maint(&self) -> MutexGuard<'_, Maint<R>> {
        lock(&self.maint)
    }

    /// Marks the endpoint closed; `false` if it already was (closing runs once).
    pub(crate) fn begin_close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    /// The last steps of closing, after the role has closed its rings and removed the
    /// record: the lock goes, the channel's directories too if they are empty now, and
    /// waiters wake up.
    pub(crate) fn finish_close(&self) {
        self.registration.release();
        self.dirs.remove_if_empty();
        self.changed.notify_all();
        runtime::forget();
    }

    /// Adds a connection; announces it and wakes waiters.
    pub(crate) fn add(&self, m: &mut Maint<R>, id: EndpointId, mut conn: Conn<R::Conn>) {
        let peer = conn.info.peer;
        let lock = discovery::lock_path(&self.dirs, R::KIND.peer(), id);
        conn.exit_watch = sys::watch_exit(peer.pid, move || {
            // The OS releases a dead process's lock a moment after its exit is signalled;
            // the scan judges the peer by its lock.
            let deadline = Instant::now() + Duration::from_millis(200);
            while matches!(sys::probe_lock(&lock), Ok(sys::LockState::Held))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            runtime::rescan();
        });
        m.conns.insert(id, conn);
        self.events.emit(crate::event::Event::Connected { peer });
        self.changed.notify_all();
    }

    /// Ends the connection to `id`, if there is one.
    pub(crate) fn end(&self, m: &mut Maint<R>, id: EndpointId, reason: DisconnectReason) {
        if let Some(conn) = m.conns.remove(&id) {
            R::end(self, m, id, conn, reason);
            self.changed.notify_all();
        }
    }

    /// How long a peer with `record` may be silent.
    pub(crate) fn silence_for(&self, info: &ConnInfo, record: &Record) -> Silence {
        Silence::new(
            info,
            R::PEER_END,
            record.timeout_for(self.common.peer_timeout),
        )
    }

    /// The `Debug` form of a handle `name` on this endpoint.
    pub(crate) fn fmt_handle(
        &self,
        f: &mut std::fmt::Formatter<'_>,
        name: &str,
    ) -> std::fmt::Result {
        f.debug_struct(name)
            .field("channel", &self.channel)
            .field("id", &self.id)
            .finish()
    }

    pub(crate) fn num_connections(&self) -> usize {
        self.maint().conns.len()
    }

    pub(crate) fn connection_stats(&self) -> Vec<ConnectionStats> {
        self.maint()
            .conns
            .values()
            .map(|c| c.info.stats())
            .collect()
    }

    pub(crate) fn subscribe(&self) -> Events {
        self.events.subscribe()
    }

    /// Waits until at least `n` peers are connected; returns how many are.
    pub(crate) fn wait_for_peers(&self, n: usize, timeout: Duration) -> Result<usize, WaitError> {
        runtime::rescan();
        // No deadline when `timeout` is too large for the clock (`Duration::MAX`).
        let deadline = crate::options::deadline_after(timeout);
        let mut m = self.maint();
        loop {
            let have = m.conns.len();
            if have >= n {
                return Ok(have);
            }
            if self.is_closed() {
                return Err(WaitError::Closed);
            }
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Err(WaitError::Timeout {
                    wanted: n,
                    have,
                    peers: R::KIND.peer(),
                    same_process: 0,
                });
            }
            m = self
                .changed
                .wait_timeout(m, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// As [`Core::wait_for_peers`], without blocking the thread: woken by the endpoint's
    /// connection events.
    #[cfg(all(any(unix, windows), feature = "tokio"))]
    pub(crate) async fn wait_for_peers_async(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<usize, WaitError> {
        // Subscribe before counting: a connection made in between is an event we get.
        let mut events = self.subscribe();
        let deadline = crate::options::deadline_after(timeout);
        runtime::rescan();
        loop {
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            match self.wait_for_peers_now(n) {
                Err(WaitError::Timeout { .. }) if !left.is_zero() => {}
                done => return done,
            }
            // An event, the end of the endpoint, or the deadline: count again.
            let _ = tokio::time::timeout(left, events.recv_async()).await;
        }
    }

    /// The peer count if at least `n`, else the error a wait that ran out would give.
    #[cfg(all(any(unix, windows), feature = "tokio"))]
    fn wait_for_peers_now(&self, n: usize) -> Result<usize, WaitError> {
        let have = self.maint().conns.len();
        if have >= n {
            Ok(have)
        } else if self.is_closed() {
            Err(WaitError::Closed)
        } else {
            Err(WaitError::Timeout {
                wanted: n,
                have,
                peers: R::KIND.peer(),
                same_process: 0,
            })
        }
    }

    /// Waits (at most `limit`) until every peer in `targets` is connected.
    /// Waits until every one of `targets` is connected, or no new one connected for
    /// `patience`, or `cap` passed: peers that answer slowly but steadily (a loaded machine,
    /// many peers) are all waited for; a stopped or hung one costs `patience`.
    pub(crate) fn wait_connected(&self, targets: &[EndpointId], patience: Duration, cap: Duration) {
        let start = Instant::now();
        let mut progress = start;
        let mut connected = 0;
        let mut m = self.maint();
        loop {
            let now_connected = targets.iter().filter(|id| m.conns.contains_key(id)).count();
            if now_connected == targets.len() {
                return;
            }
            let now = Instant::now();
            if now_connected > connected {
                (connected, progress) = (now_connected, now);
            }
            let deadline = (progress + patience).min(start + cap);
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() || self.is_closed() {
                return;
            }
            m = self
                .changed
                .wait_timeout(m, left.min(Duration::from_millis(5)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

impl<R: Role> runtime::Endpoint for Core<R> {
    fn dirs(&self) -> &ChannelDirs {
        &self.dirs
    }

    fn is_closed(&self) -> bool {
        self.role.stopping() || self.closed.load(Ordering::Acquire)
    }

    fn scan(&self) -> bool {
        let mut m = self.maint();
        if self.is_closed() {
            return false;
        }
        let peer_kind = R::KIND.peer();
        let listing = Listing::read(&self.dirs);
        let mut live: HashSet<EndpointId> = HashSet::new();
        let mut dead: Vec<EndpointId> = Vec::new();
        for id in listing.records(peer_kind) {
            if discovery::is_alive(&self.dirs, peer_kind, id) {
                live.insert(id);
                continue;
            }
            let reason = m.conns.get(&id).map_or(DisconnectReason::Crashed, |c| {
                departure(&c.info, R::PEER_END)
            });
            self.end(&mut m, id, reason);
            dead.push(id);
        }
        // A record that disappeared was removed by its owner closing, or by a peer cleaning
        // up after its crash: the ring (and the role) tell which. A directory listing taken
        // while other files come and go may miss an entry (seen under Wine), so a peer
        // missing from it is looked up by name before it is judged gone.
        for (&id, _) in m.conns.iter() {
            if !live.contains(&id)
                && discovery::record_path(&self.dirs, peer_kind, id).exists()
                && discovery::is_alive(&self.dirs, peer_kind, id)
            {
                live.insert(id);
            }
        }
        let gone: Vec<(EndpointId, DisconnectReason)> = m
            .conns
            .iter()
            .filter(|(id, _)| !live.contains(id))
            .map(|(&id, c)| (id, R::gone_reason(c)))
            .collect();
        for (id, reason) in gone {
            self.end(&mut m, id, reason);
        }
        R::connect_new(self, &mut m, &listing, &live);
        // Dead peers' leftovers (rings owed to live subscribers stay), then dead endpoints
        // of our own kind: whoever notices first cleans up, in bounded batches.
        let mut cleanup = discovery::CleanupBudget::new();
        for id in dead {
            if !cleanup.exhausted() && listing.is_ours(&self.dirs, peer_kind, id) {
                cleanup.spend();
                listing.remove_dead(&self.dirs, peer_kind, id);
            }
        }
        listing.clean_dead(&self.dirs, R::KIND, self.id, &mut cleanup);
        // Out of cleanup budget: more dead endpoints may wait; scan again soon.
        cleanup.exhausted()
    }

    fn tick(&self, now: Instant) -> Instant {
        let mut m = self.maint();
        let interval = self.common.tick_interval();
        if self.is_closed() {
            return now + interval;
        }
        if now + runtime::tick_slack(interval) >= m.next_beat {
            self.role.beat();
            for c in m.conns.values() {
                match R::PEER_END {
                    PeerEnd::Consumer => c.info.control.beat_producer(),
                    PeerEnd::Producer => c.info.control.beat_consumer(),
                }
            }
            m.next_beat = now + self.common.heartbeat_interval;
        }
        R::tick(self, &mut m);
        // If this thread itself was held up (machine suspended, process stopped), judge no
        // one on the stale clock: restart every silence count.
        let delayed = now.duration_since(m.last_tick) > self.common.peer_timeout / 2;
        m.last_tick = now;
        let ended: Vec<_> = m
            .conns
            .iter_mut()
            .filter_map(|(&id, c)| Some((id, c.silence.judge(&c.info, now, delayed)?)))
            .collect();
        // A peer that judged us hung (we were stopped) is alive: the next scan connects
        // to it anew, at once rather than at the next safety rescan.
        let evicted = ended.iter().any(|&(_, r)| r == DisconnectReason::Evicted);
        for (id, reason) in ended {
            self.end(&mut m, id, reason);
        }
        if evicted {
            runtime::rescan();
        }
        now + interval
    }
}

/// A hand-over queue from the runtime thread (which makes connections) to the data path
/// (which uses them): the data path looks at one flag per operation, and takes the lock
/// only when something waits.
pub(crate) struct Handoff<T> {
    items: Mutex<Vec<T>>,
    waiting: AtomicBool,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            items: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
        }
    }
}

impl<T> Handoff<T> {
    pub(crate) fn push(&self, item: T) {
        lock(&self.items).push(item);
        self.waiting.store(true, Ordering::Release);
    }

    /// Whether something may wait (a plain load: cheap enough for every operation).
    #[inline]
    pub(crate) fn maybe_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Takes everything waiting; the swap (a locked read-modify-write) only when the flag
    /// says something waits.
    #[inline]
    pub(crate) fn take(&self) -> Option<Vec<T>> {
        if self.maybe_waiting() && self.waiting.swap(false, Ordering::AcqRel) {
            Some(std::mem::take(&mut *lock(&self.items)))
        } else {
            None
        }
    }

    /// Runs `f` on everything waiting, without taking it.
    pub(crate) fn for_each(&self, f: impl FnMut(&T)) {
        lock(&self.items).iter().for_each(f);
    }

    pub(crate) fn clear(&self) {
        lock(&self.items).clear();
    }
}

/// The views every public endpoint handle offers, written once: `id`, `channel`,
/// `num_active_connections` and `connections`. The handle has a `core: Arc<Core<_>>`;
/// `$make` is the doctest line that makes `ep` (the handle) in the temporary directory `dir`,
/// `$peers` what its peers are called.
macro_rules! endpoint_views {
    ($make:literal, $peers:literal, new: $ty:literal, $use:literal) => {
        crate::endpoint::endpoint_new!($ty, $use);
        crate::endpoint::endpoint_views!($make, $peers);
    };
    ($make:literal, $peers:literal) => {
        /// This endpoint's id (32 hex digits; subscribers see a publisher's in each
        /// [`Message`](crate::Message)).
        ///
        /// # Examples
        ///
        /// ```
        /// # let dir = tempfile::tempdir()?;
        #[doc = $make]
        /// println!("endpoint {}", ep.id());
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn id(&self) -> crate::EndpointId {
            self.core.id
        }

        /// The channel name.
        ///
        /// # Examples
        ///
        /// ```
        /// # let dir = tempfile::tempdir()?;
        #[doc = $make]
        /// assert_eq!(ep.channel(), "docs");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn channel(&self) -> &str {
            &self.core.channel
        }

        #[doc = concat!("Number of ", $peers, " currently connected (the C# `NumActiveConnections()`).")]
        ///
        /// # Examples
        ///
        /// ```
        /// # let dir = tempfile::tempdir()?;
        #[doc = $make]
        /// assert_eq!(ep.num_active_connections(), 0);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn num_active_connections(&self) -> usize {
            self.core.num_connections()
        }

        /// A snapshot of every connection: peer, counters, ring fill.
        ///
        /// # Examples
        ///
        /// ```
        /// # let dir = tempfile::tempdir()?;
        #[doc = $make]
        /// for c in ep.connections() {
        ///     println!("pid {}: {} msgs, {} dropped, ring {}/{}", c.peer.pid, c.messages, c.drops, c.ring_fill, c.ring_capacity);
        /// }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn connections(&self) -> Vec<crate::ConnectionStats> {
            self.core.connection_stats()
        }
    };
}
pub(crate) use endpoint_views;

/// `new(channel)`: the endpoint with default options in the default directory, written once.
/// `$ty` is the endpoint type's name, `$use` a doctest line using the endpoint `ep`.
macro_rules! endpoint_new {
    ($ty:literal, $use:literal) => {
        #[doc = concat!("A ", $ty, " on `channel` in the default directory, with default options.")]
        ///
        /// # Errors
        #[doc = concat!("As [`", $ty, "Builder::build`].")]
        ///
        /// # Examples
        ///
        /// ```no_run
        #[doc = concat!("let mut ep = mmipc::", $ty, "::new(\"telemetry\")?;")]
        #[doc = $use]
        /// # Ok::<(), mmipc::Error>(())
        /// ```
        pub fn new(channel: &str) -> crate::Result<Self> {
            Self::builder(channel).build()
        }
    };
}
pub(crate) use endpoint_new;
