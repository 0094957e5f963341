//! Windows backend: segments are files under the per-user root mapped shared (`memmap2`, i.e.
//! `CreateFileMapping`/`MapViewOfFile`), the wake-up for a shared word is a named kernel event
//! (`WaitOnAddress` only wakes threads of its own process), lock files are held with
//! `LockFileEx` (std's `File::try_lock`), which the OS releases when a process dies.
//!
//! The per-user root lives under `%LOCALAPPDATA%`, whose access control list already keeps
//! other users out; directories are checked not to be symbolic links or junctions.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    CloseHandle, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_ATTRIBUTE_TEMPORARY, FILE_FLAG_OPEN_REPARSE_POINT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, INFINITE, OpenProcess, PROCESS_SYNCHRONIZE, RegisterWaitForSingleObject,
    ResetEvent, SetEvent, UnregisterWaitEx, WT_EXECUTEONLYONCE, WaitForSingleObject, WaitOnAddress,
    WakeByAddressAll,
};

use super::{Access, FutexWait, LockState};
use crate::error::{Error, Result};
use crate::sync::{FutexWord, Ordering};

/// A named shared segment (a file) mapped read-write into this process.
#[derive(Debug)]
pub(crate) struct Segment {
    map: memmap2::MmapRaw,
    path: PathBuf,
    unlink_on_drop: bool,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            // Best effort: a peer or a cleaner may have removed it already.
            let _ = remove_now(&self.path);
        }
    }
}

