//! A subscriber's control segment (`sub-<id>.bell`): its doorbell, which every publisher
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
//! 32      32    reserved (file is 64 bytes)
//! ```

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ring::{RingBell, SharedBell};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::sys;

const MAGIC: u64 = u64::from_le_bytes(*b"mmipcSUB");
const VERSION: u32 = 1;
const LEN: usize = 64;

#[repr(C)]
struct ControlHeader {
    magic: AtomicU64,
    version: AtomicU32,
    closed: AtomicU32,
    heartbeat: AtomicU64,
    bell: RingBell,
}

const _: () = assert!(size_of::<ControlHeader>() <= LEN);

/// A mapped control segment.
#[derive(Clone)]
pub(crate) struct Control {
    /// The creator's copy removes the name when the last clone drops.
    map: Arc<sys::Segment>,
}

impl Control {
    /// Creates the segment under a temporary name, initialises it, renames it to `path`.
    /// The creator removes the name on drop.
    pub(crate) fn create(path: &Path) -> Result<Control> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let mut segment = sys::Segment::create(&tmp, LEN)?;
        let header = segment.as_ptr().cast::<ControlHeader>();
        // SAFETY: a fresh, page-aligned, zero-filled mapping of LEN >= size_of::<ControlHeader>
        // bytes that no one else has opened (temporary name); every field is atomic, zero is a
        // valid value for each.
        let h = unsafe { &*header };
        h.magic.store(MAGIC, Ordering::Relaxed);
        // SYNC POINT control-header: pairs with the Acquire load in `open`.
        h.version.store(VERSION, Ordering::Release);
        // On failure, dropping `segment` removes the temporary name.
        segment.rename(path)?;
        Ok(Control {
            map: Arc::new(segment),
        })
    }

    /// Opens a subscriber's control segment and checks its header.
    pub(crate) fn open(path: &Path) -> Result<Control> {
        let segment = sys::Segment::open(path, LEN, LEN)?;
        let control = Control {
            map: Arc::new(segment),
        };
        let h = control.header();
        // SYNC POINT control-header: pairs with the Release store in `create`.
        let version = h.version.load(Ordering::Acquire);
        if h.magic.load(Ordering::Relaxed) != MAGIC || version != VERSION {
            return Err(Error::BadSegment {
                path: path.to_owned(),
                problem: format!(
                    "not an mmipc control segment of version {VERSION} (found {version})"
                ),
            });
        }
        Ok(control)
    }

    fn header(&self) -> &ControlHeader {
        debug_assert!(self.map.len() >= size_of::<ControlHeader>());
        // SAFETY: the mapping is page-aligned and at least LEN bytes (checked by `create` /
        // by `sys::Segment::open`'s fstat bounds), alive as long as `self.map`; every field
        // is atomic, so a shared reference is sound while other processes write.
        unsafe { &*self.map.as_ptr().cast::<ControlHeader>() }
    }

    pub(crate) fn bell(&self) -> &RingBell {
        &self.header().bell
    }

    /// The doorbell, for a producer to ring.
    pub(crate) fn shared_bell(&self) -> SharedBell {
        let owner: Arc<dyn Send + Sync> = self.map.clone();
        // SAFETY: the bell lies inside the mapping (offset 24, 8 bytes, 4-aligned), which
        // `owner` keeps mapped, and is only accessed atomically.
        unsafe { SharedBell::new(&self.header().bell, owner) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_segment_shares_bell_and_heartbeat_and_rejects_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub.bell");
        let a = Control::create(&path).unwrap();
        let b = Control::open(&path).unwrap();
        a.beat();
        assert_eq!(b.heartbeat(), 1);
        b.bell().waiters.fetch_add(1, Ordering::Relaxed);
        assert_eq!(a.shared_bell().bell().waiters.load(Ordering::Relaxed), 1);
        drop((a, b));
        assert!(!path.exists(), "the creator removes the name");
        sys::write_private_file(&path, &[0u8; LEN]).unwrap();
        assert!(matches!(
            Control::open(&path),
            Err(Error::BadSegment { .. })
        ));
        sys::write_private_file(&path, &[0u8; 10]).unwrap();
        assert!(matches!(
            Control::open(&path),
            Err(Error::BadSegment { .. })
        ));
    }
}
