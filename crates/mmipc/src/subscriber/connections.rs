//! The subscriber's side of its connections, run by the runtime thread under the
//! maintenance lock: opening the rings publishers make for it (newest generation first, orphan
//! rings of publishers already gone included), ending connections so that a publisher's
//! `Disconnected` comes after its last message, closing. Owns the [`Role`] of a subscriber;
//! must not read messages (that is the receive path in `mod.rs`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use crate::sync::Ordering;
use std::time::Duration;

use super::{Draining, Incoming, Receiving};
use crate::connection::framing::FRAME_HEADER;
use crate::connection::liveness::{ConnInfo, PeerEnd, departure};
use crate::connection::payload::PayloadIn;
use crate::connection::segment;
use crate::discovery::{self, EndpointId, EndpointKind, Listing};
use crate::endpoint::{Conn, Core, Maint, Role};
use crate::error::Result;
use crate::event::{DisconnectReason, Peer};
use crate::connection::wake::PeerPipe;
use crate::ring::RingSegment;
use crate::runtime;
use crate::sys;

/// How long `SubscriberBuilder::build` waits for the next live publisher to connect (a
/// stopped or hung one costs this much) ...
const CONNECT_WAIT: Duration = if sys::WATCH_MAY_LOSE_EVENTS {
    // A publisher that missed our arrival finds it on the runtime's clock.
    Duration::from_millis(500).saturating_add(crate::runtime::RESCAN_INTERVAL)
} else {
    Duration::from_millis(500)
};
/// ... and at most in all.
const CONNECT_CAP: Duration = Duration::from_secs(5);

impl Receiving {
    /// Closes the subscriber's side of everything and removes its files.
    pub(super) fn close(&self, core: &Core<Receiving>) {
        if !core.begin_close() {
            return;
        }
        let mut m = core.maint();
        // Our side of every ring, and our doorbell, are closed before our record goes: a
        // publisher that finds the record gone can tell a clean close from a crash.
        self.doorbell.mark_closed();
        for c in m.conns.values() {
            c.info.control.close_consumer_side();
        }
        core.registration.remove_record();
        for c in m.conns.values() {
            let _ = sys::unlink_segment(&c.ring_path);
        }
        let mut publishers: Vec<EndpointId> = m.conns.keys().copied().collect();
        m.conns.clear();
        drop(m);
        for ring in discovery::rings_of(&core.dirs, EndpointKind::Subscriber, core.id) {
            let _ = sys::unlink_segment(&ring);
            let name = ring.file_name().and_then(|n| n.to_str());
            publishers.extend(name.and_then(segment::parse_ring_name).map(|(p, _, _)| p));
        }
        // Payload segments of gone publishers whose last ring was ours.
        for publisher in publishers {
            remove_payload_if_last(core, publisher);
        }
        self.pending.clear();
        let _ = sys::unlink_segment(&segment::bell_path(&core.dirs, core.id));
        core.finish_close();
    }

    /// Wakes the receive path (or the callback thread).
    pub(crate) fn ring_doorbell(&self) {
        self.doorbell.ring();
    }

