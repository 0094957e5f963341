//! Async transports on tokio: mmipc's async API (`recv_async`, which copies like the sync
//! column's `recv()`, and `publish_async`; the default wait strategy) and tokio's own `UnixStream` (u32 length prefix, as [`Uds`]).
//!
//! Each process has one current-thread runtime, and each `send` and `recv` awaits the async
//! call the way a task that is already running does ([`run`]): the future is polled once,
//! and only if it is not ready does the thread wait in the runtime (`block_on`: reactor,
//! timers, wake-up). So a busy receiver costs what the future costs, not a runtime entry per
//! message, which the harness's message-at-a-time loop would otherwise add and which a
//! long-running task does not pay. Both columns are measured the same way.
//!
//! [`Uds`]: super::Uds

use std::future::Future;
use std::task::{Context, Poll, Waker};

use anyhow::{Context as _, Result, ensure};
use mmipc::{Publisher, Subscriber};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::runtime::Runtime;

use super::mmipc_pubsub::{down, publisher, subscriber, up};
use super::{LinkSpec, SETUP_TIMEOUT, Transport, half};
use crate::payload::STOP;

/// Completes `fut` as a running task would await it: one poll in the runtime's context
/// (with a waker that does nothing: a ready future needs no wake-up), then, if it is not
/// ready, `block_on`, which polls it again with a real waker and waits in the reactor.
fn run<F: Future>(rt: &Runtime, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    {
        let _context = rt.enter();
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    rt.block_on(fut)
}

fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// One end of an mmipc link used through its async API.
pub struct MmipcAsync {
    rt: Runtime,
    tx: Option<Publisher>,
    rx: Option<Subscriber>,
}

impl Transport for MmipcAsync {
    type Pending = MmipcAsync;

    fn listen(spec: &LinkSpec) -> Result<(MmipcAsync, String)> {
        let rx = subscriber(spec, &down(spec))?;
        let tx = match spec.two_way() {
            true => Some(publisher(spec, &up(spec))?),
            false => None,
        };
        let link = MmipcAsync {
            rt: runtime()?,
            tx,
            rx: Some(rx),
        };
        Ok((link, String::new()))
    }

    fn accept(link: MmipcAsync, _spec: &LinkSpec) -> Result<MmipcAsync> {
        link.rt.block_on(async {
            if let Some(rx) = &link.rx {
                rx.wait_for_publishers_async(1, SETUP_TIMEOUT)
                    .await
                    .context("mmipc: waiting for the initiator's publisher")?;
            }
            if let Some(tx) = &link.tx {
                tx.wait_for_subscribers_async(1, SETUP_TIMEOUT)
                    .await
                    .context("mmipc: waiting for the initiator's subscriber")?;
            }
            anyhow::Ok(())
        })?;
        Ok(link)
    }

    fn connect(spec: &LinkSpec, peers: &[String]) -> Result<MmipcAsync> {
        let rt = runtime()?;
        let tx = publisher(spec, &down(spec))?;
        let rx = match spec.two_way() {
            true => Some(subscriber(spec, &up(spec))?),
            false => None,
        };
        rt.block_on(async {
            tx.wait_for_subscribers_async(peers.len(), SETUP_TIMEOUT)
                .await
                .context("mmipc: waiting for the responders' subscribers")?;
            if let Some(rx) = &rx {
                rx.wait_for_publishers_async(1, SETUP_TIMEOUT)
                    .await
                    .context("mmipc: waiting for the responder's publisher")?;
            }
            anyhow::Ok(())
        })?;
        Ok(MmipcAsync {
            rt,
            tx: Some(tx),
            rx,
        })
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let tx = half(&mut self.tx, "send")?;
        run(&self.rt, tx.publish_async(msg)).context("mmipc publish_async")
    }

    fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let rx = half(&mut self.rx, "receive")?;
        // Copying, as the sync column's `recv()`.
        let msg = run(&self.rt, rx.recv_async());
        Ok(f(msg.payload()))
    }

    fn echo(&mut self) -> Result<bool> {
        let (rx, tx) = (&mut self.rx, &mut self.tx);
        let rx = half(rx, "receive")?;
        let tx = half(tx, "send")?;
        run(&self.rt, async {
            let msg = rx.recv_ref_async().await;
            if msg.payload() == STOP {
                return Ok(false);
            }
            tx.publish_async(msg.payload())
                .await
                .context("mmipc publish_async")?;
            Ok(true)
        })
    }
}

