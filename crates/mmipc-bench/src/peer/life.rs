//! Peers of the rows in `crate::hooks`: connecting, crashing, idling and fanning out to 16
//! subscribers. mmipc endpoints have the builders' default options (only the directory is
//! the measurement's private one); iceoryx2 ports have the harness's configuration.

use std::hint::spin_loop;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use mmipc::{Event, Events, Publisher, Subscriber};

use super::{PeerLine, PeerResult, PeerSpec, Role, say};
use crate::os;
use crate::payload::fill;
use crate::transport::{LinkSpec, SETUP_TIMEOUT, iox2};

/// Sends of the iceoryx2 connect publisher that reach the subscriber before it stops
/// sending (more than one, in case the first is not seen; far fewer than the subscriber's
/// buffer, so a lossless send never blocks on it).
const IOX2_REACHED: u64 = 20;
/// Pause between two sends of the iceoryx2 connect publisher while nobody is reached.
const IOX2_PERIOD: Duration = Duration::from_micros(50);

fn channel(link: &LinkSpec) -> String {
    format!("{}-down", link.name)
}

/// An endpoint with the builders' defaults on the link's channel in its directory: `build`
/// gets the channel name and the directory; `what` names the endpoint in errors.
fn endpoint<T>(
    link: &LinkSpec,
    what: &str,
    build: impl FnOnce(&str, &Path) -> mmipc::Result<T>,
) -> Result<T> {
    let channel = channel(link);
    build(&channel, &link.dir).with_context(|| format!("mmipc {what} on {channel}"))
}

fn publisher(link: &LinkSpec) -> Result<Publisher> {
    endpoint(link, "publisher", |c, dir| {
        Publisher::builder(c).dir(dir).build()
    })
}

fn subscriber(link: &LinkSpec) -> Result<Subscriber> {
    endpoint(link, "subscriber", |c, dir| {
        Subscriber::builder(c).dir(dir).build()
    })
}

/// The one message these peers send: message 0 of the payload pattern.
fn message(size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; size.max(8)];
    fill(&mut buf, 0);
    buf
}

/// Blocks until the harness closes this process's stdin: the measurement is over.
fn wait_for_harness() -> Result<()> {
    let mut rest = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut rest)
        .context("waiting for the harness")?;
    Ok(())
}

fn ready() -> Result<()> {
    say(&PeerLine::Ready {
        info: String::new(),
    })
}

/// The next connection event, waiting at most `timeout`.
fn next_event(events: &Events, timeout: Duration) -> Result<Event> {
    events
        .recv_timeout(timeout)
        .ok_or_else(|| anyhow!("no mmipc event within {timeout:?}"))
}

/// [`Role::ConnectPub`] and [`Role::ConnectSub`] for mmipc.
pub fn connect_mmipc(spec: &PeerSpec) -> Result<()> {
    let link = &spec.link;
    let msg = message(link.size);
    if spec.role == Role::ConnectPub {
        let publisher = publisher(link)?;
        let events = publisher.events();
        ready()?;
        let ns = match next_event(&events, 2 * SETUP_TIMEOUT)? {
            Event::Connected { .. } => os::mono_ns(),
            other => bail!("expected a Connected event, got {other:?}"),
        };
        publisher.publish(&msg).context("mmipc publish")?;
        say(&PeerLine::Done(PeerResult::Stamp { ns }))?;
        wait_for_harness()
    } else {
        let start_ns = os::mono_ns();
        let mut subscriber = subscriber(link)?;
        let got = subscriber
            .recv_timeout(SETUP_TIMEOUT)
            .context("mmipc: waiting for the first message")?;
        let first_ns = os::mono_ns();
        ensure!(
            got.payload() == msg.as_slice(),
            "the first message arrived wrong ({} bytes)",
            got.len()
        );
        say(&PeerLine::Done(PeerResult::Connect { start_ns, first_ns }))
    }
}

/// [`Role::ConnectPub`] and [`Role::ConnectSub`] for iceoryx2: the publisher sends every
/// [`IOX2_PERIOD`] (plus the sleep's overshoot) until a send reaches a subscriber.
pub fn connect_iox2(spec: &PeerSpec) -> Result<()> {
    let link = &spec.link;
    let msg = message(link.size);
    if spec.role == Role::ConnectPub {
        let node = iox2::node()?;
        let service = iox2::data_service(&node, link, "down")?;
        let tx = iox2::publisher(&service, link)?;
        let over = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&over);
        std::thread::spawn(move || {
            let _ = wait_for_harness();
            flag.store(true, Ordering::Release);
        });
        ready()?;
        let mut reached = 0;
        while !over.load(Ordering::Acquire) {
            if reached < IOX2_REACHED {
                let sample = tx
                    .loan_slice_uninit(msg.len())
                    .context("iceoryx2 loan")?
                    .write_from_slice(&msg);
                if sample.send().context("iceoryx2 send")? > 0 {
                    reached += 1;
                }
            }
            std::thread::sleep(if reached == 0 {
                IOX2_PERIOD
            } else {
                Duration::from_millis(1)
            });
        }
        drop(tx);
        drop(service);
        drop(node);
        Ok(())
    } else {
        let start_ns = os::mono_ns();
        let node = iox2::node()?;
        let service = iox2::data_service(&node, link, "down")?;
        let rx = iox2::subscriber(&service, link)?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let first_ns = loop {
            if let Some(sample) = rx.receive().context("iceoryx2 receive")? {
                let first_ns = os::mono_ns();
                ensure!(
                    sample.payload() == msg.as_slice(),
                    "the first sample arrived wrong ({} bytes)",
                    sample.payload().len()
                );
                break first_ns;
            }
            ensure!(
                Instant::now() < deadline,
                "no iceoryx2 sample within {SETUP_TIMEOUT:?}"
            );
            spin_loop();
        };
        say(&PeerLine::Done(PeerResult::Connect { start_ns, first_ns }))?;
        drop(rx);
        drop(service);
        drop(node);
        Ok(())
    }
}