    /// Requests a stop of the callback thread and wakes it.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.ring_doorbell();
    }

    /// Opens the ring `path` of `publisher` and hands it to the receive path.
    fn open(
        core: &Core<Receiving>,
        m: &mut Maint<Receiving>,
        publisher: &discovery::Found,
        path: PathBuf,
        generation: u64,
    ) -> Result<()> {
        let s = &core.role;
        let mut consumer = RingSegment::open_in(&path, core.dirs.access)?.into_consumer();
        consumer.set_max_message_len(core.common.max_message_size.saturating_add(FRAME_HEADER));
        consumer.set_budget(Arc::clone(&s.budget));
        consumer.set_wait_strategy(core.common.wait);
        // A publisher waiting for room in an async publish listens on its wake-up pipe.
        let pipe = Arc::new(PeerPipe::new(
            segment::publisher_pipe_path(&core.dirs, publisher.id),
            core.dirs.access,
        ));
        consumer.set_space_hook(Arc::new(move || pipe.notify()));
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
        m.state.seen.insert(publisher.id, generation);
        let silence = core.silence_for(&info, &publisher.record);
        // `Connected` first: whoever receives a message of this ring has had the event
        // emitted before it (the callback thread relies on it).
        core.add(
            m,
            publisher.id,
            Conn {
                info: Arc::clone(&info),
                ring_path: path,
                silence,
                extra: (),
                exit_watch: None,
            },
        );
        // Mapped now if it exists (it may go with its publisher before we read its first
        // descriptor), else on the first descriptor.
        let payload_path = segment::payload_path(&core.dirs, publisher.id);
        s.pending.push(Incoming {
            consumer,
            info,
            last_seq: 0,
            done: false,
            payload: PayloadIn::open(&payload_path, core.dirs.access).ok(),
            staged: None,
        });
        s.ring_doorbell();
        Ok(())
    }
}

/// Connects to every publisher of another process alive now, before `build` returns: they
/// make our rings as soon as their runtime sees our record (well under a millisecond), and we
/// open them. Waits [`CONNECT_WAIT`] after the last one that connected for publishers that
/// do not answer (stopped, hung), and [`CONNECT_CAP`] in all. Publishers of this process are left to the runtime (they may not deliver to their
/// own process).
pub(super) fn connect_to_live_publishers(core: &Core<Receiving>) {
    runtime::Endpoint::scan(core);
    let me = std::process::id();
    let listing = Listing::read(&core.dirs);
    let targets: Vec<EndpointId> = listing
        .records(EndpointKind::Publisher)
        .filter(|&id| discovery::is_alive(&core.dirs, EndpointKind::Publisher, id))
        .filter(|&id| {
            discovery::read_record_of(&core.dirs, EndpointKind::Publisher, id)
                .is_some_and(|r| r.pid != me)
        })
        .collect();
    if !targets.is_empty() {
        core.wait_connected(&targets, CONNECT_WAIT, CONNECT_CAP);
    }
}

impl Role for Receiving {
    const KIND: EndpointKind = EndpointKind::Subscriber;
    const PEER_END: PeerEnd = PeerEnd::Producer;
    type Conn = ();
    type State = Draining;

    fn connect_new(
        core: &Core<Self>,
        m: &mut Maint<Self>,
        listing: &Listing,
        live: &HashSet<EndpointId>,
    ) {
        // Publishers with a ring addressed to us, newest generation each.
        let mut newest: HashMap<EndpointId, (u64, PathBuf)> = HashMap::new();
        for (p, generation, path) in listing.rings_to(core.id) {
            if newest.get(&p).is_none_or(|(g, _)| generation > *g) {
                newest.insert(p, (generation, path.to_path_buf()));
            }
        }
        for (&p, (generation, path)) in &newest {
            let (generation, path) = (*generation, path.clone());
            if m.state.seen.get(&p).is_some_and(|&g| g >= generation) {
                continue;
            }
            if let Some(c) = m.conns.get(&p) {
                if c.ring_path == path {
                    // The ring we read already (its generation was forgotten after a listing
                    // that missed it): never replace a connection by itself.
                    m.state.seen.insert(p, generation);
                    continue;
                }
                // A newer generation replaces an old connection the publisher gave up on:
                // the old ring gets no more messages. Its reader drains it before it reads
                // the new one (per-publisher order).
                let reason = crate::connection::liveness::closed_reason(&c.info.control);
                c.info.control.close_producer_side();
                core.end(m, p, reason);
            }
            // A malformed or half-gone ring is skipped; the publisher's next attempt or the
            // next scan retries.
            // A live publisher whose record went after our listing is closing (or crashed)
            // now: once its lock is free too, what it published is taken as an orphan ring
            // below (a skip would wait for a scan that nothing may start).
            if live.contains(&p)
                && let Some(record) =
                    discovery::read_record_of(&core.dirs, EndpointKind::Publisher, p)
            {
                let found = discovery::Found { id: p, record };
                let _ = Receiving::open(core, m, &found, path, generation);
                continue;
            }
            // A publisher whose lock is held is alive: between its lock and its record
            // (starting) or its record and its rings (closing). The next scan sees it whole.
            if discovery::is_alive(&core.dirs, EndpointKind::Publisher, p) {
                continue;
            }
            // The publisher connected to us and then closed or crashed before we saw its
            // ring: what it published is still there. Deliver it, then end the connection
            // (the reader drains the ring before it reports the end). Its pid from its
            // record if a dead one's is still there (its files go after this).
            let pid = discovery::read_record_of(&core.dirs, EndpointKind::Publisher, p)
                .map_or(0, |r| r.pid);
            let found = discovery::Found {
                id: p,
                record: discovery::Record::orphan(p, pid),
            };
            if Receiving::open(core, m, &found, path, generation).is_ok()
                && let Some(c) = m.conns.get(&p)
            {
                let reason = departure(&c.info, PeerEnd::Producer);
                core.end(m, p, reason);
            }
        }
        // Forget publishers that left nothing behind (bounded memory over many lifetimes):
        // no record, no ring to us, no connection.
        let known: HashSet<EndpointId> = listing.records(EndpointKind::Publisher).collect();
        m.state.seen.retain(|p, _| {
            known.contains(p) || newest.contains_key(p) || m.conns.contains_key(p)
        });
    }

