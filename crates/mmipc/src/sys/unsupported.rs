//! Backend for platforms without an implementation (neither Linux, macOS nor Windows): every
//! operation that needs the OS returns [`Error::Unsupported`], so the crate compiles and says
//! clearly what is missing. Heap-backed rings still work (their waiting degrades to short
//! sleeps).

use std::path::Path;
use std::time::Duration;

use super::{Access, FutexWait, LockState};
use crate::error::{Error, Result};
use crate::sync::FutexWord;

/// Placeholder: segments cannot be created on this platform yet.
#[derive(Debug)]
pub(crate) struct Segment {
    never: std::convert::Infallible,
}

impl Segment {
    pub(crate) fn create_sparse(path: &Path, len: usize, access: Access) -> Result<Segment> {
        Self::create(path, len, access)
    }

    pub(crate) fn create(_path: &Path, _len: usize, _access: Access) -> Result<Segment> {
        Err(Error::Unsupported {
            what: "shared-memory segments",
        })
    }

    pub(crate) fn open(
        _path: &Path,
        _min_len: usize,
        _max_len: usize,
        _access: Access,
    ) -> Result<Segment> {
        Err(Error::Unsupported {
            what: "shared-memory segments",
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        match self.never {}
    }

    pub(crate) fn waker(&self) -> Waker {
        match self.never {}
    }

    pub(crate) fn len(&self) -> usize {
        match self.never {}
    }

    pub(crate) fn path(&self) -> &Path {
        match self.never {}
    }

    pub(crate) fn rename(&mut self, _to: &Path) -> Result<()> {
        match self.never {}
    }

    pub(crate) fn keep_name(&mut self) {
        match self.never {}
    }
}

pub(crate) fn reserve_segment(_path: &Path, _offset: u64, _len: u64) -> std::io::Result<()> {
    Ok(())
}

pub(crate) fn remove_file(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)
}

pub(crate) fn unlink_segment(_path: &Path) -> Result<bool> {
    Err(Error::Unsupported {
        what: "shared-memory segments",
    })
}

/// Without a wake-up object: sleeps briefly, callers re-check.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Waker;

impl Waker {
    pub(crate) fn wait(
        &self,
        word: &FutexWord,
        expected: u32,
        timeout: Option<Duration>,
    ) -> FutexWait {
        futex_wait(word, expected, timeout)
    }

    pub(crate) fn wake(&self, _word: &FutexWord) {}
}

/// Without a futex, sleep briefly; callers re-check their condition after every return.
pub(crate) fn futex_wait(
    _word: &FutexWord,
    _expected: u32,
    timeout: Option<Duration>,
) -> FutexWait {
    let nap = Duration::from_millis(1);
    std::thread::sleep(timeout.map_or(nap, |t| t.min(nap)));
    FutexWait::Woken
}

pub(crate) fn futex_wake(_word: &FutexWord, _n: u32) -> usize {
    0
}

/// Placeholder: lock files are not implemented on this platform yet.
#[derive(Debug)]
pub(crate) struct LockFile {
    never: std::convert::Infallible,
}

impl LockFile {
    pub(crate) fn acquire(_path: &Path, _access: Access) -> Result<LockFile> {
        Err(Error::Unsupported { what: "lock files" })
    }

    pub(crate) fn path(&self) -> &Path {
        match self.never {}
    }
}

pub(crate) fn probe_lock(_path: &Path) -> Result<LockState> {
    Err(Error::Unsupported { what: "lock files" })
}

pub(crate) fn ensure_private_dir(_dir: &Path) -> Result<()> {
    Err(Error::Unsupported {
        what: "private directories",
    })
}

pub(crate) fn ensure_group_dir(_dir: &Path, _gid: Option<u32>) -> Result<u32> {
    Err(Error::Unsupported {
        what: "group-shared directories",
    })
}

pub(crate) fn dir_access(_dir: &Path) -> Access {
    Access::Private
}

pub(crate) fn current_uid() -> u32 {
    0
}

pub(crate) fn is_memory_fs(_path: &Path) -> bool {
    false
}

pub(crate) fn write_file(path: &Path, bytes: &[u8], _access: Access) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

pub(crate) fn read_small_file(path: &Path, max: u64, _access: Access) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A watch for another process's exit: not needed here (the directory watch learns of a
/// dead process when the kernel closes its lock file), so there is none.
#[derive(Debug)]
pub(crate) struct ExitWatch;

/// No watch: see [`ExitWatch`].
pub(crate) fn watch_exit(
    _pid: u32,
    _on_exit: impl Fn() + Send + Sync + 'static,
) -> Option<ExitWatch> {
    None
}