/// Waits for a `Disconnected` event (skipping a late `Connected`) and reports when it came.
fn await_disconnect(events: &Events, limit: Duration) -> Result<()> {
    loop {
        if let Event::Disconnected { reason, .. } = next_event(events, limit)? {
            let ns = os::mono_ns();
            return say(&PeerLine::Done(PeerResult::Disconnected {
                ns,
                reason: format!("{reason:?}"),
            }));
        }
    }
}

/// [`Role::CrashPub`] and [`Role::CrashSub`]: once connected (`accepted`), report the
/// `Disconnected` event; one of the two is killed before that.
pub fn crash(spec: &PeerSpec) -> Result<()> {
    let link = &spec.link;
    let limit = Duration::from_millis(spec.limit_ms);
    if spec.role == Role::CrashPub {
        let publisher = publisher(link)?;
        let events = publisher.events();
        ready()?;
        publisher
            .wait_for_subscribers(1, 2 * SETUP_TIMEOUT)
            .context("mmipc: waiting for the subscriber")?;
        say(&PeerLine::Accepted)?;
        await_disconnect(&events, limit)
    } else {
        let subscriber = subscriber(link)?;
        let events = subscriber.events();
        subscriber
            .wait_for_publishers(1, SETUP_TIMEOUT)
            .context("mmipc: waiting for the publisher")?;
        say(&PeerLine::Accepted)?;
        await_disconnect(&events, limit)
    }
}

/// [`Role::FanPub`] and [`Role::FanSubs`]: one publisher, `receivers` subscribers in one
/// process, one message each; both stay until the harness has read the channel directory.
pub fn fan(spec: &PeerSpec) -> Result<()> {
    let link = &spec.link;
    let msg = message(link.size);
    if spec.role == Role::FanSubs {
        let mut subscribers = (0..link.receivers)
            .map(|_| subscriber(link))
            .collect::<Result<Vec<_>>>()?;
        ready()?;
        for (i, s) in subscribers.iter_mut().enumerate() {
            let got = s
                .recv_timeout(2 * SETUP_TIMEOUT)
                .with_context(|| format!("mmipc subscriber {i}: waiting for the message"))?;
            ensure!(
                got.payload() == msg.as_slice(),
                "subscriber {i}: wrong message"
            );
        }
        say(&PeerLine::Done(PeerResult::Count {
            messages: subscribers.len() as u64,
        }))?;
        wait_for_harness()
    } else {
        let publisher = publisher(link)?;
        publisher
            .wait_for_subscribers(link.receivers, SETUP_TIMEOUT)
            .context("mmipc: waiting for the subscribers")?;
        publisher.publish(&msg).context("mmipc publish")?;
        say(&PeerLine::Done(PeerResult::Memory {
            count: 1,
            sum: 0,
            mem: os::mem_use()?,
            segments: Vec::new(),
        }))?;
        wait_for_harness()
    }
}

/// [`Role::IdlePub`] and [`Role::IdleSub`]: once connected, the CPU time each process uses
/// over `measure_ms` with nothing sent (the subscriber blocked in `recv_timeout`).
pub fn idle(spec: &PeerSpec) -> Result<()> {
    let link = &spec.link;
    let idle = Duration::from_millis(spec.measure_ms);
    if spec.role == Role::IdlePub {
        let publisher = publisher(link)?;
        ready()?;
        publisher
            .wait_for_subscribers(1, 2 * SETUP_TIMEOUT)
            .context("mmipc: waiting for the subscriber")?;
        say(&PeerLine::Accepted)?;
        let (cpu, start) = (os::cpu_ns(), Instant::now());
        std::thread::sleep(idle);
        let result = PeerResult::Idle {
            cpu_ns: os::cpu_ns() - cpu,
            wall_ns: start.elapsed().as_nanos() as u64,
        };
        say(&PeerLine::Done(result))?;
        wait_for_harness()
    } else {
        let mut subscriber = subscriber(link)?;
        subscriber
            .wait_for_publishers(1, SETUP_TIMEOUT)
            .context("mmipc: waiting for the publisher")?;
        say(&PeerLine::Accepted)?;
        let (cpu, start) = (os::cpu_ns(), Instant::now());
        if link.mech == crate::transport::Mech::MmipcAsync {
            // Waiting in `recv_async` on a current-thread runtime (made before the clock
            // starts), bounded by a tokio timer.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            let (cpu0, start0) = (os::cpu_ns(), Instant::now());
            let waited =
                rt.block_on(async { tokio::time::timeout(idle, subscriber.recv_async()).await });
            if let Ok(m) = waited {
                bail!("a message of {} bytes arrived, none was sent", m.len());
            }
            let result = PeerResult::Idle {
                cpu_ns: os::cpu_ns() - cpu0,
                wall_ns: start0.elapsed().as_nanos() as u64,
            };
            return say(&PeerLine::Done(result));
        }
        match subscriber.recv_timeout(idle) {
            Err(mmipc::RecvTimeoutError) => {}
            Ok(m) => bail!("a message of {} bytes arrived, none was sent", m.len()),
        }
        let result = PeerResult::Idle {
            cpu_ns: os::cpu_ns() - cpu,
            wall_ns: start.elapsed().as_nanos() as u64,
        };
        say(&PeerLine::Done(result))
    }
}
