//! A subscriber's doorbell file (`sub-<id>.bell`): the doorbell which every publisher
//! connected to it rings after writing, and a heartbeat. One futex word for all of a
//! subscriber's incoming rings lets a blocking receive sleep on them all at once.
//!
//! ```text
//! offset  size  field
//! 0       8     magic      b"mmipcSUB"
//! 8       4     version    1, stored last (Release)
//! 12      4     closed     1 once the subscriber closes (set before its record goes);
//!                          was reserved (zero): older peers ignore it
//! 16      8     heartbeat  bumped by the subscriber's runtime thread
//! 24      4     bell.seq   futex word
//! 28      4     bell.waiters
//! 32      4     listen     1 once the subscriber has a wake-up pipe (`sub-<id>.wake`) that
//!                          a ringer also writes to (an async receive waits on it); was
//!                          reserved (zero): older peers ignore it
//! 36      28    reserved (file is 64 bytes)
//! ```

use std::path::Path;
use std::sync::Arc;

use super::wake::{PeerPipe, pipe_path};
use crate::error::{Error, Result};
use crate::ring::{AtomicHeader, MappedHeader, OsFutex, RingBell, SharedBell, header_of, notify};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::sys;

const MAGIC: u64 = u64::from_le_bytes(*b"mmipcSUB");
const VERSION: u32 = 1;
const LEN: usize = 64;

#[repr(C)]
struct DoorbellHeader {
    magic: AtomicU64,
    version: AtomicU32,
    closed: AtomicU32,
    heartbeat: AtomicU64,
    bell: RingBell,
    listen: AtomicU32,
    _reserved: AtomicU32,
}

const _: () = assert!(size_of::<DoorbellHeader>() <= LEN);

// SAFETY: `#[repr(C)]`, made only of atomics (the bell is two `AtomicU32`s) with no padding
// (8 + 4 + 4 + 8 + 8 + 4 + 4 bytes, 8-aligned); zero is a valid value of every field.
unsafe impl AtomicHeader for DoorbellHeader {}

/// A mapped doorbell file.
#[derive(Clone)]
pub(crate) struct Doorbell {
    /// Keeps the mapping; the creator's copy removes the name when the last clone drops.
    header: MappedHeader<DoorbellHeader>,
    /// Wakes sleepers on the bell (the OS's wake-up for this mapping).
    futex: OsFutex,
    /// The subscriber's wake-up pipe, written after a ring if it listens.
    pipe: Arc<PeerPipe>,
}