/// tokio's `UnixStream`; the responder listens on `<dir>/<name>-<index>.sock`.
pub struct TokioUds {
    rt: Runtime,
    reader: Option<BufReader<OwnedReadHalf>>,
    writers: Vec<OwnedWriteHalf>,
    frame: Vec<u8>,
    buf: Vec<u8>,
    max: usize,
}

const READ_BUFFER: usize = 256 << 10;

impl TokioUds {
    fn new(rt: Runtime, streams: Vec<UnixStream>, read: bool, spec: &LinkSpec) -> TokioUds {
        let mut reader = None;
        let mut writers = Vec::new();
        for (i, s) in streams.into_iter().enumerate() {
            let (r, w) = s.into_split();
            if read && i == 0 {
                reader = Some(BufReader::with_capacity(READ_BUFFER, r));
            }
            writers.push(w);
        }
        TokioUds {
            rt,
            reader,
            writers,
            frame: Vec::new(),
            buf: Vec::with_capacity(spec.max_frame()),
            max: spec.max_frame(),
        }
    }

    async fn write(writers: &mut [OwnedWriteHalf], frame: &mut Vec<u8>, msg: &[u8]) -> Result<()> {
        let len = u32::try_from(msg.len()).context("message longer than 4 GiB")?;
        frame.clear();
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(msg);
        for w in writers {
            w.write_all(frame).await.context("write")?;
        }
        Ok(())
    }

    async fn read(
        reader: &mut Option<BufReader<OwnedReadHalf>>,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> Result<()> {
        let reader = reader
            .as_mut()
            .context("this end of the link does not receive")?;
        let len = reader.read_u32_le().await.context("read")? as usize;
        ensure!(len <= max, "frame of {len} bytes, at most {max} expected");
        buf.resize(len, 0);
        reader.read_exact(buf).await.context("read")?;
        Ok(())
    }
}

fn socket_path(spec: &LinkSpec, index: usize) -> std::path::PathBuf {
    spec.dir.join(format!("{}-{index}.sock", spec.name))
}

impl Transport for TokioUds {
    type Pending = std::os::unix::net::UnixListener;

    fn listen(spec: &LinkSpec) -> Result<(Self::Pending, String)> {
        let path = socket_path(spec, spec.index);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("bind {}", path.display()))?;
        Ok((listener, String::new()))
    }

    fn accept(listener: Self::Pending, spec: &LinkSpec) -> Result<TokioUds> {
        let (stream, _) = listener.accept().context("accept")?;
        stream.set_nonblocking(true).context("non-blocking")?;
        let rt = runtime()?;
        let stream = {
            let _enter = rt.enter();
            UnixStream::from_std(stream).context("register socket")?
        };
        Ok(TokioUds::new(rt, vec![stream], true, spec))
    }

    fn connect(spec: &LinkSpec, peers: &[String]) -> Result<TokioUds> {
        let rt = runtime()?;
        let streams = rt.block_on(async {
            let mut streams = Vec::new();
            for i in 0..peers.len() {
                let path = socket_path(spec, i);
                streams.push(
                    UnixStream::connect(&path)
                        .await
                        .with_context(|| format!("connect {}", path.display()))?,
                );
            }
            anyhow::Ok(streams)
        })?;
        Ok(TokioUds::new(rt, streams, spec.two_way(), spec))
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        ensure!(
            !self.writers.is_empty(),
            "this end of the link does not send"
        );
        let (writers, frame) = (&mut self.writers, &mut self.frame);
        run(&self.rt, TokioUds::write(writers, frame, msg))
    }

    fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let (reader, buf) = (&mut self.reader, &mut self.buf);
        run(&self.rt, TokioUds::read(reader, buf, self.max))?;
        Ok(f(&self.buf))
    }

    fn echo(&mut self) -> Result<bool> {
        let TokioUds {
            rt,
            reader,
            writers,
            frame,
            buf,
            max,
        } = self;
        run(rt, async {
            TokioUds::read(reader, buf, *max).await?;
            if buf.as_slice() == STOP {
                return Ok(false);
            }
            TokioUds::write(writers, frame, buf).await?;
            Ok(true)
        })
    }
}
