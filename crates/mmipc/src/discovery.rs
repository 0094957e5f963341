//! The directory registry: endpoint records, lock files, scanning, and removing what dead
//! endpoints left behind.
//!
//! Every file we create has a name we can recognise exactly (`pub-<32 hex>.json`, ...);
//! anything else in a channel directory is ignored and never deleted.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::channel::ChannelDirs;
use crate::error::{Error, Result};
use crate::sys::{self, LockState};

/// Version of the record format and of the connection protocol built on it.
pub(crate) const PROTOCOL: u32 = 1;

/// Largest heartbeat interval we honour from a peer's record (one minute).
const MAX_PEER_HEARTBEAT_MS: u64 = 60_000;

/// Largest record file we read (real ones are ~200 bytes).
const MAX_RECORD_LEN: u64 = 64 * 1024;

/// A 128-bit random identifier of a publisher or subscriber, shown as 32 hex digits.
///
/// # Examples
///
/// ```
/// let id: mmipc::EndpointId = "0123456789abcdef0123456789abcdef".parse().unwrap();
/// assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(u128);

impl EndpointId {
    pub(crate) fn random() -> EndpointId {
        let mut b = [0u8; 16];
        if getrandom::fill(&mut b).is_err() {
            // No OS randomness: fall back to time, pid and address entropy (ids need only be
            // unique, not secret).
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let salt = &b as *const _ as usize as u128;
            b = (t ^ (u128::from(std::process::id()) << 64) ^ (salt << 32)).to_le_bytes();
        }
        EndpointId(u128::from_le_bytes(b))
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointId({self})")
    }
}

impl std::str::FromStr for EndpointId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            // Force a ParseIntError for anything but exactly 32 lowercase hex digits.
            return Err("x".parse::<u8>().unwrap_err());
        }
        u128::from_str_radix(s, 16).map(EndpointId)
    }
}

/// Publisher or subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let _publisher = mmipc::Publisher::builder("docs").dir(dir.path()).build()?;
/// let info = mmipc::inspect::channel(dir.path(), "docs")?;
/// assert_eq!(info.endpoints[0].kind, mmipc::EndpointKind::Publisher);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum EndpointKind {
    /// A [`Publisher`](crate::Publisher).
    Publisher,
    /// A [`Subscriber`](crate::Subscriber).
    Subscriber,
}

impl EndpointKind {
    fn prefix(self) -> &'static str {
        match self {
            EndpointKind::Publisher => "pub",
            EndpointKind::Subscriber => "sub",
        }
    }

    /// The kind this kind connects to.
    pub(crate) fn peer(self) -> EndpointKind {
        match self {
            EndpointKind::Publisher => EndpointKind::Subscriber,
            EndpointKind::Subscriber => EndpointKind::Publisher,
        }
    }

    /// `"publisher"` or `"subscriber"`.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            EndpointKind::Publisher => "publisher",
            EndpointKind::Subscriber => "subscriber",
        }
    }
}

/// The JSON record an endpoint publishes in its channel directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub protocol: u32,
    pub kind: EndpointKind,
    pub id: String,
    pub pid: u32,
    /// Largest message this endpoint sends or accepts (payload bytes).
    pub max_message_size: u64,
    /// How often this endpoint heartbeats; peers wait at least three of these before
    /// declaring it hung, whatever their own timeout.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_interval_ms: u64,
    pub created_unix_ms: u64,
    /// A subscriber that reads descriptors of a publisher's payload segment
    /// (`connection::payload`); publishers send older ones every message inline.
    #[serde(default)]
    pub payloads: bool,
}

fn default_heartbeat_ms() -> u64 {
    1000
}

impl Record {
    /// The silence after which this endpoint counts as hung, for a peer whose own timeout is
    /// `peer_timeout`.
    pub(crate) fn timeout_for(&self, peer_timeout: std::time::Duration) -> std::time::Duration {
        // The interval comes from a peer's file: capped, so that a bogus value cannot switch
        // off hang detection.
        let interval = self.heartbeat_interval_ms.min(MAX_PEER_HEARTBEAT_MS);
        peer_timeout.max(std::time::Duration::from_millis(interval * 3))
    }
}