impl Doorbell {
    /// Creates the segment under a temporary name, initialises it, renames it to `path`.
    /// The creator removes the name on drop.
    pub(crate) fn create(path: &Path, access: sys::Access) -> Result<Doorbell> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let mut segment = sys::Segment::create(&tmp, LEN, access)?;
        // A fresh, zero-filled mapping that no one else has opened (temporary name).
        let h = header_of::<DoorbellHeader>(&segment).ok_or_else(|| too_small(&tmp))?;
        h.magic.store(MAGIC, Ordering::Relaxed);
        // SYNC POINT doorbell-header: pairs with the Acquire load in `open`.
        h.version.store(VERSION, Ordering::Release);
        // On failure, dropping `segment` removes the temporary name.
        segment.rename(path)?;
        let header = MappedHeader::new(Arc::new(segment)).ok_or_else(|| too_small(path))?;
        Ok(Doorbell::new(header, path, access))
    }

    fn new(header: MappedHeader<DoorbellHeader>, path: &Path, access: sys::Access) -> Doorbell {
        Doorbell {
            futex: header.futex(),
            header,
            pipe: Arc::new(PeerPipe::new(pipe_path(path), access)),
        }
    }

    /// Opens a subscriber's doorbell file and checks its header.
    pub(crate) fn open(path: &Path, access: sys::Access) -> Result<Doorbell> {
        let segment = sys::Segment::open(path, LEN, LEN, access)?;
        let header = MappedHeader::new(Arc::new(segment)).ok_or_else(|| too_small(path))?;
        let doorbell = Doorbell::new(header, path, access);
        let h = doorbell.header();
        // SYNC POINT doorbell-header: pairs with the Release store in `create`.
        let version = h.version.load(Ordering::Acquire);
        if h.magic.load(Ordering::Relaxed) != MAGIC || version != VERSION {
            return Err(Error::BadSegment {
                path: path.to_owned(),
                problem: format!(
                    "not an mmipc doorbell file of version {VERSION} (found {version})"
                ),
            });
        }
        Ok(doorbell)
    }

    fn header(&self) -> &DoorbellHeader {
        self.header.get()
    }

    pub(crate) fn bell(&self) -> &RingBell {
        &self.header().bell
    }

    /// What sleeps on and wakes [`bell`](Self::bell).
    pub(crate) fn futex(&self) -> &OsFutex {
        &self.futex
    }

    /// The doorbell, for a producer to ring: after a ring that found a sleeper it also
    /// writes the subscriber's wake-up pipe if the subscriber listens.
    pub(crate) fn shared_bell(&self) -> SharedBell {
        let me = self.clone();
        self.header
            .shared_bell(|h| &h.bell)
            .after_ring(Arc::new(move || me.rang()))
    }

    /// Wakes the subscriber if it waits: on the futex, and on its wake-up pipe if it
    /// listens there.
    pub(crate) fn ring(&self) {
        if notify(&self.futex, self.bell()) {
            self.rang();
        }
    }

    /// The bell was rung for a registered waiter: tell an event loop too.
    fn rang(&self) {
        // SYNC POINT wake: `listen` is stored before the subscriber registers as a waiter
        // and fences, and loaded after the ringer's fence and its load of `waiters`, so a
        // ringer that saw the registration sees `listen` too (else the waiter's re-check
        // saw the ringer's data).
        if self.header().listen.load(Ordering::Relaxed) != 0 {
            self.pipe.notify();
        }
    }

    /// Makes the subscriber's wake-up pipe and announces it: from then on every ring that
    /// finds a registered waiter also makes the returned listener readable.
    #[cfg(unix)]
    pub(crate) fn listen(&self, path: &Path, access: sys::Access) -> Result<sys::Listener> {
        let listener = sys::Listener::create(&pipe_path(path), access)?;
        self.header().listen.store(1, Ordering::SeqCst);
        Ok(listener)
    }

    /// The bell's named event, which every ring that finds a registered waiter sets: what an
    /// event loop waits on (Windows needs no pipe and no flag).
    #[cfg(windows)]
    pub(crate) fn listen(&self, path: &Path, _access: sys::Access) -> Result<sys::Listener> {
        self.futex.listener(&self.bell().seq).ok_or_else(|| Error::BadSegment {
            path: path.to_owned(),
            problem: "cannot open the named event of its doorbell".into(),
        })
    }

    /// Marks the subscriber closed (a clean exit), before its record is removed: a publisher
    /// that then finds the record gone knows it was not a crash.
    pub(crate) fn mark_closed(&self) {
        self.header().closed.store(1, Ordering::Release);
    }

    /// Whether the subscriber marked itself closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.header().closed.load(Ordering::Acquire) != 0
    }

    pub(crate) fn beat(&self) {
        self.header().heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn heartbeat(&self) -> u64 {
        self.header().heartbeat.load(Ordering::Relaxed)
    }
}

/// A mapping too short or misaligned for the header (`sys::Segment` checks the length, so
/// this is not expected).
fn too_small(path: &Path) -> Error {
    Error::BadSegment {
        path: path.to_owned(),
        problem: format!("too small for the {LEN}-byte doorbell header"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbell_file_shares_bell_and_heartbeat_and_rejects_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub.bell");
        let a = Doorbell::create(&path, sys::Access::Private).unwrap();
        let b = Doorbell::open(&path, sys::Access::Private).unwrap();
        a.beat();
        assert_eq!(b.heartbeat(), 1);
        b.bell().waiters.fetch_add(1, Ordering::Relaxed);
        assert_eq!(a.shared_bell().bell().waiters.load(Ordering::Relaxed), 1);
        drop((a, b));
        assert!(!path.exists(), "the creator removes the name");
        sys::write_file(&path, &[0u8; LEN], sys::Access::Private).unwrap();
        assert!(matches!(
            Doorbell::open(&path, sys::Access::Private),
            Err(Error::BadSegment { .. })
        ));
        sys::write_file(&path, &[0u8; 10], sys::Access::Private).unwrap();
        assert!(matches!(
            Doorbell::open(&path, sys::Access::Private),
            Err(Error::BadSegment { .. })
        ));
    }
}
