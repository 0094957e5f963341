//! mmipc's ring alone (`mmipc::ring`), without the pub/sub layer: what the `ring` command
//! measures, the ring's own latency and throughput beside a Unix domain socket.
//!
//! The responder creates the rings in the measurement's directory, `<name>-down.ring`
//! (initiator → responder) and, for ping-pong, `<name>-up.ring`, with the capacity of
//! [`LinkSpec::mmipc_ring`]; the initiator opens them and writes an empty hello, which the
//! responder's `accept` waits for. Sends are `Producer::write` (one copy in); receives read
//! in place (`read_in_place`, no copy); the echo copies the message from one ring into a
//! `reserve`d slot of the other. Both sides use the mechanism's wait strategy, or
//! `SpinThenPark` with [`LinkSpec::spin_window_ns`] when set.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use mmipc::WaitStrategy;
use mmipc::ring::{Consumer, Producer, RingSegment};

use super::{LinkSpec, SETUP_TIMEOUT, Transport, half};
use crate::payload::STOP;

/// One end of a link made of one or two rings.
pub struct RingLink {
    tx: Option<Producer>,
    rx: Option<Consumer>,
}

fn path(spec: &LinkSpec, what: &str) -> PathBuf {
    spec.dir.join(format!("{}-{what}.ring", spec.name))
}

fn strategy(spec: &LinkSpec) -> Result<WaitStrategy> {
    match spec.spin_window_ns {
        Some(ns) => Ok(WaitStrategy::SpinThenPark(Duration::from_nanos(ns))),
        None => spec
            .mech
            .wait_strategy()
            .with_context(|| format!("{} is not an mmipc mechanism", spec.mech.id())),
    }
}

fn create(spec: &LinkSpec, what: &str) -> Result<RingSegment> {
    let capacity = spec.mmipc_ring.unwrap_or(::mmipc::DEFAULT_RING_CAPACITY);
    let path = path(spec, what);
    RingSegment::create(&path, capacity).with_context(|| format!("create {}", path.display()))
}

fn open(spec: &LinkSpec, what: &str) -> Result<RingSegment> {
    let path = path(spec, what);
    RingSegment::open(&path).with_context(|| format!("open {}", path.display()))
}

impl RingLink {
    fn new(tx: Option<Producer>, rx: Option<Consumer>, spec: &LinkSpec) -> Result<RingLink> {
        let mut link = RingLink { tx, rx };
        let wait = strategy(spec)?;
        if let Some(tx) = &mut link.tx {
            tx.set_wait_strategy(wait);
        }
        if let Some(rx) = &mut link.rx {
            rx.set_wait_strategy(wait);
        }
        Ok(link)
    }
}

impl Transport for RingLink {
    type Pending = RingLink;

    fn listen(spec: &LinkSpec) -> Result<(RingLink, String)> {
        let rx = create(spec, "down")?.into_consumer();
        let tx = match spec.two_way() {
            true => Some(create(spec, "up")?.into_producer()),
            false => None,
        };
        Ok((RingLink::new(tx, Some(rx), spec)?, String::new()))
    }

    fn accept(mut link: RingLink, _spec: &LinkSpec) -> Result<RingLink> {
        let hello = half(&mut link.rx, "receive")?
            .read_in_place(Some(Instant::now() + SETUP_TIMEOUT))
            .context("ring: waiting for the initiator's hello")?;
        ensure!(hello.is_empty(), "ring: hello of {} bytes", hello.len());
        drop(hello);
        Ok(link)
    }

    fn connect(spec: &LinkSpec, _peers: &[String]) -> Result<RingLink> {
        let tx = open(spec, "down")?.into_producer();
        let rx = match spec.two_way() {
            true => Some(open(spec, "up")?.into_consumer()),
            false => None,
        };
        let mut link = RingLink::new(Some(tx), rx, spec)?;
        half(&mut link.tx, "send")?
            .write(&[])
            .context("ring: hello")?;
        Ok(link)
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        half(&mut self.tx, "send")?.write(msg).context("ring write")
    }

    fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let msg = half(&mut self.rx, "receive")?
            .read_in_place(None)
            .context("ring read")?;
        Ok(f(&msg))
    }

    fn echo(&mut self) -> Result<bool> {
        let (Some(rx), Some(tx)) = (&mut self.rx, &mut self.tx) else {
            anyhow::bail!("an echo needs both rings");
        };
        let msg = rx.read_in_place(None).context("ring read")?;
        if *msg == *STOP {
            return Ok(false);
        }
        let mut out = tx.reserve(msg.len(), None).context("ring reserve")?;
        out.copy_from_slice(&msg);
        out.commit().context("ring commit")?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Mech, Pattern};

    #[test]
    fn a_ring_link_echoes_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LinkSpec {
            mech: Mech::RingSpin,
            pattern: Pattern::PingPong,
            size: 64,
            receivers: 1,
            dir: dir.path().to_path_buf(),
            name: "t".into(),
            index: 0,
            mmipc_ring: Some(64 << 10),
            spin_window_ns: Some(1_000),
        };
        let (pending, info) = RingLink::listen(&spec).unwrap();
        assert!(info.is_empty());
        let mut init = RingLink::connect(&spec, &[info]).unwrap();
        let mut resp = RingLink::accept(pending, &spec).unwrap();
        init.send(b"hello ring").unwrap();
        assert!(resp.echo().unwrap());
        assert_eq!(init.recv(|m| m.to_vec()).unwrap(), b"hello ring");
        init.send(STOP).unwrap();
        assert!(!resp.echo().unwrap());
    }
}
