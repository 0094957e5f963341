//! Looking at channels from outside: which endpoints exist, whether they are alive, how full
//! their rings are, and removing what dead ones left behind. This is what `mmipc ls` and
//! `mmipc clean` show and do; it takes no part in any connection (it maps rings only to read
//! their headers) and never touches a file whose name it does not recognise.
//!
//! # Examples
//!
//! ```no_run
//! for channel in mmipc::inspect::channels(&mmipc::default_root())? {
//!     let alive = channel.endpoints.iter().filter(|e| e.alive).count();
//!     println!("{}: {alive} live endpoints, {} rings", channel.name, channel.rings.len());
//! }
//! let removed = mmipc::inspect::clean(&mmipc::default_root(), false)?;
//! println!("cleaned {} leftover files", removed.len());
//! # Ok::<(), mmipc::Error>(())
//! ```

use std::path::{Path, PathBuf};

use crate::channel::{self, ChannelDirs};
use crate::discovery::{self, EndpointId, EndpointKind};
use crate::error::{Error, Result};
use crate::ring::RingSegment;

/// One channel directory and what is in it.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let _subscriber = mmipc::Subscriber::builder("inspected").dir(dir.path()).build()?;
/// let info = mmipc::inspect::channel(dir.path(), "inspected")?;
/// assert_eq!(info.name, "inspected");
/// assert_eq!(info.endpoints.len(), 1);
/// assert!(info.endpoints[0].alive);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// The channel name.
    pub name: String,
    /// Every endpoint with a file in the channel, live or dead.
    pub endpoints: Vec<EndpointInfo>,
    /// Every ring segment (one per publisher→subscriber connection).
    pub rings: Vec<RingInfo>,
}

/// A publisher or subscriber seen through its files.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let publisher = mmipc::Publisher::builder("seen").dir(dir.path()).build()?;
/// let info = mmipc::inspect::channel(dir.path(), "seen")?;
/// let me = &info.endpoints[0];
/// assert_eq!((me.kind, me.id, me.pid), (mmipc::EndpointKind::Publisher, publisher.id(), Some(std::process::id())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointInfo {
    /// Publisher or subscriber.
    pub kind: EndpointKind,
    /// Its id.
    pub id: EndpointId,
    /// Its process id, from its record (`None` if the record is missing or unreadable).
    pub pid: Option<u32>,
    /// Whether its process holds its lock (a dead endpoint's files are leftovers).
    pub alive: bool,
    /// When it was created (Unix milliseconds), from its record.
    pub created_unix_ms: Option<u64>,
    /// Its heartbeat interval in milliseconds, from its record.
    pub heartbeat_interval_ms: Option<u64>,
    /// The largest message it sends or accepts, from its record.
    pub max_message_size: Option<u64>,
}

/// One connection's ring, read from its segment header.
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let mut sub = mmipc::Subscriber::builder("rings").dir(dir.path()).build()?;
/// let publisher = mmipc::Publisher::builder("rings").dir(dir.path()).deliver_to_same_process(true).build()?;
/// publisher.wait_for_subscribers(1, Duration::from_secs(10))?;
/// publisher.publish(b"unread")?;
/// let ring = &mmipc::inspect::channel(dir.path(), "rings")?.rings[0];
/// assert_eq!((ring.publisher, ring.subscriber), (publisher.id(), sub.id()));
/// assert!(ring.fill > 0 && ring.fill == ring.written);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RingInfo {
    /// The writing end.
    pub publisher: EndpointId,
    /// The reading end.
    pub subscriber: EndpointId,
    /// Connection generation (a reconnect after a timeout makes a new ring).
    pub generation: u64,
    /// Data area size in bytes.
    pub capacity: u64,
    /// Bytes written and not yet read.
    pub fill: u64,
    /// Bytes the publisher has written through this ring (records and framing included).
    pub written: u64,
    /// Whether the publisher's side is still open.
    pub publisher_open: bool,
    /// Whether the subscriber's side is still open.
    pub subscriber_open: bool,
    /// The segment file.
    pub path: PathBuf,
}

