//! mmipc through its public pub/sub API: a `Publisher` on one channel, a `Subscriber` on the
//! other, in a private directory.
//!
//! The channel `<name>-down` carries initiator → responders, `<name>-up` responder →
//! initiator (ping-pong only). Both sides use the wait strategy of the mechanism (the
//! subscriber's for receiving, the publisher's for a full ring); rings have the capacity the
//! harness chose for the row ([`crate::rows::mmipc_ring_for`] the message size, unless
//! `--mmipc-ring-capacity` forces one; the library's default where the spec says none) and
//! `OnFull::Block`, so nothing is dropped.
//!
//! The large-message variants: [`Mech::MmipcLoan`] writes each message in place in a
//! `Publisher::loan` and reads it in place (`recv_ref`); [`Mech::MmipcInline`] and
//! [`Mech::MmipcPayload`] set the publisher's `payload_threshold` to `usize::MAX` (every
//! message copied into each ring) or 0 (every message written once into the payload
//! segment). The others keep the library's default threshold.

use anyhow::{Context, Result};
use mmipc::{Publisher, Subscriber, WaitStrategy};

use super::{LinkSpec, Mech, SETUP_TIMEOUT, Transport, half};
use crate::payload::STOP;

/// One end of an mmipc link.
pub struct MmipcLink {
    tx: Option<Publisher>,
    rx: Option<Subscriber>,
    /// Send through loans and receive with `recv_ref` ([`Mech::loans`]).
    loans: bool,
}

pub(super) fn strategy(mech: Mech) -> Result<WaitStrategy> {
    mech.wait_strategy()
        .with_context(|| format!("{} is not an mmipc mechanism", mech.id()))
}

pub(super) fn publisher(spec: &LinkSpec, channel: &str) -> Result<Publisher> {
    let mut builder = Publisher::builder(channel);
    if let Some(bytes) = spec.mmipc_ring {
        builder = builder.ring_capacity(bytes);
    }
    if let Some(bytes) = spec.mech.payload_threshold() {
        builder = builder.payload_threshold(bytes);
    }
    builder = builder.payload_capacity(payload_capacity(spec.size, spec.receivers));
    builder
        .dir(&spec.dir)
        .wait_strategy(strategy(spec.mech)?)
        .build()
        .with_context(|| format!("mmipc publisher on {channel}"))
}

/// The payload segment a user sending `size`-byte messages to `receivers` subscribers would
/// configure: room for each subscriber to hold 16 of them (its share is a
/// `1 / (subscribers + 1)` of the segment), as many as the iceoryx2 columns' subscriber
/// buffers; the library's default (64 MiB) when that is more.
pub(super) fn payload_capacity(size: usize, receivers: usize) -> usize {
    (16 * size * (receivers + 1)).max(mmipc::DEFAULT_PAYLOAD_CAPACITY)
}

pub(super) fn subscriber(spec: &LinkSpec, channel: &str) -> Result<Subscriber> {
    Subscriber::builder(channel)
        .dir(&spec.dir)
        .wait_strategy(strategy(spec.mech)?)
        .build()
        .with_context(|| format!("mmipc subscriber on {channel}"))
}

pub(super) fn down(spec: &LinkSpec) -> String {
    format!("{}-down", spec.name)
}

pub(super) fn up(spec: &LinkSpec) -> String {
    format!("{}-up", spec.name)
}

impl Transport for MmipcLink {
    type Pending = MmipcLink;

    fn listen(spec: &LinkSpec) -> Result<(MmipcLink, String)> {
        let rx = subscriber(spec, &down(spec))?;
        let tx = match spec.two_way() {
            true => Some(publisher(spec, &up(spec))?),
            false => None,
        };
        let link = MmipcLink {
            tx,
            rx: Some(rx),
            loans: spec.mech.loans(),
        };
        Ok((link, String::new()))
    }

    fn accept(link: MmipcLink, _spec: &LinkSpec) -> Result<MmipcLink> {
        if let Some(rx) = &link.rx {
            rx.wait_for_publishers(1, SETUP_TIMEOUT)
                .context("mmipc: waiting for the initiator's publisher")?;
        }
        if let Some(tx) = &link.tx {
            tx.wait_for_subscribers(1, SETUP_TIMEOUT)
                .context("mmipc: waiting for the initiator's subscriber")?;
        }
        Ok(link)
    }

    fn connect(spec: &LinkSpec, peers: &[String]) -> Result<MmipcLink> {
        let tx = publisher(spec, &down(spec))?;
        let rx = match spec.two_way() {
            true => Some(subscriber(spec, &up(spec))?),
            false => None,
        };
        tx.wait_for_subscribers(peers.len(), SETUP_TIMEOUT)
            .context("mmipc: waiting for the responders' subscribers")?;
        if let Some(rx) = &rx {
            rx.wait_for_publishers(1, SETUP_TIMEOUT)
                .context("mmipc: waiting for the responder's publisher")?;
        }
        Ok(MmipcLink {
            tx: Some(tx),
            rx,
            loans: spec.mech.loans(),
        })
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        half(&mut self.tx, "send")?
            .publish(msg)
            .context("mmipc publish")
    }

    fn send_with(&mut self, scratch: &mut [u8], write: impl FnOnce(&mut [u8])) -> Result<()> {
        if !self.loans {
            write(scratch);
            return self.send(scratch);
        }
        let mut loan = half(&mut self.tx, "send")?
            .loan(scratch.len())
            .context("mmipc loan")?;
        write(&mut loan);
        loan.send().context("mmipc send of a loan")
    }

    fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let rx = half(&mut self.rx, "receive")?;
        if self.loans {
            let msg = rx.recv_ref();
            return Ok(f(&msg));
        }
        let msg = rx.recv();
        Ok(f(msg.payload()))
    }

    fn echo(&mut self) -> Result<bool> {
        let msg = half(&mut self.rx, "receive")?.recv();
        if msg.payload() == STOP {
            return Ok(false);
        }
        half(&mut self.tx, "send")?
            .publish(msg.payload())
            .context("mmipc publish")?;
        Ok(true)
    }
}
