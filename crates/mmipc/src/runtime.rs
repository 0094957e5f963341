//! The process-wide background thread: one per process, whatever the number of endpoints.
//!
//! It watches every channel directory in use (inotify through the `notify` crate, whose
//! backend forwards events from its own small thread), rescans a directory when something in
//! it changed, and calls each endpoint's `tick` for heartbeats, timeouts and bounded cleanup
//! work. Endpoints are held weakly; a dropped endpoint simply disappears from the list.
//!
//! A crashed peer is noticed at once: when the kernel closes a dead process's lock file, inotify
//! reports `IN_CLOSE_WRITE` on it, which triggers a rescan and a lock probe.
//!
//! **Idle costs nothing.** Only events that can change what a scan finds count: a file
//! created, removed or renamed under one of our names, and the close of a lock file opened for
//! writing. Our own read-write opens of doorbells and rings (which also end in
//! `IN_CLOSE_WRITE`), writes to temporary names and files that are not ours are ignored, so a
//! scan never triggers another scan and junk costs nothing. Watched directories are rescanned
//! on events only, plus a full safety-net pass every [`SAFETY_RESCAN`]; only directories whose
//! watch could not be set are rescanned every [`RESCAN_INTERVAL`]. Each endpoint's tick may
//! come up to an eighth of its interval early, so that the ticks of many endpoints share a
//! few wake-ups.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{OnceLock, Weak};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};

use crate::channel::ChannelDirs;
use crate::sys;

/// Fallback rescan period: directories without a working watch are rescanned this often, and
/// watched ones are checked for a changed modification time.
pub(crate) const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// How often a directory no endpoint uses is tried again for removal.
const UNUSED_RETRY: Duration = Duration::from_millis(5);
/// How long it is tried (an endpoint of another process may be using it: then it stays).
const UNUSED_PATIENCE: Duration = Duration::from_secs(2);

/// Every watched directory is rescanned this often whatever inotify said (a lost event, a
/// queue overflow we did not see).
pub(crate) const SAFETY_RESCAN: Duration = Duration::from_secs(60);

/// How early an endpoint may be ticked, for a tick interval of `interval`: ticks due within
/// this window share one wake-up. Endpoints beat when a beat is due within it, so that an
/// early tick does not postpone a heartbeat.
pub(crate) fn tick_slack(interval: Duration) -> Duration {
    (interval / 8).min(Duration::from_millis(100))
}

/// What the runtime needs from a publisher or subscriber.
pub(crate) trait Endpoint: Send + Sync {
    fn dirs(&self) -> &ChannelDirs;
    /// Discovery and crash detection from the directory contents. Returns `true` if work is
    /// left (cleanup is done in bounded batches): the runtime then scans again at once,
    /// after every endpoint's due ticks.
    fn scan(&self) -> bool;
    /// Heartbeats, timeouts and pending cleanup; returns when it wants to be called next.
    fn tick(&self, now: Instant) -> Instant;
    /// The endpoint is shutting down: stop calling it.
    fn is_closed(&self) -> bool;
}

enum Msg {
    Add(Weak<dyn Endpoint>),
    Fs(PathBuf),
    Rescan,
    /// An endpoint closed: forget it and stop watching directories no one uses any more.
    Forget,
}

fn sender() -> &'static mpsc::Sender<Msg> {
    static SENDER: OnceLock<mpsc::Sender<Msg>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        let fs_tx = tx.clone();
        std::thread::Builder::new()
            .name("mmipc-runtime".into())
            .spawn(move || run(rx, fs_tx))
            .expect("cannot spawn the mmipc runtime thread");
        tx
    })
}

/// Hands an endpoint to the runtime, which scans for it at once.
pub(crate) fn register(endpoint: Weak<dyn Endpoint>) {
    let _ = sender().send(Msg::Add(endpoint));
}

/// Asks for an immediate rescan of every endpoint.
pub(crate) fn rescan() {
    let _ = sender().send(Msg::Rescan);
}

/// Tells the runtime an endpoint closed, so that it stops watching the directories no one
/// uses at once (on Windows a watched directory cannot be removed).
pub(crate) fn forget() {
    let _ = sender().send(Msg::Forget);
}

/// Whether a file event can change what a scan finds. Our own segment opens (read-write, so
/// they end in a close-after-write) and temporary names must not count: a scan opens
/// segments, and counting its own events would make it rescan forever.
fn relevant(kind: &EventKind, path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') || !crate::discovery::is_our_name(name) {
        // Temporary names (their rename to the final name is the event that counts), and
        // files that are not ours: nothing a scan would look at.
        return false;
    }
    match kind {
        EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Any => true,
        // A lock file is closed after writing when its owner dies (or closes cleanly);
        // nothing else's close matters.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => name.ends_with(".lock"),
        _ => false,
    }
}

struct Entry {
    endpoint: Weak<dyn Endpoint>,
    dirs: Vec<PathBuf>,
    next_tick: Instant,
    /// How early it may be ticked ([`tick_slack`] of its last interval).
    slack: Duration,
}

/// A watched directory: how many endpoints use it, and whether the watch works.
struct Watched {
    users: usize,
    watching: bool,
    /// The directory's modification time when last looked at on the clock (where the watch
    /// may lose events).
    modified: Option<std::time::SystemTime>,
}