/// Removes the name `path` at once, even while the file is mapped somewhere. Windows keeps
/// the name of a deleted file until its last handle and mapping close (so the directory
/// still lists it, and nothing can be created under it); a rename frees the name at once.
/// The file is therefore renamed to a hidden tombstone name first (which no mmipc reader
/// parses) and deleted there: the tombstone vanishes when the last mapping closes.
fn remove_now(path: &Path) -> io::Result<()> {
    static NEXT: crate::sync::ProcessLocalAtomicU64 = crate::sync::ProcessLocalAtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tomb = path.with_file_name(format!(
        ".{name}.{}-{unique}-{nanos}.gone",
        std::process::id()
    ));
    match std::fs::rename(path, &tomb) {
        Ok(()) => {
            // The name is free now; the content goes when the last mapping closes.
            let _ = std::fs::remove_file(&tomb);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(_) => std::fs::remove_file(path),
    }
}

/// Windows has no user id to name a directory by: the per-user root is under the user's
/// local application data instead ([`platform_root`]).
pub(crate) fn current_uid() -> u32 {
    0
}

/// The default root: `%LOCALAPPDATA%\mmipc`, private to the user by the ACL it inherits.
pub(crate) fn platform_root() -> Option<PathBuf> {
    let base = PathBuf::from(std::env::var_os("LOCALAPPDATA")?);
    base.is_absolute().then(|| base.join("mmipc"))
}

/// Segments live beside the records on Windows: a mapped file created temporary stays in
/// the file cache (there is no tmpfs to prefer).
pub(crate) fn is_memory_fs(_path: &Path) -> bool {
    true
}

impl Segment {
    /// Creates `path` exclusively, sizes it to `len` zero bytes and maps it. On failure after
    /// creation the name is removed again; on success the segment removes it when dropped.
    /// As [`Segment::create`] (files on disk: nothing is reserved).
    pub(crate) fn create_sparse(path: &Path, len: usize, access: Access) -> Result<Segment> {
        Self::create(path, len, access)
    }

    pub(crate) fn create(path: &Path, len: usize, _access: Access) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .attributes(FILE_ATTRIBUTE_TEMPORARY)
            .open(path)
            .map_err(|e| Error::io("create segment", path, e))?;
        let mapped = file
            .set_len(len as u64)
            .map_err(|e| Error::io("size segment", path, e))
            .and_then(|()| {
                memmap2::MmapOptions::new()
                    .len(len)
                    .map_raw(&file)
                    .map_err(|e| Error::io("map segment", path, e))
            });
        match mapped {
            Ok(map) => Ok(Segment {
                map,
                path: path.to_path_buf(),
                unlink_on_drop: true,
            }),
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Opens an existing segment (not through a symbolic link), checks that it is a regular
    /// file of `min_len..=max_len` bytes, and maps all of it.
    pub(crate) fn open(
        path: &Path,
        min_len: usize,
        max_len: usize,
        _access: Access,
    ) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
            .map_err(|e| Error::io("open segment", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat segment", path, e))?;
        let bad = |problem: String| Error::BadSegment {
            path: path.to_path_buf(),
            problem,
        };
        if !meta.file_type().is_file() || meta.file_type().is_symlink() {
            return Err(bad("it is not a regular file".into()));
        }
        let size = meta.len();
        if size < min_len as u64 || size > max_len as u64 {
            return Err(bad(format!(
                "its size {size} is outside {min_len}..={max_len} bytes"
            )));
        }
        let map = memmap2::MmapOptions::new()
            .len(size as usize)
            .map_raw(&file)
            .map_err(|e| Error::io("map segment", path, e))?;
        Ok(Segment {
            map,
            path: path.to_path_buf(),
            unlink_on_drop: false,
        })
    }

    /// The wake-up for words inside this mapping: named events derived from the segment's
    /// file name (unique: it carries the endpoints' random ids) and the word's offset, which
    /// every process mapping the file computes alike.
    pub(crate) fn waker(&self) -> Waker {
        let tag = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Waker(Some(Arc::new(Named {
            base: self.map.as_ptr() as usize,
            len: self.map.len(),
            tag,
            events: Mutex::new(Vec::new()),
        })))
    }

    /// Start of the mapping. Valid for [`len`](Self::len) bytes while `self` lives.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The segment's file name.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the name in place when dropped: the caller removes it explicitly.
    pub(crate) fn keep_name(&mut self) {
        self.unlink_on_drop = false;
    }

    /// Renames the segment (replacing any file at `to`).
    pub(crate) fn rename(&mut self, to: &Path) -> Result<()> {
        std::fs::rename(&self.path, to).map_err(|e| Error::io("rename segment", to, e))?;
        self.path = to.to_path_buf();
        Ok(())
    }
}

/// An event handle we own.
#[derive(Debug)]
struct Event(HANDLE);

// SAFETY: an event handle may be used and closed from any thread.
unsafe impl Send for Event {}
// SAFETY: as above; the handle value is never changed.
unsafe impl Sync for Event {}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: we own the handle and close it once.
        unsafe { CloseHandle(self.0) };
    }
}

/// The named events of one mapping, opened on first use.
#[derive(Debug)]
struct Named {
    base: usize,
    len: usize,
    tag: String,
    /// `(offset of the word, its event)`; a mapping has two or three words at most.
    events: Mutex<Vec<(usize, Arc<Event>)>>,
}

impl Named {
    /// The manual-reset event of the word at `word` (created by whichever process needs it
    /// first; `CreateEventW` opens it when it exists). `None` if it cannot be made: callers
    /// then sleep briefly and re-check.
    fn event(&self, word: &FutexWord) -> Option<Arc<Event>> {
        let offset = (word as *const FutexWord as usize).checked_sub(self.base)?;
        if offset >= self.len {
            return None;
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, e)) = events.iter().find(|(o, _)| *o == offset) {
            return Some(Arc::clone(e));
        }
        let name: Vec<u16> = format!("Local\\mmipc-{}-{offset}", self.tag)
            .encode_utf16()
            .chain(Some(0))
            .collect();
        // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call; default security.
        let handle = unsafe { CreateEventW(std::ptr::null(), 1, 0, name.as_ptr()) };
        if handle.is_null() {
            return None;
        }
        let event = Arc::new(Event(handle));
        events.push((offset, Arc::clone(&event)));
        Some(event)
    }
}

/// Sleeps on and wakes 32-bit words of shared memory.
///
/// For a mapped segment, each word has a named manual-reset event. A sleeper resets the
/// event, re-checks the word, then waits on the event; a waker bumps the word (the caller
/// does) and sets the event. A set between the re-check and the wait is kept by the event, a
/// set before the reset is seen by the re-check: no wake-up is lost with one sleeper per word
/// (mmipc's case: a subscriber's receiving thread, a publisher waiting for room). Two
/// sleepers on one word could each reset the other's signal; the caller's sleep is capped
/// (500 ms) and re-checks. For heap memory (one process), `WaitOnAddress`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Waker(Option<Arc<Named>>);

