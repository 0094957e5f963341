//! Byte-stream transports: Unix domain socket, named pipes, TCP over loopback.
//!
//! Each message is a frame: a little-endian u32 length, then the payload. Writes are blocking
//! `write_all`s of the whole frame (header and payload in one call up to 64 KiB, two calls
//! above, which spares a copy of large payloads); reads go through a 256 KiB `BufReader`.
//! Kernel buffer sizes are the operating system's defaults.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use super::{LinkSpec, Transport};
use crate::payload::STOP;

const READ_BUFFER: usize = 256 << 10;
/// Up to this payload size, header and payload are copied into one buffer and written at once.
const GATHER_MAX: usize = 64 << 10;

/// Framing over any reader and writers (one writer per responder on the initiator's side).
pub struct Framed<R, W> {
    reader: Option<BufReader<R>>,
    writers: Vec<W>,
    frame: Vec<u8>,
    buf: Vec<u8>,
    max: usize,
}

impl<R: Read, W: Write> Framed<R, W> {
    fn new(reader: Option<R>, writers: Vec<W>, spec: &LinkSpec) -> Framed<R, W> {
        Framed {
            reader: reader.map(|r| BufReader::with_capacity(READ_BUFFER, r)),
            writers,
            frame: Vec::with_capacity(4 + spec.max_frame().min(GATHER_MAX)),
            buf: Vec::with_capacity(spec.max_frame()),
            max: spec.max_frame(),
        }
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        ensure!(
            !self.writers.is_empty(),
            "this end of the link does not send"
        );
        let len = u32::try_from(msg.len()).context("message longer than 4 GiB")?;
        if msg.len() <= GATHER_MAX {
            self.frame.clear();
            self.frame.extend_from_slice(&len.to_le_bytes());
            self.frame.extend_from_slice(msg);
            for w in &mut self.writers {
                w.write_all(&self.frame).context("write")?;
            }
        } else {
            for w in &mut self.writers {
                w.write_all(&len.to_le_bytes()).context("write")?;
                w.write_all(msg).context("write")?;
            }
        }
        Ok(())
    }

    /// Reads the next frame into `self.buf`.
    fn read_frame(&mut self) -> Result<()> {
        let reader = self
            .reader
            .as_mut()
            .context("this end of the link does not receive")?;
        let mut header = [0u8; 4];
        reader.read_exact(&mut header).context("read")?;
        let len = u32::from_le_bytes(header) as usize;
        ensure!(
            len <= self.max,
            "frame of {len} bytes, at most {} expected",
            self.max
        );
        self.buf.resize(len, 0);
        reader.read_exact(&mut self.buf).context("read")?;
        Ok(())
    }

    fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        self.read_frame()?;
        Ok(f(&self.buf))
    }

    fn echo(&mut self) -> Result<bool> {
        self.read_frame()?;
        if self.buf == STOP {
            return Ok(false);
        }
        let msg = std::mem::take(&mut self.buf);
        let result = self.send(&msg);
        self.buf = msg;
        result.map(|()| true)
    }
}

/// Implements [`Transport`]'s data path for a newtype over [`Framed`].
macro_rules! framed_data_path {
    () => {
        fn send(&mut self, msg: &[u8]) -> Result<()> {
            self.0.send(msg)
        }

        fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
            self.0.recv(f)
        }

        fn echo(&mut self) -> Result<bool> {
            self.0.echo()
        }
    };
}

// ----------------------------------------------------------------------------------------------
// Unix domain socket
// ----------------------------------------------------------------------------------------------

/// Unix domain stream socket; the responder listens on `<dir>/<name>-<index>.sock`.
pub struct Uds(Framed<UnixStream, UnixStream>);

fn socket_path(spec: &LinkSpec, index: usize) -> PathBuf {
    spec.dir.join(format!("{}-{index}.sock", spec.name))
}

impl Transport for Uds {
    type Pending = UnixListener;