impl Record {
    /// A stand-in record for a publisher known only by a ring it left (it closed or crashed
    /// before we opened the ring; `pid` 0 when its record is gone too).
    pub(crate) fn orphan(id: EndpointId, pid: u32) -> Record {
        Record {
            protocol: PROTOCOL,
            kind: EndpointKind::Publisher,
            id: id.to_string(),
            pid,
            max_message_size: 0,
            heartbeat_interval_ms: default_heartbeat_ms(),
            created_unix_ms: 0,
            payloads: false,
        }
    }
}

/// An endpoint found in a channel directory.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub id: EndpointId,
    pub record: Record,
}

pub(crate) fn record_path(dirs: &ChannelDirs, kind: EndpointKind, id: EndpointId) -> PathBuf {
    dirs.records.join(format!("{}-{id}.json", kind.prefix()))
}

pub(crate) fn lock_path(dirs: &ChannelDirs, kind: EndpointKind, id: EndpointId) -> PathBuf {
    dirs.records.join(format!("{}-{id}.lock", kind.prefix()))
}

use crate::connection::segment::{parse_ring_name, ring_outlives_publisher};

/// Parses `pub-<id>.json` / `sub-<id>.json`.
fn parse_record_name(name: &str) -> Option<(EndpointKind, EndpointId)> {
    let stem = name.strip_suffix(".json")?;
    let (kind, id) = if let Some(id) = stem.strip_prefix("pub-") {
        (EndpointKind::Publisher, id)
    } else {
        (EndpointKind::Subscriber, stem.strip_prefix("sub-")?)
    };
    Some((kind, id.parse().ok()?))
}

/// Writes `record` atomically (temporary file, then rename).
pub(crate) fn write_record(dirs: &ChannelDirs, record: &Record, id: EndpointId) -> Result<PathBuf> {
    let path = record_path(dirs, record.kind, id);
    let tmp = dirs
        .records
        .join(format!(".{}-{id}.json.tmp", record.kind.prefix()));
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::io("encode record", &path, e.into()))?;
    let write = || -> std::io::Result<()> {
        sys::write_file(&tmp, &json, dirs.access)?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("write record", &path, e)
    })?;
    Ok(path)
}

/// Reads every recognisable record of `kind` in the channel directory. Unreadable, oversized,
/// malformed or mismatching records are skipped (and left alone).
pub(crate) fn scan(dirs: &ChannelDirs, kind: EndpointKind) -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir(&dirs.records) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((k, id)) = name.to_str().and_then(parse_record_name) else {
            continue;
        };
        if k != kind {
            continue;
        }
        if let Some(record) = read_record(&entry.path(), dirs.access)
            && record.kind == kind
            && record.id == id.to_string()
            && record.protocol == PROTOCOL
        {
            found.push(Found { id, record });
        }
    }
    found
}

fn read_record(path: &Path, access: sys::Access) -> Option<Record> {
    let buf = sys::read_small_file(path, MAX_RECORD_LEN, access).ok()?;
    serde_json::from_slice(&buf).ok()
}

/// Endpoints of this process that hold their lock: judged alive without probing it. A probe
/// from the owner's own process proves nothing everywhere: Wine lets a process take a lock it
/// already holds through another handle (locks belong to the process there, not to the
/// handle), and closing the probe's handle then releases the owner's lock too.
static LOCAL: std::sync::Mutex<Vec<EndpointId>> = std::sync::Mutex::new(Vec::new());

/// This process's note that an endpoint lives, from when it holds its lock until dropped.
#[derive(Debug)]
pub(crate) struct LocalEndpoint(EndpointId);

impl LocalEndpoint {
    pub(crate) fn new(id: EndpointId) -> LocalEndpoint {
        LOCAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id);
        LocalEndpoint(id)
    }
}

impl Drop for LocalEndpoint {
    fn drop(&mut self) {
        let mut local = LOCAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = local.iter().position(|&id| id == self.0) {
            local.swap_remove(at);
        }
    }
}