/// Every channel under `root` (such as [`default_root`](crate::default_root)) that has at
/// least one file of ours, sorted by name. Directories that are not channels are skipped.
///
/// # Errors
/// [`Error::Io`] if `root` exists but cannot be read. A missing root is an empty list.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let _a = mmipc::Publisher::builder("a").dir(dir.path()).build()?;
/// let _b = mmipc::Subscriber::builder("b").dir(dir.path()).build()?;
/// let names: Vec<String> = mmipc::inspect::channels(dir.path())?.into_iter().map(|c| c.name).collect();
/// assert_eq!(names, ["a", "b"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channels(root: &Path) -> Result<Vec<ChannelInfo>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", root, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if channel::validate(&name).is_err() || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(info) = self::channel(root, &name)
            && (!info.endpoints.is_empty() || !info.rings.is_empty())
        {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What is in one channel under `root`.
///
/// # Errors
/// [`Error::InvalidChannel`] for a bad name; [`Error::Io`] if `root` cannot be resolved.
/// A channel with no directory is empty, not an error.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let info = mmipc::inspect::channel(dir.path(), "nobody-here")?;
/// assert!(info.endpoints.is_empty() && info.rings.is_empty());
/// assert!(mmipc::inspect::channel(dir.path(), "../etc").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel(root: &Path, name: &str) -> Result<ChannelInfo> {
    let mut info = ChannelInfo {
        name: name.to_owned(),
        endpoints: Vec::new(),
        rings: Vec::new(),
    };
    channel::validate(name)?;
    if !root.join(name).is_dir() {
        return Ok(info);
    }
    let dirs = ChannelDirs::locate(root, name)?;
    let records: Vec<_> = [EndpointKind::Publisher, EndpointKind::Subscriber]
        .into_iter()
        .flat_map(|k| discovery::scan(&dirs, k))
        .collect();
    for (kind, id) in discovery::endpoints_with_files(&dirs) {
        let record = records
            .iter()
            .find(|f| f.id == id && f.record.kind == kind)
            .map(|f| &f.record);
        info.endpoints.push(EndpointInfo {
            kind,
            id,
            pid: record.map(|r| r.pid),
            alive: discovery::is_alive(&dirs, kind, id),
            created_unix_ms: record.map(|r| r.created_unix_ms),
            heartbeat_interval_ms: record.map(|r| r.heartbeat_interval_ms),
            max_message_size: record.map(|r| r.max_message_size),
        });
    }
    info.rings = rings(&dirs);
    Ok(info)
}

fn rings(dirs: &ChannelDirs) -> Vec<RingInfo> {
    let Ok(entries) = std::fs::read_dir(&dirs.segments) else {
        return Vec::new();
    };
    let mut out: Vec<RingInfo> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let (publisher, subscriber, generation) =
                crate::connection::segment::parse_ring_name(name.to_str()?)?;
            // A ring that cannot be opened (being removed, corrupt, not ours) is not shown.
            let control = RingSegment::open_in(&entry.path(), dirs.access).ok()?.control();
            Some(RingInfo {
                publisher,
                subscriber,
                generation,
                capacity: control.capacity(),
                fill: control.fill(),
                written: control.written(),
                publisher_open: !control.producer_closed(),
                subscriber_open: !control.consumer_closed(),
                path: entry.path(),
            })
        })
        .collect();
    out.sort_by_key(|r| (r.publisher, r.subscriber, r.generation));
    out
}

/// Removes what dead endpoints left behind under `root` (records, lock files, doorbells,
/// rings), or with `dry_run` only lists it. Live endpoints and files whose names are not
/// ours are never touched. Returns the files removed (or that would be).
///
/// # Errors
/// [`Error::Io`] if `root` exists but cannot be read.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let _live = mmipc::Subscriber::builder("tidy").dir(dir.path()).build()?;
/// std::fs::write(dir.path().join("tidy").join("notes.txt"), "mine")?;
/// assert!(mmipc::inspect::clean(dir.path(), false)?.is_empty()); // nothing dead
/// assert!(dir.path().join("tidy").join("notes.txt").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn clean(root: &Path, dry_run: bool) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for info in channels(root)? {
        let dirs = ChannelDirs::locate(root, &info.name)?;
        // One listing per channel: cleaning many dead endpoints stays linear.
        let listing = discovery::Listing::read(&dirs);
        for e in info.endpoints.iter().filter(|e| !e.alive) {
            // Judged dead before the listing was read: an endpoint that was starting then
            // (lock not yet taken) may have locked and written its record since, and the
            // listing shows them. Its lock, probed after the listing, says.
            if discovery::is_alive(&dirs, e.kind, e.id) {
                continue;
            }
            let files = if dry_run {
                listing.leftovers(&dirs, e.kind, e.id)
            } else {
                listing.remove_dead(&dirs, e.kind, e.id)
            };
            removed.extend(files);
        }
    }
    // Empty channel directories are leftovers too (the root stays), listed as removed.
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if channel::validate(&name).is_err() || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let empty = |p: &Path| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none());
            if dry_run {
                if empty(&path) {
                    removed.push(path);
                }
            } else if let Ok(dirs) = ChannelDirs::locate(root, &name) {
                dirs.remove_if_empty();
                if !path.exists() {
                    removed.push(path);
                }
            }
        }
    }
    // A ring shared by two dead endpoints is listed once.
    removed.sort();
    removed.dedup();
    Ok(removed)
}