    fn listen(spec: &LinkSpec) -> Result<(UnixListener, String)> {
        let path = socket_path(spec, spec.index);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("bind {}", path.display()))?;
        Ok((listener, String::new()))
    }

    fn accept(listener: UnixListener, spec: &LinkSpec) -> Result<Uds> {
        let (stream, _) = listener.accept().context("accept")?;
        let reader = stream.try_clone().context("clone socket")?;
        let writers = if spec.two_way() { vec![stream] } else { vec![] };
        Ok(Uds(Framed::new(Some(reader), writers, spec)))
    }

    fn connect(spec: &LinkSpec, peers: &[String]) -> Result<Uds> {
        let mut streams = Vec::new();
        for i in 0..peers.len() {
            let path = socket_path(spec, i);
            streams.push(
                UnixStream::connect(&path)
                    .with_context(|| format!("connect {}", path.display()))?,
            );
        }
        let reader = match spec.two_way() {
            true => Some(streams[0].try_clone().context("clone socket")?),
            false => None,
        };
        Ok(Uds(Framed::new(reader, streams, spec)))
    }

    framed_data_path!();
}

// ----------------------------------------------------------------------------------------------
// TCP
// ----------------------------------------------------------------------------------------------

/// TCP over 127.0.0.1 with `TCP_NODELAY` on both ends; the responder's port is its address.
pub struct Tcp(Framed<TcpStream, TcpStream>);

impl Transport for Tcp {
    type Pending = TcpListener;

    fn listen(_spec: &LinkSpec) -> Result<(TcpListener, String)> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
        let addr = listener.local_addr().context("local address")?;
        Ok((listener, addr.to_string()))
    }

    fn accept(listener: TcpListener, spec: &LinkSpec) -> Result<Tcp> {
        let (stream, _) = listener.accept().context("accept")?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let reader = stream.try_clone().context("clone socket")?;
        let writers = if spec.two_way() { vec![stream] } else { vec![] };
        Ok(Tcp(Framed::new(Some(reader), writers, spec)))
    }

    fn connect(spec: &LinkSpec, peers: &[String]) -> Result<Tcp> {
        let mut streams = Vec::new();
        for addr in peers {
            let stream =
                TcpStream::connect(addr.as_str()).with_context(|| format!("connect {addr}"))?;
            stream.set_nodelay(true).context("TCP_NODELAY")?;
            streams.push(stream);
        }
        let reader = match (spec.two_way(), streams.first()) {
            (true, Some(s)) => Some(s.try_clone().context("clone socket")?),
            _ => None,
        };
        Ok(Tcp(Framed::new(reader, streams, spec)))
    }

    framed_data_path!();
}

// ----------------------------------------------------------------------------------------------
// Named pipes
// ----------------------------------------------------------------------------------------------

/// Named pipes: `<dir>/<name>-<index>.down` (initiator → responder) and `.up` (back).
/// Opening a FIFO blocks until the other end opens it, which is the rendezvous.
pub struct Pipe(Framed<File, File>);

fn fifo_path(spec: &LinkSpec, index: usize, dir: &str) -> PathBuf {
    spec.dir.join(format!("{}-{index}.{dir}", spec.name))
}

fn mkfifo(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("mkfifo {}", path.display()));
    }
    Ok(())
}

fn open_fifo(path: &Path, write: bool) -> Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

impl Transport for Pipe {
    type Pending = ();

    fn listen(spec: &LinkSpec) -> Result<((), String)> {
        mkfifo(&fifo_path(spec, spec.index, "down"))?;
        if spec.two_way() {
            mkfifo(&fifo_path(spec, spec.index, "up"))?;
        }
        Ok(((), String::new()))
    }

    fn accept((): (), spec: &LinkSpec) -> Result<Pipe> {
        let reader = open_fifo(&fifo_path(spec, spec.index, "down"), false)?;
        let writers = match spec.two_way() {
            true => vec![open_fifo(&fifo_path(spec, spec.index, "up"), true)?],
            false => vec![],
        };
        Ok(Pipe(Framed::new(Some(reader), writers, spec)))
    }

    fn connect(spec: &LinkSpec, peers: &[String]) -> Result<Pipe> {
        let mut writers = Vec::new();
        let mut reader = None;
        for i in 0..peers.len() {
            writers.push(open_fifo(&fifo_path(spec, i, "down"), true)?);
            if spec.two_way() && reader.is_none() {
                reader = Some(open_fifo(&fifo_path(spec, i, "up"), false)?);
            }
        }
        Ok(Pipe(Framed::new(reader, writers, spec)))
    }

    framed_data_path!();
}
