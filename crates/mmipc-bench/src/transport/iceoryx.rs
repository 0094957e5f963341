//! iceoryx2 publish-subscribe over `[u8]` slices, optionally woken through an event service.
//!
//! Services `mmipc-bench/<name>/down` (initiator → responders) and `.../up` (responder →
//! initiator, ping-pong only), each with an event service beside it for [`Mech::Iox2Event`].
//! The responder creates the services, the initiator opens them.
//!
//! Configuration, chosen so that nothing is ever lost and a sender never fails to loan:
//!
//! * `enable_safe_overflow(false)` with `BackpressureStrategy::RetryUntilDelivered`: a
//!   publisher whose subscriber's buffer is full retries until there is room (lossless, like
//!   mmipc's `OnFull::Block`), instead of overwriting the oldest sample (the default);
//! * subscriber buffer of [`buffer_len`] samples (the service's maximum and the
//!   subscriber's setting alike), `history_size(0)`, 1 publisher, as many subscribers as
//!   receivers; publishers preallocate for that worst case (iceoryx2's default sizing);
//! * `initial_max_slice_len` = the payload size, static allocation;
//! * every `send` must report as many recipients as there are receivers, and every `notify`
//!   as many listeners, else the run fails.
//!
//! # Why an `iox2-event` receiver never blocks without a timeout
//!
//! iceoryx2 0.10's `Listener::blocking_wait` can sleep for good although `notify` was called
//! after the sample it announces. The IPC event (`iceoryx2-cal` 0.10, `event/common.rs` with
//! the Unix datagram trigger) keeps a per-listener state IDLE / PENDING / NOTIFIED in shared
//! memory. `notify` sets the event bit, moves IDLE → PENDING, sends a datagram, then moves
//! PENDING → NOTIFIED; while the state is NOTIFIED it sends nothing. A wait takes NOTIFIED →
//! IDLE and returns at once; otherwise it blocks in `recvfrom` and stores IDLE once woken;
//! either way it then reads one datagram (`empty_buffer`) and the event bits. The race:
//!
//! 1. the listener sets IDLE (at the start of a wait, or after waking);
//! 2. the notifier moves IDLE → PENDING and sends datagram D, then is held up (preempted)
//!    before PENDING → NOTIFIED;
//! 3. the listener's `empty_buffer` reads D; it returns, takes every sample, finds none and
//!    waits again: the state is PENDING, not NOTIFIED, so it blocks in `recvfrom` on an
//!    empty socket;
//! 4. the notifier moves PENDING → NOTIFIED. From now on every `notify` sees NOTIFIED and
//!    sends nothing, and only a datagram would end the listener's wait.
//!
//! The receiver then sleeps for good, and the sender either retries in `send` for ever
//! (`RetryUntilDelivered`) once that subscriber's buffer is full ("iox2-event Send peer did
//! not answer in time"), or has sent its end marker and reported while the receiver never
//! reads it ("Receive peer 1 did not answer in time", the receiver asleep in `recvfrom`,
//! kernel `__skb_wait_for_more_packets`). It needs the notifier held up for some microseconds
//! right after its `sendto`, so it is rare: on two shared cores, 1 hang in 60 `iox2-event`
//! fan-out measurements (and, with 100 ms timed waits, 1 wait in 120 measurements that ended
//! by its timeout with a sample waiting); with spin delays added inside iceoryx2 at steps 2
//! and 3, 5 hangs in 8. iceoryx2's main branch (August 2026) has the same code.
//!
//! So a receiver waits in slices of [`WAIT_SLICE`] (`timed_wait`) and looks for samples after
//! each. A wake-up costs the same system calls as with `blocking_wait` (both set a receive
//! timeout on the socket first); a lost one costs one slice, since a wait that times out
//! stores IDLE, and the next `notify` sends a datagram again.

use std::collections::HashSet;
use std::hint::spin_loop;
use std::mem::MaybeUninit;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::update_connections::UpdateConnections as _;
use iceoryx2::prelude::{
    BackpressureStrategy, Node, NodeBuilder, ServiceName, SignalHandlingMode, ipc,
};
use iceoryx2::sample::Sample;
use iceoryx2::sample_mut::SampleMut;
use iceoryx2::service::port_factory::PortFactory as _;
use iceoryx2::service::port_factory::event::PortFactory as EventFactory;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;