fn is_local(id: EndpointId) -> bool {
    LOCAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(&id)
}

/// Whether the endpoint `(kind, id)` is alive, judged by its lock alone (or, for an endpoint
/// of this process, by its [`LocalEndpoint`]: never by probing our own lock).
///
/// A lock file exists a moment before its owner locks it: an endpoint that is starting looks
/// dead. Cleanup therefore leaves alone an endpoint whose lock is free, whose record does not
/// exist yet and whose lock file is younger than [`TEMP_GRACE`] (see
/// [`Listing::leftovers`]); an endpoint that wrote its record had locked its lock first.
pub(crate) fn is_alive(dirs: &ChannelDirs, kind: EndpointKind, id: EndpointId) -> bool {
    if is_local(id) {
        return true;
    }
    // An error probing (permissions, I/O) counts as alive: never clean up what we cannot judge.
    !matches!(
        sys::probe_lock(&lock_path(dirs, kind, id)),
        Ok(LockState::Free | LockState::Missing)
    )
}

/// Whether the file at `path` was modified less than [`TEMP_GRACE`] ago (a time in the
/// future counts as old: a planted date must not protect a file for ever).
fn is_young(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < TEMP_GRACE)
}

/// Dead endpoints cleaned up per scan at most: the rest wait for the next scan, which the
/// runtime runs at once, after the other endpoints' heartbeats.
pub(crate) const CLEANUP_BATCH: usize = 512;

/// Time one scan may spend cleaning up once it has removed something: the batch is cut short
/// when removals are slow. Natively a batch of 512 takes ~50 ms; under Wine a removal took
/// 8-10 ms in a directory of 10,000 dead endpoints (a batch 4-5 s, during which the runtime
/// thread beat for no endpoint of the process, and peers timed them out).
pub(crate) const CLEANUP_TIME: std::time::Duration = std::time::Duration::from_millis(100);

/// What is left of one scan's cleanup budget: [`CLEANUP_BATCH`] endpoints and
/// [`CLEANUP_TIME`].
#[derive(Debug)]
pub(crate) struct CleanupBudget {
    left: usize,
    until: std::time::Instant,
    spent_any: bool,
}

impl CleanupBudget {
    /// A full budget, from now.
    pub(crate) fn new() -> CleanupBudget {
        CleanupBudget::with(CLEANUP_BATCH, CLEANUP_TIME)
    }

    /// A budget of `count` endpoints and `time`.
    pub(crate) fn with(count: usize, time: std::time::Duration) -> CleanupBudget {
        CleanupBudget {
            left: count,
            until: std::time::Instant::now() + time,
            spent_any: false,
        }
    }

    /// Whether the budget is spent: no endpoint left, or the time is up after at least one
    /// removal (so that a scan that spends its time only on live endpoints' probes does not
    /// ask to be run again at once, and every scan that asks for more made progress).
    pub(crate) fn exhausted(&mut self) -> bool {
        if self.left > 0 && self.spent_any && std::time::Instant::now() >= self.until {
            self.left = 0;
        }
        self.left == 0
    }

    /// Counts one endpoint cleaned up.
    pub(crate) fn spend(&mut self) {
        self.left = self.left.saturating_sub(1);
        self.spent_any = true;
    }
}

/// A temporary file younger than this is left alone even when its creator looks dead: it
/// may be in the instant between its creation and its lock.
const TEMP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What one file of an endpoint is, for the order of removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FileRole {
    Record,
    Temporary,
    Bell,
    /// A ring: `(publisher, subscriber)`.
    Ring,
    /// A publisher's payload segment: after its rings, and kept while one of them is.
    Payload,
    /// Removed last, so that a crash half-way through cleaning leaves the endpoint
    /// recognisably dead.
    Lock,
}

/// One listing of a channel's directories, indexed by endpoint: every file whose name is
/// ours (final or temporary), read once, so that cleaning up after many dead endpoints
/// costs one directory read, not one per endpoint.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    files: std::collections::HashMap<(EndpointKind, EndpointId), Vec<(FileRole, PathBuf)>>,
    /// Rings by (publisher, subscriber, generation), final names only.
    rings: Vec<(EndpointId, EndpointId, u64, PathBuf)>,
    /// Endpoints with a record under its final name.
    records: Vec<(EndpointKind, EndpointId)>,
}