impl Waker {
    /// Sleeps while `word` holds `expected`, at most `timeout`; may return spuriously.
    pub(crate) fn wait(
        &self,
        word: &FutexWord,
        expected: u32,
        timeout: Option<Duration>,
    ) -> FutexWait {
        let ms = timeout.map_or(INFINITE, |t| {
            u32::try_from(t.as_millis().max(u128::from(!t.is_zero())))
                .unwrap_or(INFINITE - 1)
                .min(INFINITE - 1)
        });
        let Some(named) = &self.0 else {
            return wait_on_address(word, expected, ms);
        };
        let Some(event) = named.event(word) else {
            // No event, so no waker can end this sleep: it ends by its (short) timeout.
            std::thread::sleep(Duration::from_millis(1).min(timeout.unwrap_or(Duration::MAX)));
            return FutexWait::TimedOut;
        };
        // SAFETY: `event.0` is a live event handle we own.
        unsafe { ResetEvent(event.0) };
        if word.load(Ordering::Acquire) != expected {
            return FutexWait::ValueChanged;
        }
        // SAFETY: as above.
        match unsafe { WaitForSingleObject(event.0, ms) } {
            WAIT_OBJECT_0 => FutexWait::Woken,
            WAIT_TIMEOUT => FutexWait::TimedOut,
            _ => FutexWait::Woken,
        }
    }

    /// Wakes every sleeper on `word`.
    pub(crate) fn wake(&self, word: &FutexWord) {
        match &self.0 {
            None => {
                // SAFETY: `word` is a live atomic; WakeByAddressAll only uses its address.
                unsafe { WakeByAddressAll(word.as_ptr().cast()) }
            }
            Some(named) => {
                if let Some(event) = named.event(word) {
                    // SAFETY: a live event handle we own.
                    unsafe { SetEvent(event.0) };
                }
            }
        }
    }
}

impl Waker {
    /// What an event loop waits on for `word` (its named event); `None` for heap memory or
    /// when the event cannot be made.
    pub(crate) fn listener(&self, word: &FutexWord) -> Option<Listener> {
        let event = self.0.as_ref()?.event(word)?;
        Some(Listener { event })
    }
}

/// The waitable side of a shared word's named event, for a waiter in an event loop: the
/// word's ringer sets the event (see [`Waker`]); [`Listener::clear`] resets it before the
/// waiter re-checks, and [`Listener::watch`] wakes a task when it is set.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    event: Arc<Event>,
}

impl Listener {
    /// An unnamed manual-reset event of this process (for wake-ups from this process).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn unnamed() -> Option<Listener> {
        // SAFETY: default security, manual reset, not set, no name; a null result is handled.
        let handle = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        (!handle.is_null()).then(|| Listener {
            event: Arc::new(Event(handle)),
        })
    }

    /// Sets the event.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn notify_self(&self) {
        // SAFETY: a live event handle we own.
        unsafe { SetEvent(self.event.0) };
    }

    /// Resets the event (before the re-check of the wait protocol); whether it was set.
    pub(crate) fn clear(&self) -> bool {
        // SAFETY: a live event handle we own; a zero timeout only polls its state.
        let was_set = unsafe { WaitForSingleObject(self.event.0, 0) } == WAIT_OBJECT_0;
        // SAFETY: as above.
        unsafe { ResetEvent(self.event.0) };
        was_set
    }

    /// The event's handle (waitable with `WaitForSingleObject` and the like), valid while
    /// the listener lives.
    pub(crate) fn raw_handle(&self) -> HANDLE {
        self.event.0
    }

    /// Wakes `waker` (once, on a thread of the system pool) when the event is set; `None` if
    /// the wait cannot be registered.
    pub(crate) fn watch(&self, waker: &std::task::Waker) -> Option<EventWatch> {
        let shared = Arc::new(WatchShared {
            fired: crate::sync::AtomicBool::new(false),
            waker: Mutex::new(Some(waker.clone())),
        });
        let context = Arc::into_raw(Arc::clone(&shared));
        let mut wait: HANDLE = std::ptr::null_mut();
        // SAFETY: `wait` is a valid out-parameter and the event a live handle we keep (the
        // watch holds the `Arc<Event>`); `context` is one strong count of `shared`, released
        // by `Drop` only after the wait is unregistered (which waits for a running callback).
        let registered = unsafe {
            RegisterWaitForSingleObject(
                &mut wait,
                self.event.0,
                Some(event_set),
                context.cast_mut().cast::<std::ffi::c_void>(),
                INFINITE,
                WT_EXECUTEONLYONCE,
            )
        };
        if registered == 0 {
            // SAFETY: not registered: the count taken for the callback is ours to release.
            drop(unsafe { Arc::from_raw(context) });
            return None;
        }
        Some(EventWatch {
            wait,
            shared,
            context,
            _event: Arc::clone(&self.event),
        })
    }
}