use super::{LinkSpec, Mech, Transport, poll_until};
use crate::payload::STOP;

/// The iceoryx2 release this crate is built against (keep in step with Cargo.toml).
pub const ICEORYX2_VERSION: &str = "0.10.0";

/// The iceoryx2 service flavour: between processes.
pub(crate) type Svc = ipc::Service;
/// A publish-subscribe service of byte slices.
pub(crate) type Data = PubSubFactory<Svc, [u8], ()>;

/// Longest sleep of an `iox2-event` receiver before it looks for samples again, in case
/// iceoryx2 lost the notification (see the module documentation).
pub const WAIT_SLICE: Duration = Duration::from_millis(1);

/// Samples a subscriber can hold unread: up to 16 MiB of payload, between 16 and 1024.
pub fn buffer_len(size: usize) -> usize {
    ((16 << 20) / size.max(1)).clamp(16, 1024)
}

/// One end of an iceoryx2 link. Fields drop in order: ports, then services, then the node.
pub struct Iox2Link {
    tx: Option<Publisher<Svc, [u8], ()>>,
    rx: Option<Subscriber<Svc, [u8], ()>>,
    notifier: Option<Notifier<Svc>>,
    listener: Option<Listener<Svc>>,
    /// Receivers every send must reach.
    recipients: usize,
    /// Messages sent so far.
    sent: u64,
    /// Send by writing in place in the loan ([`Mech::loans`]).
    loans: bool,
    /// Addresses of the publisher's sample slots written whole once (see
    /// [`Iox2Link::send_in_place`]).
    initialised: HashSet<usize>,
    down: Data,
    up: Option<Data>,
    /// Kept open for the listener or notifier on it.
    down_event: Option<EventFactory<Svc>>,
    up_event: Option<EventFactory<Svc>>,
    /// Kept for the services and ports created from it.
    _node: Node<Svc>,
}

fn service_name(spec: &LinkSpec, what: &str) -> Result<ServiceName> {
    let name = format!("mmipc-bench/{}/{what}", spec.name);
    ServiceName::new(&name).with_context(|| format!("iceoryx2 service name {name:?}"))
}

/// A node for this process, signal handling left to the process.
pub(crate) fn node() -> Result<Node<Svc>> {
    NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()
        .context("iceoryx2 node")
}