/// Opens `dir` for listing; `None` if it is gone or cannot be listed. A failure other than
/// "not found" is retried for up to ~100 ms: under Wine, listing a directory failed now and
/// then with a sharing violation (os error 32) while another process tried to remove it (the
/// last endpoint of a channel leaving); an empty listing then hid a running subscriber from
/// a new publisher's `build`, and the message published right after it was lost.
fn read_dir_retrying(dir: &Path) -> Option<std::fs::ReadDir> {
    let mut attempts = 0;
    loop {
        match std::fs::read_dir(dir) {
            Ok(entries) => return Some(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || attempts >= 100 => return None,
            Err(_) => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

impl Listing {
    pub(crate) fn read(dirs: &ChannelDirs) -> Listing {
        let mut out = Listing::default();
        let mut seen = Vec::with_capacity(2);
        for dir in [&dirs.records, &dirs.segments] {
            if seen.contains(&dir) {
                continue;
            }
            seen.push(dir);
            let Some(entries) = read_dir_retrying(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                out.add(name, entry.path());
            }
        }
        out
    }

    fn add(&mut self, name: &str, path: PathBuf) {
        // Temporary names: `.<final name>.tmp`, or `.<final name>.<pid>.tmp` for rings.
        let temp = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .map(|n| match n.rsplit_once('.') {
                Some((base, pid))
                    if base.starts_with("ring-") && pid.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    base
                }
                _ => n,
            });
        let base = temp.unwrap_or(name);
        if let Some((kind, id, ext)) = parse_endpoint_file(base) {
            let role = match (temp.is_some(), ext) {
                (true, _) => FileRole::Temporary,
                (false, "json") => FileRole::Record,
                (false, "lock") => FileRole::Lock,
                (false, "pay") => FileRole::Payload,
                _ => FileRole::Bell,
            };
            if role == FileRole::Record {
                self.records.push((kind, id));
            }
            self.files.entry((kind, id)).or_default().push((role, path));
        } else if let Some((p, s, generation)) = parse_ring_name(base) {
            let role = if temp.is_some() {
                FileRole::Temporary
            } else {
                self.rings.push((p, s, generation, path.clone()));
                FileRole::Ring
            };
            for key in [(EndpointKind::Publisher, p), (EndpointKind::Subscriber, s)] {
                self.files
                    .entry(key)
                    .or_default()
                    .push((role, path.clone()));
            }
        }
    }

    /// Whether the record of `(kind, id)` is one of ours (readable, valid, matching its
    /// name). Runtimes clean up only after such endpoints: a file that merely has our name
    /// pattern is left alone (`mmipc clean` removes it).
    pub(crate) fn is_ours(&self, dirs: &ChannelDirs, kind: EndpointKind, id: EndpointId) -> bool {
        read_record_of(dirs, kind, id).is_some()
    }

    /// Removes what dead endpoints of `kind` (other than `me`) left, those whose record is ours,
    /// then what dead endpoints without a record left, at most `budget` endpoints in all.
    pub(crate) fn clean_dead(
        &self,
        dirs: &ChannelDirs,
        kind: EndpointKind,
        me: EndpointId,
        budget: &mut CleanupBudget,
    ) {
        for id in self.records(kind) {
            if budget.exhausted() {
                return;
            }
            if id != me && !is_alive(dirs, kind, id) && self.is_ours(dirs, kind, id) {
                budget.spend();
                self.remove_dead(dirs, kind, id);
            }
        }
        self.clean_recordless(dirs, budget);
    }

    /// Removes what dead endpoints without a record left (killed while starting, before
    /// writing it: a lock, a doorbell, temporary files; or rings of a subscriber whose record
    /// is gone), at most `budget` of them. The young-lock rule of [`Listing::leftovers`]
    /// protects endpoints that are starting.
    pub(crate) fn clean_recordless(&self, dirs: &ChannelDirs, budget: &mut CleanupBudget) {
        for (&(kind, id), files) in &self.files {
            if budget.exhausted() {
                return;
            }
            if files.iter().any(|(role, _)| *role == FileRole::Record) {
                continue;
            }
            if !is_alive(dirs, kind, id) && !self.remove_dead(dirs, kind, id).is_empty() {
                budget.spend();
            }
        }
    }

    /// Endpoints of `kind` with a record under its final name.
    pub(crate) fn records(&self, kind: EndpointKind) -> impl Iterator<Item = EndpointId> + '_ {
        self.records
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|&(_, id)| id)
    }

    /// Every endpoint that has a recognisable file (record, lock, doorbell, ring or a
    /// temporary one).
    pub(crate) fn endpoints(&self) -> Vec<(EndpointKind, EndpointId)> {
        let mut v: Vec<_> = self.files.keys().copied().collect();
        v.sort();
        v
    }

    /// Rings (final names) addressed to subscriber `sub`: `(publisher, generation, path)`.
    pub(crate) fn rings_to(
        &self,
        sub: EndpointId,
    ) -> impl Iterator<Item = (EndpointId, u64, &Path)> {
        self.rings
            .iter()
            .filter(move |r| r.1 == sub)
            .map(|(p, _, g, path)| (*p, *g, path.as_path()))
    }

    /// The files a dead endpoint `(kind, id)` left, in removal order (the lock file last).
    /// A dead publisher's ring to a live subscriber stays (that subscriber drains and removes
    /// it); a temporary file younger than [`TEMP_GRACE`] stays.
    pub(crate) fn leftovers(
        &self,
        dirs: &ChannelDirs,
        kind: EndpointKind,
        id: EndpointId,
    ) -> Vec<PathBuf> {
        let Some(files) = self.files.get(&(kind, id)) else {
            return Vec::new();
        };
        // Starting (its lock not yet locked, its record not yet written): leave it alone.
        let starting = !files.iter().any(|(role, _)| *role == FileRole::Record)
            && files
                .iter()
                .any(|(role, path)| *role == FileRole::Lock && is_young(path));
        if starting {
            return Vec::new();
        }
        let ring_goes = |path: &PathBuf| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_ring_name)
                .is_none_or(|(_, sub, _)| {
                    let alive = is_alive(dirs, EndpointKind::Subscriber, sub);
                    !ring_outlives_publisher(alive, None)
                })
        };
        let publisher = kind == EndpointKind::Publisher;
        // The payload segment stays while a ring it left does (descriptors in it name blocks).
        let rings_stay = publisher
            && files
                .iter()
                .any(|(role, path)| *role == FileRole::Ring && !ring_goes(path));
        let mut files: Vec<&(FileRole, PathBuf)> = files
            .iter()
            .filter(|(role, path)| match role {
                FileRole::Ring if publisher => ring_goes(path),
                FileRole::Payload => !rings_stay,
                FileRole::Temporary => !is_young(path),
                _ => true,
            })
            .collect();
        files.sort_by_key(|(role, _)| *role);
        files.into_iter().map(|(_, p)| p.clone()).collect()
    }

    /// Removes what [`Listing::leftovers`] lists; returns what was removed. Only call after
    /// [`is_alive`] said no.
    pub(crate) fn remove_dead(
        &self,
        dirs: &ChannelDirs,
        kind: EndpointKind,
        id: EndpointId,
    ) -> Vec<PathBuf> {
        self.leftovers(dirs, kind, id)
            .into_iter()
            .filter(|p| sys::remove_file(p).is_ok())
            .collect()
    }
}