/// What a registered wait shares with its callback.
#[derive(Debug)]
struct WatchShared {
    fired: crate::sync::AtomicBool,
    waker: Mutex<Option<std::task::Waker>>,
}

/// A one-shot wait for an event, registered in the system thread pool; unregistered (after
/// a running callback returns) when dropped.
#[derive(Debug)]
pub(crate) struct EventWatch {
    wait: HANDLE,
    shared: Arc<WatchShared>,
    context: *const WatchShared,
    _event: Arc<Event>,
}

// SAFETY: the wait handle may be unregistered from any thread; the shared state is
// `Send + Sync`; `context` is only turned back into an `Arc` once, in `Drop`.
unsafe impl Send for EventWatch {}
// SAFETY: as above; `&EventWatch` only reads the shared state.
unsafe impl Sync for EventWatch {}

impl EventWatch {
    /// Whether the event was set since the watch began.
    pub(crate) fn fired(&self) -> bool {
        self.shared.fired.load(Ordering::Acquire)
    }

    /// The task to wake from now on (a later poll may come with another waker).
    pub(crate) fn set_waker(&self, waker: &std::task::Waker) {
        let mut slot = self.shared.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// The thread-pool callback of [`Listener::watch`].
unsafe extern "system" fn event_set(context: *mut std::ffi::c_void, _timed_out: bool) {
    // SAFETY: `context` is the `*const WatchShared` registered by `watch`, whose strong count
    // is released only after the wait is unregistered, which waits for this callback.
    let shared = unsafe { &*context.cast_const().cast::<WatchShared>() };
    shared.fired.store(true, Ordering::Release);
    let waker = shared
        .waker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(w) = waker {
        w.wake();
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        // SAFETY: `wait` was registered by `watch`; INVALID_HANDLE_VALUE makes the call wait
        // for a running callback, after which nothing uses `context`, whose count we release.
        unsafe {
            UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE);
            drop(Arc::from_raw(self.context));
        }
    }
}

/// `WaitOnAddress` (threads of this process only).
fn wait_on_address(word: &FutexWord, expected: u32, ms: u32) -> FutexWait {
    if word.load(Ordering::Acquire) != expected {
        return FutexWait::ValueChanged;
    }
    // SAFETY: `word` is a live 4-byte atomic and `expected` a 4-byte value on our stack; the
    // call only compares and sleeps.
    let woken = unsafe {
        WaitOnAddress(
            word.as_ptr().cast(),
            (&expected as *const u32).cast(),
            4,
            ms,
        )
    };
    if woken != 0 {
        FutexWait::Woken
    } else {
        FutexWait::TimedOut
    }
}

/// What to run when a watched process exits.
type OnExit = Box<dyn Fn() + Send + Sync>;

/// A wait, in the system thread pool, for another process to exit: Windows sends no
/// directory event when a dead process's lock is released, so a peer's exit is learnt from
/// its process handle instead. The handle pins the process object: a reused pid cannot fool
/// it. Dropping the watch unregisters it (waiting for a running callback to finish).
#[derive(Debug)]
pub(crate) struct ExitWatch {
    wait: HANDLE,
    process: HANDLE,
    on_exit: *mut OnExit,
}

// SAFETY: the handles may be used and closed from any thread; `on_exit` is a `Send + Sync`
// closure owned by this value, freed only after the wait is unregistered.
unsafe impl Send for ExitWatch {}
// SAFETY: as above; `&ExitWatch` gives access to nothing.
unsafe impl Sync for ExitWatch {}

/// Runs `on_exit` (on a thread-pool thread) when process `pid` exits; `None` for ourselves,
/// pid 0, or a process we cannot open (gone already: the caller's scan sees that).
pub(crate) fn watch_exit(
    pid: u32,
    on_exit: impl Fn() + Send + Sync + 'static,
) -> Option<ExitWatch> {
    if pid == 0 || pid == std::process::id() {
        return None;
    }
    // SAFETY: plain call; a null result is handled.
    let process = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    if process.is_null() {
        return None;
    }
    let on_exit: *mut OnExit = Box::into_raw(Box::new(Box::new(on_exit)));
    let mut wait: HANDLE = std::ptr::null_mut();
    // SAFETY: `wait` is a valid out-parameter, `process` a live handle with SYNCHRONIZE;
    // `on_exit` stays valid until `Drop` has unregistered the wait (which waits for a running
    // callback), and the callback only reads it.
    let registered = unsafe {
        RegisterWaitForSingleObject(
            &mut wait,
            process,
            Some(process_exited),
            on_exit.cast::<std::ffi::c_void>(),
            INFINITE,
            WT_EXECUTEONLYONCE,
        )
    };
    if registered == 0 {
        // SAFETY: we own both; the wait was not registered, so nothing else uses them.
        unsafe {
            CloseHandle(process);
            drop(Box::from_raw(on_exit));
        }
        return None;
    }
    Some(ExitWatch {
        wait,
        process,
        on_exit,
    })
}

/// The thread-pool callback of [`watch_exit`].
unsafe extern "system" fn process_exited(context: *mut std::ffi::c_void, _timed_out: bool) {
    // SAFETY: `context` is the `*mut OnExit` registered by `watch_exit`, alive until the
    // wait is unregistered, which waits for this callback to return.
    let on_exit = unsafe { &*context.cast::<OnExit>() };
    on_exit();
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        // SAFETY: `wait` was registered by `watch_exit`; INVALID_HANDLE_VALUE makes the call
        // wait for a running callback, after which nothing uses `on_exit` or `process`.
        unsafe {
            UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE);
            CloseHandle(self.process);
            drop(Box::from_raw(self.on_exit));
        }
    }
}