/// Opens or creates the publish-subscribe service `what` (`down`, `up`) of the link.
pub(crate) fn data_service(node: &Node<Svc>, spec: &LinkSpec, what: &str) -> Result<Data> {
    let subscribers = if what == "down" { spec.receivers } else { 1 };
    let buffer = buffer_len(spec.max_frame());
    node.service_builder(&service_name(spec, what)?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(subscribers)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .enable_safe_overflow(false)
        .open_or_create()
        .with_context(|| format!("iceoryx2 publish-subscribe service {what}"))
}

/// Opens or creates the event service `what` (`down`, `up`) of the link, if the mechanism
/// has events.
fn event_service(
    events: bool,
    node: &Node<Svc>,
    spec: &LinkSpec,
    what: &str,
) -> Result<Option<EventFactory<Svc>>> {
    if !events {
        return Ok(None);
    }
    let listeners = if what == "down" { spec.receivers } else { 1 };
    node.service_builder(&service_name(spec, &format!("{what}-event"))?)
        .event()
        .max_notifiers(1)
        .max_listeners(listeners)
        .open_or_create()
        .with_context(|| format!("iceoryx2 event service {what}"))
        .map(Some)
}

/// A listener on the event service, if there is one.
fn listener(events: Option<&EventFactory<Svc>>) -> Result<Option<Listener<Svc>>> {
    events
        .map(|ev| ev.listener_builder().create().context("iceoryx2 listener"))
        .transpose()
}

/// A notifier on the event service, if there is one.
fn notifier(events: Option<&EventFactory<Svc>>) -> Result<Option<Notifier<Svc>>> {
    events
        .map(|ev| ev.notifier_builder().create().context("iceoryx2 notifier"))
        .transpose()
}

/// A publisher with the harness's configuration (lossless backpressure).
pub(crate) fn publisher(service: &Data, spec: &LinkSpec) -> Result<Publisher<Svc, [u8], ()>> {
    service
        .publisher_builder()
        .initial_max_slice_len(spec.max_frame())
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .context("iceoryx2 publisher")
}

/// A subscriber with the harness's buffer size.
pub(crate) fn subscriber(service: &Data, spec: &LinkSpec) -> Result<Subscriber<Svc, [u8], ()>> {
    service
        .subscriber_builder()
        .buffer_size(buffer_len(spec.max_frame()))
        .create()
        .context("iceoryx2 subscriber")
}

fn events(spec: &LinkSpec) -> Result<bool> {
    match spec.mech {
        Mech::Iox2Poll | Mech::Iox2LoanPoll => Ok(false),
        Mech::Iox2Event | Mech::Iox2LoanEvent => Ok(true),
        other => bail!("{} is not an iceoryx2 mechanism", other.id()),
    }
}

impl Iox2Link {
    /// The link's services (`up` only for ping-pong) without ports; sends must reach
    /// `recipients` subscribers.
    fn services(spec: &LinkSpec, recipients: usize) -> Result<Iox2Link> {
        let events = events(spec)?;
        let node = node()?;
        let down = data_service(&node, spec, "down")?;
        let down_event = event_service(events, &node, spec, "down")?;
        let (up, up_event) = match spec.two_way() {
            true => (
                Some(data_service(&node, spec, "up")?),
                event_service(events, &node, spec, "up")?,
            ),
            false => (None, None),
        };
        Ok(Iox2Link {
            tx: None,
            rx: None,
            notifier: None,
            listener: None,
            recipients,
            sent: 0,
            loans: spec.mech.loans(),
            initialised: HashSet::new(),
            down,
            up,
            down_event,
            up_event,
            _node: node,
        })
    }

    /// The next sample: polled in a busy loop ([`Mech::Iox2Poll`]), or (for
    /// [`Mech::Iox2Event`]) looked for again after every return of the listener's wait,
    /// which never sleeps longer than [`WAIT_SLICE`]: iceoryx2 can lose the wake-up (see the
    /// module documentation).
    fn next_sample(&self) -> Result<Sample<Svc, [u8], ()>> {
        let rx = self
            .rx
            .as_ref()
            .context("this end of the link does not receive")?;
        loop {
            if let Some(sample) = rx.receive().context("iceoryx2 receive")? {
                return Ok(sample);
            }
            match &self.listener {
                // Notifications that arrived meanwhile make this return at once.
                Some(listener) => {
                    listener
                        .timed_wait(|_| {}, WAIT_SLICE)
                        .context("iceoryx2 listener wait")?;
                }
                None => spin_loop(),
            }
        }
    }

    /// Sends a `len`-byte message written by `write` in place in the loaned sample. A slot
    /// is zeroed whole the first time it is lent (so that every byte is initialised before
    /// `assume_init`); later loans of it hold what its previous message left, and `write`
    /// writes what it needs, as into the sender's own buffer of the copying variants.
    fn send_in_place(&mut self, len: usize, write: impl FnOnce(&mut [u8])) -> Result<()> {
        let tx = self
            .tx
            .as_ref()
            .context("this end of the link does not send")?;
        let mut sample = tx.loan_slice_uninit(len).context("iceoryx2 loan")?;
        let payload: &mut [MaybeUninit<u8>] = sample.payload_mut();
        ensure!(
            payload.len() == len,
            "iceoryx2 lent {} bytes",
            payload.len()
        );
        if self.initialised.insert(payload.as_ptr() as usize) {
            payload.fill(MaybeUninit::new(0));
        }
        // SAFETY: every byte of this slot was initialised, above or when it was first lent
        // (the slot stays mapped at this address and iceoryx2 never de-initialises it;
        // subscribers only read it); `MaybeUninit<u8>` and `u8` have the same layout.
        let bytes = unsafe { &mut *(std::ptr::from_mut(payload) as *mut [u8]) };
        write(bytes);
        // SAFETY: as above, every byte is initialised.
        let sample = unsafe { sample.assume_init() };
        self.finish_send(sample)
    }

    fn send_copy(&mut self, msg: &[u8]) -> Result<()> {
        let tx = self
            .tx
            .as_ref()
            .context("this end of the link does not send")?;
        let sample = tx
            .loan_slice_uninit(msg.len())
            .context("iceoryx2 loan")?
            .write_from_slice(msg);
        self.finish_send(sample)
    }

    /// Sends a filled sample; checks that it reached every receiver, and notifies them
    /// ([`Mech::Iox2Event`], [`Mech::Iox2LoanEvent`]).
    fn finish_send(&mut self, sample: SampleMut<Svc, [u8], ()>) -> Result<()> {
        let reached = sample.send().context("iceoryx2 send")?;
        ensure!(
            reached == self.recipients,
            "iceoryx2 send of message {} reached {reached} subscribers, expected {}",
            self.sent,
            self.recipients
        );
        self.sent += 1;
        if let Some(notifier) = &self.notifier {
            let woken = notifier.notify().context("iceoryx2 notify")?;
            ensure!(
                woken == self.recipients,
                "iceoryx2 notify reached {woken} listeners, expected {}",
                self.recipients
            );
        }
        Ok(())
    }
}

impl Transport for Iox2Link {
    type Pending = Iox2Link;

    fn listen(spec: &LinkSpec) -> Result<(Iox2Link, String)> {
        let mut link = Iox2Link::services(spec, 1)?;
        link.rx = Some(subscriber(&link.down, spec)?);
        link.listener = listener(link.down_event.as_ref())?;
        if let Some(up) = &link.up {
            link.tx = Some(publisher(up, spec)?);
        }
        link.notifier = notifier(link.up_event.as_ref())?;
        Ok((link, String::new()))
    }

    fn accept(link: Iox2Link, _spec: &LinkSpec) -> Result<Iox2Link> {
        poll_until("the initiator's iceoryx2 publisher", || {
            Ok(link.down.dynamic_config().number_of_publishers() >= 1)
        })?;
        // Attach to the publisher's connection now: a publisher whose subscriber has not
        // attached yet drops samples once the buffer is full, whatever the backpressure
        // strategy (iceoryx2 avoids a deadlock on the sender side).
        if let Some(rx) = &link.rx {
            rx.update_connections()
                .context("iceoryx2 subscriber: connecting to the publisher")?;
        }
        if let Some(up) = &link.up {
            poll_until("the initiator's iceoryx2 subscriber", || {
                Ok(up.dynamic_config().number_of_subscribers() >= 1)
            })?;
        }
        if let Some(up_event) = &link.up_event {
            poll_until("the initiator's iceoryx2 listener", || {
                Ok(up_event.dynamic_config().number_of_listeners() >= 1)
            })?;
        }
        Ok(link)
    }

    fn connect(spec: &LinkSpec, peers: &[String]) -> Result<Iox2Link> {
        let mut link = Iox2Link::services(spec, peers.len())?;
        link.tx = Some(publisher(&link.down, spec)?);
        poll_until("the responders' iceoryx2 subscribers", || {
            Ok(link.down.dynamic_config().number_of_subscribers() >= peers.len())
        })?;
        link.notifier = notifier(link.down_event.as_ref())?;
        if let Some(ev) = &link.down_event {
            poll_until("the responders' iceoryx2 listeners", || {
                Ok(ev.dynamic_config().number_of_listeners() >= peers.len())
            })?;
        }
        if let Some(up) = &link.up {
            let rx = subscriber(up, spec)?;
            poll_until("the responder's iceoryx2 publisher", || {
                Ok(up.dynamic_config().number_of_publishers() >= 1)
            })?;
            rx.update_connections()
                .context("iceoryx2 subscriber: connecting to the publisher")?;
            link.rx = Some(rx);
        }
        link.listener = listener(link.up_event.as_ref())?;
        Ok(link)
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_copy(msg)
    }

    fn send_with(&mut self, scratch: &mut [u8], write: impl FnOnce(&mut [u8])) -> Result<()> {
        if self.loans {
            return self.send_in_place(scratch.len(), write);
        }
        write(scratch);
        self.send_copy(scratch)
    }

    fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let sample = self.next_sample()?;
        Ok(f(sample.payload()))
    }

    fn echo(&mut self) -> Result<bool> {
        let sample = self.next_sample()?;
        if sample.payload() == STOP {
            return Ok(false);
        }
        self.send_copy(sample.payload())?;
        Ok(true)
    }
}
