//! The process-wide background thread: one per process, whatever the number of endpoints.
//!
//! It watches every channel directory in use (inotify through the `notify` crate, whose
//! backend forwards events from its own small thread), rescans on each change and every
//! [`RESCAN_INTERVAL`] as a fallback, and calls each endpoint's `tick` for heartbeats and
//! timeouts. Endpoints are held weakly; a dropped endpoint simply disappears from the list.
//!
//! A crashed peer is noticed at once: when the kernel closes a dead process's lock file, inotify
//! reports `IN_CLOSE_WRITE` on it, which triggers a rescan and a lock probe.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{OnceLock, Weak};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};

use crate::channel::ChannelDirs;

/// Fallback rescan period, for file systems where inotify says nothing.
pub(crate) const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// What the runtime needs from a publisher or subscriber.
pub(crate) trait Endpoint: Send + Sync {
    fn dirs(&self) -> &ChannelDirs;
    /// Discovery and crash detection from the directory contents.
    fn scan(&self);
    /// Heartbeats and timeouts; returns when it wants to be called next.
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

fn relevant(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(_)
            | EventKind::Any
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

struct Entry {
    endpoint: Weak<dyn Endpoint>,
    dirs: Vec<PathBuf>,
    next_tick: Instant,
}

fn run(rx: mpsc::Receiver<Msg>, tx: mpsc::Sender<Msg>) {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && relevant(&ev.kind)
        {
            for p in ev.paths {
                let _ = tx.send(Msg::Fs(p));
            }
        }
    })
    .ok();
    let mut entries: Vec<Entry> = Vec::new();
    let mut watched: HashMap<PathBuf, usize> = HashMap::new();
    let mut last_rescan = Instant::now();
    loop {
        let now = Instant::now();
        let first = if entries.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            let wake = entries
                .iter()
                .map(|e| e.next_tick)
                .min()
                .unwrap_or(now)
                .min(last_rescan + RESCAN_INTERVAL);
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let mut dirty: HashSet<PathBuf> = HashSet::new();
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
                let count = watched.entry(dir.clone()).or_insert(0);
                if *count == 0
                    && let Some(w) = watcher.as_mut()
                {
                    let _ = w.watch(dir, RecursiveMode::NonRecursive);
                }
                *count += 1;
            }
            strong.scan();
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
                    if let Some(count) = watched.get_mut(dir) {
                        *count -= 1;
                        if *count == 0 {
                            watched.remove(dir);
                            if let Some(w) = watcher.as_mut() {
                                let _ = w.unwatch(dir);
                            }
                        }
                    }
                }
            }
            alive
        });
        let now = Instant::now();
        if now >= last_rescan + RESCAN_INTERVAL {
            all = true;
            last_rescan = now;
        }
        for e in &mut entries {
            let Some(ep) = e.endpoint.upgrade() else {
                continue;
            };
            if all || e.dirs.iter().any(|d| dirty.contains(d)) {
                ep.scan();
            }
            if e.next_tick <= now {
                e.next_tick = ep.tick(now);
            }
        }
    }
}