/// Removes everything a dead endpoint left: its record, its segments, then its lock file.
/// Only call after [`is_alive`] said no. Returns what was removed.
#[cfg(test)]
pub(crate) fn remove_dead(dirs: &ChannelDirs, kind: EndpointKind, id: EndpointId) -> Vec<PathBuf> {
    Listing::read(dirs).remove_dead(dirs, kind, id)
}

/// Every endpoint that has a recognisable file (record, lock or doorbell) in the channel,
/// whether or not its record is readable.
pub(crate) fn endpoints_with_files(dirs: &ChannelDirs) -> Vec<(EndpointKind, EndpointId)> {
    Listing::read(dirs).endpoints()
}

/// Whether `name` is the final name of one of our files (record, lock, doorbell, ring).
pub(crate) fn is_our_name(name: &str) -> bool {
    parse_endpoint_file(name).is_some() || parse_ring_name(name).is_some()
}

/// Parses `pub-<id>.json`, `pub-<id>.lock`, `sub-<id>.bell`, `sub-<id>.wake` (a wake-up
/// pipe) and the like.
fn parse_endpoint_file(name: &str) -> Option<(EndpointKind, EndpointId, &str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    if !matches!(ext, "json" | "lock" | "bell" | "wake" | "pay") {
        return None;
    }
    let (kind, id) = if let Some(id) = stem.strip_prefix("pub-") {
        (EndpointKind::Publisher, id)
    } else {
        (EndpointKind::Subscriber, stem.strip_prefix("sub-")?)
    };
    if (kind == EndpointKind::Publisher && ext == "bell")
        || (kind == EndpointKind::Subscriber && ext == "pay")
    {
        return None;
    }
    Some((kind, id.parse().ok()?, ext))
}