    fn end(
        core: &Core<Self>,
        m: &mut Maint<Self>,
        id: EndpointId,
        conn: Conn<()>,
        reason: DisconnectReason,
    ) {
        let info = conn.info;
        // The publisher's `Disconnected` comes after its last message: reported now if its
        // ring holds nothing more, else by the receive path once it has delivered everything
        // (`stage` reports the end of a drained ring).
        info.record(reason);
        if info.control.fill() == 0 {
            info.report(&core.events);
        } else {
            m.state.draining.push(Arc::clone(&info));
        }
        // Its side is closed (a departed publisher closed it already; a dead or hung one
        // cannot), so that the reader, after the last complete message, sees the end and
        // reports it.
        // Ours first (the reader ends the ring, and its consumer closes our side, only
        // after it sees the producer side closed): so that a resumed (hung) publisher stops
        // writing and learns why.
        if reason == DisconnectReason::TimedOut {
            info.control.evict();
        } else if reason != DisconnectReason::Closed {
            info.control.close_consumer_side();
        }
        info.control.close_producer_side();
        let _ = sys::unlink_segment(&conn.ring_path);
        remove_payload_if_last(core, id);
        core.role.ring_doorbell();
    }

    fn beat(&self) {
        self.doorbell.beat();
    }

    fn tick(core: &Core<Self>, m: &mut Maint<Self>) {
        // Rings drained since their connection ended: report the end now.
        m.state.draining.retain(|info| {
            if info.is_reported() {
                return false;
            }
            if info.control.fill() == 0 {
                info.report(&core.events);
                // Wake a callback thread waiting for messages or events.
                core.role.ring_doorbell();
                return false;
            }
            true
        });
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Removes the payload segment of `publisher` once it is closing or gone (its record is
/// removed first thing in a close; or its lock is free) and no ring of it is left: the
/// descriptors in its rings name blocks of it (its subscribers mapped it when they opened
/// their rings, so the name is no longer needed). Each subscriber, and the closing publisher,
/// removes its rings before looking, so the last of them to finish sees none.
fn remove_payload_if_last(core: &Core<Receiving>, publisher: EndpointId) {
    let path = segment::payload_path(&core.dirs, publisher);
    let record = discovery::record_path(&core.dirs, EndpointKind::Publisher, publisher);
    if path.exists()
        && (!record.exists() || !discovery::is_alive(&core.dirs, EndpointKind::Publisher, publisher))
        && discovery::rings_of(&core.dirs, EndpointKind::Publisher, publisher).is_empty()
    {
        let _ = sys::unlink_segment(&path);
    }
}