fn run(rx: mpsc::Receiver<Msg>, tx: mpsc::Sender<Msg>) {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else {
            let _ = tx.send(Msg::Rescan);
            return;
        };
        if ev.need_rescan() {
            let _ = tx.send(Msg::Rescan);
            return;
        }
        for p in ev.paths {
            if relevant(&ev.kind, &p) {
                let _ = tx.send(Msg::Fs(p));
            }
        }
    })
    .ok();
    let mut entries: Vec<Entry> = Vec::new();
    let mut watched: HashMap<PathBuf, Watched> = HashMap::new();
    let mut last_fallback = Instant::now();
    let mut last_safety = Instant::now();
    // Directories whose scan left work for later: scanned again on the next turn.
    let mut again: HashSet<PathBuf> = HashSet::new();
    // Directories no endpoint uses any more, to remove once empty: on Windows a directory
    // cannot go while a watch or a mapping of a file in it lives, and both go a moment after
    // the endpoint closes. Retried every few milliseconds until the deadline.
    let mut unused: Vec<(PathBuf, Instant)> = Vec::new();
    loop {
        unused.retain(|(dir, deadline)| {
            if watched.contains_key(dir) {
                // An endpoint of this process uses it again: it stays.
                return false;
            }
            // Only a directory that lists empty is tried: a removal attempt on a directory in
            // use made listings and lookups in it fail for a moment under Wine (sharing
            // violation, os error 32). What it still holds (tombstones, names of files being
            // deleted, another process's endpoint) may go before the deadline.
            match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
                Ok(true) => {}
                _ => return Instant::now() < *deadline,
            }
            let gone = match std::fs::remove_dir(dir) {
                Ok(()) => true,
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            !gone && Instant::now() < *deadline
        });
        let now = Instant::now();
        let first = if entries.is_empty() && unused.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            let wake = if again.is_empty() {
                let wake = entries
                    .iter()
                    .map(|e| e.next_tick)
                    .min()
                    .unwrap_or(now + RESCAN_INTERVAL)
                    .min(last_fallback + RESCAN_INTERVAL);
                if unused.is_empty() {
                    wake
                } else {
                    wake.min(now + UNUSED_RETRY)
                }
            } else {
                now
            };
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let mut dirty: HashSet<PathBuf> = std::mem::take(&mut again);
        let mut all = false;
        let mut forget = false;
        let mut added = Vec::new();
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match msg {
                Msg::Add(ep) => added.push(ep),
                Msg::Fs(path) => {
                    if let Some(parent) = path.parent() {
                        dirty.insert(parent.to_path_buf());
                    }
                }
                Msg::Rescan => all = true,
                Msg::Forget => forget = true,
            }
        }
        for ep in added {
            let Some(strong) = ep.upgrade() else { continue };
            let d = strong.dirs();
            let mut dirs = vec![d.records.clone()];
            if d.segments != d.records {
                dirs.push(d.segments.clone());
            }
            for dir in &dirs {
                let w = watched.entry(dir.clone()).or_insert(Watched {
                    users: 0,
                    watching: false,
                    modified: None,
                });
                // Watched again even if already watched: the last endpoint of a channel removes
                // its directory, and a new endpoint may have made it anew (a new inode) before
                // we forgot the old one.
                // Where a watch keeps its directory from being removed (Windows), a watched
                // directory is the same one: watching it again would only open a window for
                // lost events (and notify's Windows backend would leak the old watch's
                // handle, so that the directory could never be removed).
                if !(w.watching && sys::WATCH_PINS_DIRECTORY) {
                    w.watching = watcher
                        .as_mut()
                        .is_some_and(|n| n.watch(dir, RecursiveMode::NonRecursive).is_ok());
                }
                w.users += 1;
            }
            if strong.scan() {
                again.insert(dirs[0].clone());
            }
            entries.push(Entry {
                endpoint: ep,
                dirs,
                next_tick: Instant::now(),
                slack: Duration::ZERO,
            });
        }
        let now = Instant::now();
        let fallback = now >= last_fallback + RESCAN_INTERVAL;
        if fallback {
            last_fallback = now;
            if now >= last_safety + SAFETY_RESCAN {
                last_safety = now;
                all = true;
            }
            // Only directories we cannot watch are rescanned on the clock, and, where the
            // watch may lose events, watched ones whose modification time changed (one
            // `stat` per directory per interval).
            for (dir, w) in &mut watched {
                if !w.watching {
                    dirty.insert(dir.clone());
                } else if sys::WATCH_MAY_LOSE_EVENTS {
                    let modified = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
                    if modified != w.modified {
                        w.modified = modified;
                        dirty.insert(dir.clone());
                    }
                }
            }
        }
        if fallback || forget {
            // Forget endpoints that are gone (when one closes, and once per interval: a
            // closed endpoint's tick and scan return at once meanwhile).
            entries.retain(|e| {
                let alive = e.endpoint.upgrade().is_some_and(|ep| !ep.is_closed());
                if !alive {
                    for dir in &e.dirs {
                        if let Some(w) = watched.get_mut(dir) {
                            w.users -= 1;
                            if w.users == 0 {
                                if w.watching
                                    && let Some(n) = watcher.as_mut()
                                {
                                    let _ = n.unwatch(dir);
                                }
                                // Its last endpoint may not have removed it (Windows: still
                                // watched or mapped); only an empty one goes.
                                unused.push((dir.clone(), now + UNUSED_PATIENCE));
                                watched.remove(dir);
                            }
                        }
                    }
                }
                alive
            });
        }
        let rescan = all || !dirty.is_empty();
        for e in &mut entries {
            let scan = rescan && (all || e.dirs.iter().any(|d| dirty.contains(d)));
            if !scan && e.next_tick > now + e.slack {
                continue;
            }
            let Some(ep) = e.endpoint.upgrade() else {
                continue;
            };
            if scan && ep.scan() {
                again.insert(e.dirs[0].clone());
            }
            if e.next_tick <= now + e.slack {
                let next = ep.tick(now);
                e.slack = tick_slack(next.saturating_duration_since(now));
                e.next_tick = next;
            }
        }
    }
}
