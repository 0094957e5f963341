//! The floor: a naive one-slot mailbox per direction in a shared file on tmpfs, both sides
//! spinning on its sequence word. No validation, no waiting strategy, no connection
//! management: the least work two processes can do to pass a message and its bytes back and
//! forth, so the hardware lower bound of a round trip, not a transport.
//!
//! Slot layout (each slot page-aligned): a sequence word (bumped by the writer with
//! `Release` once the bytes are in), the length, then the bytes from offset 128. A writer
//! reuses its slot only after the reply to its last message came back, which is why this
//! works for ping-pong only.

use std::fs::OpenOptions;
use std::hint::spin_loop;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, ensure};
use memmap2::MmapMut;

use super::{LinkSpec, Transport};
use crate::payload::STOP;

const SEQ: usize = 0;
const LEN: usize = 8;
const DATA: usize = 128;

/// One end of a floor link.
pub struct Floor {
    /// Base of the mapping: slot 0 (initiator → responder), then slot 1 at `stride`.
    base: *mut u8,
    /// The slot this end writes and the one it reads, as byte offsets from `base`.
    out: usize,
    inp: usize,
    /// Last sequence number seen in the input slot; last written in the output slot.
    seen: u64,
    written: u64,
    max: usize,
    _map: MmapMut,
}

fn stride(spec: &LinkSpec) -> usize {
    (DATA + spec.max_frame()).next_multiple_of(4096)
}

fn path(spec: &LinkSpec) -> PathBuf {
    spec.dir.join(format!("{}.floor", spec.name))
}

impl Floor {
    fn open(spec: &LinkSpec, create: bool) -> Result<Floor> {
        ensure!(
            spec.two_way() && spec.receivers == 1,
            "the floor mailbox is a ping-pong device"
        );
        let path = path(spec);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        let stride = stride(spec);
        if create {
            file.set_len(2 * stride as u64)
                .context("size the mailbox")?;
        }
        let len = file.metadata().context("mailbox size")?.len();
        ensure!(len == 2 * stride as u64, "mailbox of {len} bytes");
        // SAFETY: the file is private to this measurement (a 0700 directory) and only the two
        // processes of the floor map it; they touch it only through the protocol below.
        let mut map = unsafe { MmapMut::map_mut(&file) }.context("map the mailbox")?;
        let (out, inp) = if create { (stride, 0) } else { (0, stride) };
        Ok(Floor {
            base: map.as_mut_ptr(),
            out,
            inp,
            seen: 0,
            written: 0,
            max: spec.max_frame(),
            _map: map,
        })
    }

    fn word(&self, slot: usize, at: usize) -> &AtomicU64 {
        // SAFETY: `slot + at` is 0 or 8 past a page-aligned slot start inside the mapping,
        // so the word is aligned and in bounds; the mapping lives as long as `self`; both
        // processes access these words only atomically.
        unsafe { &*self.base.add(slot + at).cast::<AtomicU64>() }
    }

    /// Spins until the input slot holds a new message; returns it (valid until our reply).
    fn wait(&mut self) -> Result<&[u8]> {
        let seq = self.word(self.inp, SEQ);
        let mut now = seq.load(Ordering::Acquire);
        while now == self.seen {
            spin_loop();
            now = seq.load(Ordering::Acquire);
        }
        self.seen = now;
        let len = self.word(self.inp, LEN).load(Ordering::Relaxed) as usize;
        ensure!(len <= self.max, "mailbox message of {len} bytes");
        // SAFETY: the writer stored these `len` bytes (in bounds: `len <= max`, the slot has
        // room for `max`) before its `Release` store of the sequence number that we loaded
        // with `Acquire`; it does not write the slot again before we reply.
        Ok(unsafe { std::slice::from_raw_parts(self.base.add(self.inp + DATA), len) })
    }

    /// Publishes `len` bytes already in the output slot.
    fn post(&mut self, len: usize) {
        self.word(self.out, LEN)
            .store(len as u64, Ordering::Relaxed);
        self.written += 1;
        self.word(self.out, SEQ)
            .store(self.written, Ordering::Release);
    }
}

impl Transport for Floor {
    type Pending = Floor;

    fn listen(spec: &LinkSpec) -> Result<(Floor, String)> {
        Ok((Floor::open(spec, true)?, String::new()))
    }

    fn accept(floor: Floor, _spec: &LinkSpec) -> Result<Floor> {
        Ok(floor)
    }

    fn connect(spec: &LinkSpec, _peers: &[String]) -> Result<Floor> {
        Floor::open(spec, false)
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        ensure!(msg.len() <= self.max, "message of {} bytes", msg.len());
        // SAFETY: the output slot has room for `max >= msg.len()` bytes at DATA; the peer
        // reads it only after `post`, and has finished reading the previous message (its
        // reply arrived before we send again).
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.base.add(self.out + DATA), msg.len());
        }
        self.post(msg.len());
        Ok(())
    }

    fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        Ok(f(self.wait()?))
    }

    fn echo(&mut self) -> Result<bool> {
        let msg = self.wait()?;
        if msg == STOP {
            return Ok(false);
        }
        let (src, len) = (msg.as_ptr(), msg.len());
        // SAFETY: as in `send`; the input and output slots do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, self.base.add(self.out + DATA), len) };
        self.post(len);
        Ok(true)
    }
}