/// Ring segments (and their temporary names) whose publisher (or subscriber) is `id`.
pub(crate) fn rings_of(dirs: &ChannelDirs, kind: EndpointKind, id: EndpointId) -> Vec<PathBuf> {
    let listing = Listing::read(dirs);
    let Some(files) = listing.files.get(&(kind, id)) else {
        return Vec::new();
    };
    files
        .iter()
        .filter(|(_, p)| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ring-") || n.starts_with(".ring-"))
        })
        .map(|(_, p)| p.clone())
        .collect()
}

/// Reads the record of `(kind, id)`; `None` if unreadable, oversized, malformed or not
/// matching its name.
pub(crate) fn read_record_of(
    dirs: &ChannelDirs,
    kind: EndpointKind,
    id: EndpointId,
) -> Option<Record> {
    read_record(&record_path(dirs, kind, id), dirs.access).filter(|record| {
        record.kind == kind && record.id == id.to_string() && record.protocol == PROTOCOL
    })
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::segment::ring_path;

    fn dirs() -> (tempfile::TempDir, ChannelDirs) {
        let root = tempfile::tempdir().unwrap();
        let d = ChannelDirs {
            records: root.path().to_path_buf(),
            segments: root.path().to_path_buf(),
            access: sys::Access::Private,
        };
        (root, d)
    }

    #[test]
    fn ids_round_trip_and_reject_junk() {
        let id = EndpointId::random();
        assert_eq!(id.to_string().parse::<EndpointId>().unwrap(), id);
        for junk in [
            "",
            "xyz",
            "0123456789ABCDEF0123456789ABCDEF",
            "+123456789abcdef0123456789abcdef",
        ] {
            assert!(junk.parse::<EndpointId>().is_err(), "{junk}");
        }
        assert_ne!(EndpointId::random(), EndpointId::random());
    }

    #[test]
    fn ring_names_parse_exactly() {
        let (a, b) = (EndpointId::random(), EndpointId::random());
        let (_root, d) = dirs();
        let p = ring_path(&d, a, b, 7);
        assert_eq!(
            parse_ring_name(p.file_name().unwrap().to_str().unwrap()),
            Some((a, b, 7))
        );
        assert_eq!(parse_ring_name(&format!("ring-{a}-{b}-")), None);
        assert_eq!(parse_ring_name(&format!("ring-{a}-{b}-1x")), None);
        assert_eq!(parse_ring_name(&format!("ring-{a}{b}-1")), None);
    }

    /// Defect (seen under Wine, issue 13): the cleanup of one scan was bounded by a count
    /// only; at 8-10 ms a removal a batch of 512 held the runtime thread 4-5 s, and the
    /// process's other endpoints missed their heartbeats. Once it has removed something, a
    /// scan stops when its time is up.
    #[test]
    fn a_scan_stops_cleaning_when_its_time_is_up() {
        let (_root, d) = dirs();
        for _ in 0..3 {
            let id = EndpointId::random();
            let rec = Record {
                protocol: PROTOCOL,
                kind: EndpointKind::Subscriber,
                id: id.to_string(),
                pid: 1,
                max_message_size: 10,
                heartbeat_interval_ms: 1000,
                created_unix_ms: 0,
                payloads: false,
            };
            write_record(&d, &rec, id).unwrap();
        }
        let records = || Listing::read(&d).records(EndpointKind::Subscriber).count();
        let me = EndpointId::random();
        let mut no_time = CleanupBudget::with(CLEANUP_BATCH, std::time::Duration::ZERO);
        assert!(!no_time.exhausted(), "nothing removed yet: not spent");
        Listing::read(&d).clean_dead(&d, EndpointKind::Subscriber, me, &mut no_time);
        assert_eq!(records(), 2, "one removed, then the time was up");
        assert!(no_time.exhausted(), "more may wait");
        let mut budget = CleanupBudget::new();
        Listing::read(&d).clean_dead(&d, EndpointKind::Subscriber, me, &mut budget);
        assert_eq!(records(), 0);
        assert!(!budget.exhausted(), "all done");
    }

    #[test]
    fn scan_skips_junk_and_never_deletes_unknown_files() {
        let (_root, d) = dirs();
        let id = EndpointId::random();
        let rec = Record {
            protocol: PROTOCOL,
            kind: EndpointKind::Subscriber,
            id: id.to_string(),
            pid: 1,
            max_message_size: 10,
            heartbeat_interval_ms: 1000,
            created_unix_ms: 0,
            payloads: false,
        };
        write_record(&d, &rec, id).unwrap();
        let junk = EndpointId::random();
        std::fs::write(
            d.records.join(format!("sub-{junk}.json")),
            b"{\"protocol\": 1, \"kind\"",
        )
        .unwrap();
        let wrong_id = EndpointId::random();
        std::fs::write(
            d.records.join(format!("sub-{wrong_id}.json")),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
        std::fs::write(d.records.join("notes.json"), b"user data").unwrap();
        std::fs::write(d.records.join("sub-zzz.json"), b"{}").unwrap();
        let found = scan(&d, EndpointKind::Subscriber);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, id);
        assert!(scan(&d, EndpointKind::Publisher).is_empty());
        // The junk record's owner has no lock: it counts as dead, and cleaning it up removes
        // only files with its exact names.
        assert!(!is_alive(&d, EndpointKind::Subscriber, junk));
        remove_dead(&d, EndpointKind::Subscriber, junk);
        assert!(d.records.join("notes.json").exists());
        assert!(d.records.join("sub-zzz.json").exists());
        assert!(record_path(&d, EndpointKind::Subscriber, id).exists());
    }

    #[test]
    fn liveness_follows_the_lock() {
        let (_root, d) = dirs();
        let id = EndpointId::random();
        assert!(!is_alive(&d, EndpointKind::Publisher, id));
        let lock = sys::LockFile::acquire(&lock_path(&d, EndpointKind::Publisher, id), d.access).unwrap();
        assert!(is_alive(&d, EndpointKind::Publisher, id));
        drop(lock);
        assert!(!is_alive(&d, EndpointKind::Publisher, id));
        // A young lock without a record may be an endpoint that is starting: left alone.
        assert!(remove_dead(&d, EndpointKind::Publisher, id).is_empty());
        // An endpoint that wrote its record had locked first: dead, and cleaned.
        let record = Record {
            protocol: PROTOCOL,
            kind: EndpointKind::Publisher,
            id: id.to_string(),
            pid: 1,
            max_message_size: 10,
            heartbeat_interval_ms: 1000,
            created_unix_ms: 0,
            payloads: false,
        };
        write_record(&d, &record, id).unwrap();
        let removed = remove_dead(&d, EndpointKind::Publisher, id);
        assert_eq!(
            removed,
            vec![
                record_path(&d, EndpointKind::Publisher, id),
                lock_path(&d, EndpointKind::Publisher, id)
            ]
        );
    }
}
