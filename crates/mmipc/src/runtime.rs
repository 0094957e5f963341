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
//! `IN_CLOSE_WRITE`) and writes to temporary names are ignored, so a scan never triggers
//! another scan. The fallback rescan (for file systems where inotify says nothing) looks at a
//! watched directory only when its modification time changed, plus a full safety-net pass
//! every [`SAFETY_RESCAN`]; only directories whose watch could not be set are rescanned every
//! [`RESCAN_INTERVAL`]. Ticks of many endpoints are batched into one wake-up.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};

use crate::channel::ChannelDirs;

/// Fallback rescan period: directories without a working watch are rescanned this often, and
/// watched ones are checked for a changed modification time.
pub(crate) const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Every watched directory is rescanned this often whatever inotify said (a lost event, a
/// queue overflow we did not see).
pub(crate) const SAFETY_RESCAN: Duration = Duration::from_secs(15);

/// How early a tick may come: ticks due within this window share one wake-up. Endpoints beat
/// when a beat is due within it, so that an early tick does not postpone a heartbeat.
pub(crate) const TICK_SLACK: Duration = Duration::from_millis(20);

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

/// Whether a file event can change what a scan finds. Our own segment opens (read-write, so
/// they end in a close-after-write) and temporary names must not count: a scan opens
/// segments, and counting its own events would make it rescan forever.
fn relevant(kind: &EventKind, path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') {
        // Temporary names: their rename to the final name is the event that counts.
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
}

/// A watched directory: how many endpoints use it, whether the watch works, and its
/// modification time at the last scan.
struct Watched {
    users: usize,
    watching: bool,
    mtime: Option<SystemTime>,
}

fn mtime(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir).and_then(|m| m.modified()).ok()
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
    loop {
        let now = Instant::now();
        let first = if entries.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            let wake = if again.is_empty() {
                entries
                    .iter()
                    .map(|e| e.next_tick)
                    .min()
                    .unwrap_or(now)
                    .min(last_fallback + RESCAN_INTERVAL)
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
                    mtime: None,
                });
                if w.users == 0 {
                    w.watching = watcher
                        .as_mut()
                        .is_some_and(|n| n.watch(dir, RecursiveMode::NonRecursive).is_ok());
                    w.mtime = mtime(dir);
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
            });
        }
        // Forget endpoints that are gone.
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
                            watched.remove(dir);
                        }
                    }
                }
            }
            alive
        });
        let now = Instant::now();
        if now >= last_fallback + RESCAN_INTERVAL {
            last_fallback = now;
            if now >= last_safety + SAFETY_RESCAN {
                last_safety = now;
                all = true;
            }
            // One stat per directory: rescan what changed, and what we cannot watch.
            for (dir, w) in &watched {
                if !w.watching || mtime(dir) != w.mtime {
                    dirty.insert(dir.clone());
                }
            }
        }
        for (dir, w) in &mut watched {
            if all || dirty.contains(dir) {
                w.mtime = mtime(dir);
            }
        }
        // Ticks due soon are taken now with those due already, so that many endpoints cost
        // few wake-ups (a heartbeat a little early is harmless).
        let horizon = now + TICK_SLACK;
        for e in &mut entries {
            let Some(ep) = e.endpoint.upgrade() else {
                continue;
            };
            if (all || e.dirs.iter().any(|d| dirty.contains(d))) && ep.scan() {
                again.insert(e.dirs[0].clone());
            }
            if e.next_tick <= horizon {
                e.next_tick = ep.tick(now);
            }
        }
    }
}
