//! A ring in a named shared-memory segment, for two processes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::layout::{HEADER_LEN, MAX_CAPACITY, valid_capacity};
use super::region::Region;
use super::wait::RingFutex;
use super::{Consumer, Producer};
use crate::error::{Error, Result};
use crate::sys;

/// `dir/.name.tmp` for `dir/name`.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// A ring living in a shared-memory segment (a file on tmpfs, such as `/dev/shm`), mapped by
/// the two processes it connects. One becomes the [`Producer`], the other the [`Consumer`].
///
/// The process that [`create`](RingSegment::create)s the segment owns its name and removes it
/// when its end is dropped; the mapping stays valid for a peer that already opened it.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mmipc::ring::RingSegment;
///
/// // Process A
/// let mut tx = RingSegment::create("/dev/shm/my-ring", 1 << 20)?.into_producer();
/// tx.write(b"hello")?;
///
/// // Process B
/// let mut rx = RingSegment::open("/dev/shm/my-ring")?.into_consumer();
/// let mut buf = Vec::new();
/// rx.read(&mut buf)?;
/// # Ok(()) }
/// ```
pub struct RingSegment {
    region: Region,
    path: PathBuf,
}

impl RingSegment {
    /// Creates a new segment at `path` (which must not exist) holding a ring of `capacity`
    /// bytes, a power of two from [`MIN_CAPACITY`](super::MIN_CAPACITY) to
    /// [`MAX_CAPACITY`](super::MAX_CAPACITY). The file is created with mode 0600.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an invalid capacity; [`Error::Io`] if the file exists or
    /// cannot be created or mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("ring");
    /// let segment = mmipc::ring::RingSegment::create(&path, 4096)?;
    /// assert!(path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(path: impl AsRef<Path>, capacity: usize) -> Result<RingSegment> {
        Self::create_with(path.as_ref(), capacity, true, sys::Access::Private)
    }

    /// As [`RingSegment::create`], but the name stays when the ring is dropped: the caller
    /// removes it (a publisher leaves a ring holding unread messages for its subscriber).
    /// Files are made for `access` (0660 of the group for a group-shared channel).
    pub(crate) fn create_kept(
        path: &Path,
        capacity: usize,
        access: sys::Access,
    ) -> Result<RingSegment> {
        Self::create_with(path, capacity, false, access)
    }

    fn create_with(
        path: &Path,
        capacity: usize,
        unlink_on_drop: bool,
        access: sys::Access,
    ) -> Result<RingSegment> {
        if !valid_capacity(capacity as u64) {
            return Err(Error::InvalidOption {
                option: "capacity",
                problem: format!(
                    "{capacity} is not a power of two between {} and {MAX_CAPACITY}",
                    super::MIN_CAPACITY
                ),
            });
        }
        // Built under a hidden temporary name and renamed into place once initialised, so a
        // peer never opens a half-made ring.
        let tmp = temp_name(path);
        let mut segment = sys::Segment::create(&tmp, HEADER_LEN + capacity, access)?;
        // SAFETY: a fresh mapping is page-aligned and `HEADER_LEN + capacity` bytes long;
        // `segment` outlives this temporary region (dropped at once, with a dummy owner), and
        // no peer can open the temporary name.
        drop(unsafe { Region::init(segment.as_ptr(), capacity as u64, Arc::new(())) });
        let published = if path.exists() {
            Err(Error::io(
                "create segment",
                path,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ))
        } else {
            segment.rename(path)
        };
        // On failure, dropping `segment` removes the temporary name.
        published?;
        if !unlink_on_drop {
            segment.keep_name();
        }
        let (base, len) = (segment.as_ptr(), segment.len());
        let futex = RingFutex::of(&segment);
        let owner = Arc::new(segment); // removes the name when the last end drops
        // SAFETY: the mapping is page-aligned and `len` bytes long, kept alive by `owner`.
        let region = unsafe { Region::attach(base, len, owner, futex) }.map_err(|problem| {
            Error::BadSegment {
                path: path.to_owned(),
                problem,
            }
        })?;
        Ok(RingSegment {
            region,
            path: path.to_owned(),
        })
    }

    /// Opens a segment another process created, validating its header.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be opened or mapped; [`Error::BadSegment`] if it is too
    /// small, not ours, or its header is not a compatible ring.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("ring");
    /// let segment = mmipc::ring::RingSegment::create(&path, 4096)?;
    /// let peer = mmipc::ring::RingSegment::open(&path)?; // normally in another process
    /// assert_eq!(peer.capacity(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<RingSegment> {
        Self::open_in(path.as_ref(), sys::Access::Private)
    }

    /// As [`RingSegment::open`], checking the file against `access` (a group-shared
    /// channel's rings belong to the group, not to us).
    pub(crate) fn open_in(path: &Path, access: sys::Access) -> Result<RingSegment> {
        let segment = sys::Segment::open(
            path,
            HEADER_LEN + super::MIN_CAPACITY,
            HEADER_LEN + MAX_CAPACITY,
            access,
        )?;
        let (base, len) = (segment.as_ptr(), segment.len());
        let futex = RingFutex::of(&segment);
        let owner = Arc::new(segment);
        // SAFETY: the mapping is page-aligned and `len` bytes long (checked with fstat before
        // mapping), kept alive by `owner`.
        let region = unsafe { Region::attach(base, len, owner, futex) }.map_err(|problem| {
            Error::BadSegment {
                path: path.to_owned(),
                problem,
            }
        })?;
        Ok(RingSegment {
            region,
            path: path.to_owned(),
        })
    }

    /// The segment's path.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("ring");
    /// let segment = mmipc::ring::RingSegment::create(&path, 4096)?;
    /// assert_eq!(segment.path(), path);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Capacity of the ring's data area in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("ring");
    /// let segment = mmipc::ring::RingSegment::create(&path, 4096)?;
    /// assert_eq!(segment.capacity(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.region.capacity() as usize
    }

    /// A read-only view of the header (positions, heartbeats, closed flags), for tools that
    /// inspect a ring without taking part in it.
    pub(crate) fn control(&self) -> super::RingControl {
        super::RingControl::new(self.region.share())
    }

    /// Becomes the writing end.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("ring");
    /// let segment = mmipc::ring::RingSegment::create(&path, 4096)?;
    /// let mut tx = segment.into_producer();
    /// tx.try_write(b"hello")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_producer(self) -> Producer {
        Producer::new(self.region)
    }

    /// Becomes the reading end.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("ring");
    /// let segment = mmipc::ring::RingSegment::create(&path, 4096)?;
    /// let mut tx = segment.into_producer();
    /// let mut rx = mmipc::ring::RingSegment::open(&path)?.into_consumer();
    /// tx.try_write(b"hello")?;
    /// let mut buf = Vec::new();
    /// assert!(rx.try_read(&mut buf)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_consumer(self) -> Consumer {
        Consumer::new(self.region)
    }
}

impl std::fmt::Debug for RingSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSegment")
            .field("path", &self.path)
            .field("capacity", &self.capacity())
            .finish()
    }
}