/// Writes `bytes` to `path` (created or truncated).
pub(crate) fn write_file(path: &Path, bytes: &[u8], _access: Access) -> io::Result<()> {
    std::fs::write(path, bytes)
}

/// Reads a regular file of at most `max` bytes, not through a symbolic link.
pub(crate) fn read_small_file(path: &Path, max: u64, _access: Access) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.file_type().is_symlink() || meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a small regular file",
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Removes a file's name at once (see [`remove_now`]).
/// Segments are files on disk here, their space allocated as they are written (no `SIGBUS`
/// of a full tmpfs): nothing to reserve.
pub(crate) fn reserve_segment(_path: &Path, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    remove_now(path)
}

/// Removes a segment's name; existing mappings stay valid. Returns whether it existed.
pub(crate) fn unlink_segment(path: &Path) -> Result<bool> {
    match remove_now(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove segment", path, e)),
    }
}

/// An exclusive `LockFileEx` lock on a file, held until drop or process death.
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    /// Creates or opens `path` and locks it exclusively without blocking (retrying for
    /// ~20 ms: a process probing the lock holds it for a moment).
    pub(crate) fn acquire(path: &Path, _access: Access) -> Result<LockFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
            .map_err(|e| Error::io("create lock file", path, e))?;
        Ok(LockFile {
            _file: super::take_lock(file, path)?,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Tests, without blocking and without creating anything, whether someone holds the lock on
/// `path`.
pub(crate) fn probe_lock(path: &Path) -> Result<LockState> {
    super::probe_opened_lock(
        OpenOptions::new()
            .read(true)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path),
        path,
    )
}

/// Creates `dir` (with parents) and checks that it is a real directory (not a symbolic link
/// or junction). Privacy comes from the access control list inherited from the user's
/// profile (the default root is under `%LOCALAPPDATA%`).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io("stat directory", dir, e))?;
    let insecure = |problem: String| Error::InsecureDirectory {
        path: dir.to_path_buf(),
        problem,
    };
    if meta.file_type().is_symlink() {
        return Err(insecure("is a symbolic link or junction".into()));
    }
    if !meta.is_dir() {
        return Err(insecure("is not a directory".into()));
    }
    Ok(())
}

/// Group sharing is a Unix permission scheme; not on Windows.
pub(crate) fn ensure_group_dir(_dir: &Path, _gid: Option<u32>) -> Result<u32> {
    Err(Error::Unsupported {
        what: "group-shared directories (Unix groups)",
    })
}

/// Every channel is private on Windows.
pub(crate) fn dir_access(_dir: &Path) -> Access {
    Access::Private
}
