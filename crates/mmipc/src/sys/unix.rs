//! The POSIX part of the Unix backends (Linux, macOS): segments are files mapped shared with
//! `mmap`, opened without following symlinks and checked with `fstat`; `flock(2)` lock files;
//! private and group directories; small files. The wake-up of shared words and the choice of
//! file system for segments are each platform's own (`linux.rs`, `macos.rs`).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Access, LockState, Waker};
use crate::error::{Error, Result};

/// A named shared-memory segment mapped read-write into this process.
#[derive(Debug)]
pub(crate) struct Segment {
    map: memmap2::MmapRaw,
    path: PathBuf,
    /// The creator's copy removes the name when dropped (the memory lives on while mapped).
    unlink_on_drop: bool,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            // Best effort: a peer or a cleaner may have removed it already.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The effective user id of this process.
pub(crate) fn current_uid() -> u32 {
    euid()
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

impl Segment {
    /// Creates `path` exclusively (mode 0600, or 0660 of the group for [`Access::Group`];
    /// never following a symlink), sizes it to `len` bytes of zeroes, has the file system back
    /// all of them ([`reserve_segment`]: a full tmpfs is an error here, not a `SIGBUS` at the
    /// first write) and maps it. On any failure after creation the name is removed again; on
    /// success the returned segment removes the name when dropped.
    pub(crate) fn create(path: &Path, len: usize, access: Access) -> Result<Segment> {
        Self::create_backing(path, len, access, len)
    }

    /// As [`Segment::create`], backing only the first page: for a large segment whose owner
    /// reserves the rest as it uses it ([`reserve_segment`]).
    pub(crate) fn create_sparse(path: &Path, len: usize, access: Access) -> Result<Segment> {
        Self::create_backing(path, len, access, len.min(4096))
    }

    fn create_backing(path: &Path, len: usize, access: Access, backed: usize) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(access.file_mode())
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io("create segment", path, e))?;
        let mapped = apply_access(&file, access)
            .and_then(|()| file.set_len(len as u64))
            .map_err(|e| Error::io("size segment", path, e))
            .and_then(|()| {
                reserve_segment(path, 0, backed as u64)
                    .map_err(|e| Error::io("reserve memory for segment", path, e))
            })
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
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Opens an existing segment without following symlinks, checks with `fstat` that it is a
    /// regular file owned by us and not accessible to others (for [`Access::Group`]: of the
    /// group and not accessible to users outside it), with a size in `min_len..=max_len`, and
    /// maps all of it.
    pub(crate) fn open(
        path: &Path,
        min_len: usize,
        max_len: usize,
        access: Access,
    ) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io("open segment", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat segment", path, e))?;
        let bad = |problem: String| Error::BadSegment {
            path: path.to_path_buf(),
            problem,
        };
        if !meta.file_type().is_file() {
            return Err(bad("it is not a regular file".into()));
        }
        if let Some(problem) = foreign(&meta, access) {
            return Err(bad(problem));
        }
        let size = meta.len();
        if size < min_len as u64 || size > max_len as u64 {
            return Err(bad(format!(
                "its size {size} is outside {min_len}..={max_len} bytes"
            )));
        }
        // The size check above happened on the open file, so the mapping covers only bytes
        // that exist; a peer shrinking the file later is a hostile act we cannot prevent
        // (the creator never truncates).
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

    /// The wake-up for words inside this mapping: the futex (Linux) and the address wait
    /// (macOS) need nothing but the word's address, whatever the mapping.
    pub(crate) fn waker(&self) -> Waker {
        Waker
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

    /// Renames the segment (atomically replacing any file at `to`): creating under a
    /// temporary name and renaming once initialised means peers never see a half-made one.
    pub(crate) fn rename(&mut self, to: &Path) -> Result<()> {
        std::fs::rename(&self.path, to).map_err(|e| Error::io("rename segment", to, e))?;
        self.path = to.to_path_buf();
        Ok(())
    }
}

/// Why a file with this metadata may not be trusted under `access`, if it may not: for
/// [`Access::Private`], owned by someone else or open to other users; for [`Access::Group`],
/// of another group or open to users outside it.
pub(super) fn foreign(meta: &std::fs::Metadata, access: Access) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    match access {
        Access::Private if meta.uid() != euid() => {
            Some(format!("it is owned by uid {}, not by us", meta.uid()))
        }
        Access::Private if mode & 0o077 != 0 => {
            Some(format!("its mode {mode:o} gives access to other users"))
        }
        Access::Group { gid } if meta.gid() != gid => Some(format!(
            "it belongs to group {}, not to the channel's group {gid}",
            meta.gid()
        )),
        Access::Group { .. } if mode & 0o007 != 0 => Some(format!(
            "its mode {mode:o} gives access to users outside the group"
        )),
        _ => None,
    }
}

/// Gives a file we just created the mode and group of `access`, whatever the umask and the
/// directory's group (a no-op for [`Access::Private`]: the umask can only narrow 0600).
pub(super) fn apply_access(file: &File, access: Access) -> io::Result<()> {
    let Access::Group { gid } = access else {
        return Ok(());
    };
    if file.metadata()?.gid() != gid {
        std::os::unix::fs::fchown(file, None, Some(gid))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(access.file_mode()))
}

/// Writes `bytes` to `path` (created or truncated, mode 0600 or 0660 for a group, never
/// through a symlink).
pub(crate) fn write_file(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    use std::io::Write;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(access.file_mode())
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    apply_access(&f, access)?;
    f.write_all(bytes)
}

/// Reads a regular file of at most `max` bytes without following a symlink (for
/// [`Access::Group`]: only if it is the group's and not writable by others).
pub(crate) fn read_small_file(path: &Path, max: u64, access: Access) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a small regular file",
        ));
    }
    // In a private directory only we (or root) can have made the file; in a group's, it must
    // be the group's and not writable by others.
    if let Access::Group { gid } = access
        && (meta.gid() != gid || meta.mode() & 0o002 != 0)
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a file of the channel's group, or writable by others",
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Makes the file system back `offset..offset + len` of the segment at `path` (Linux:
/// `posix_fallocate`), so that writing there through a mapping cannot fault: on a full tmpfs
/// (a container's 64 MiB `/dev/shm`) a write to a page that cannot be allocated is `SIGBUS`;
/// this turns it into an error before the pages are used. Elsewhere (macOS: segments are
/// files on disk) a no-op.
pub(crate) fn reserve_segment(path: &Path, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // SAFETY: `file` is an open descriptor for the duration of the call; the call has no
        // memory arguments.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), offset, len) } {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, offset, len);
        Ok(())
    }
}

/// Removes a file's name (mappings and open descriptors stay valid).
pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)
}

/// Removes a segment's name; existing mappings stay valid. Returns whether it existed.
pub(crate) fn unlink_segment(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove segment", path, e)),
    }
}

/// An exclusive `flock` on a file, held until drop or process death (the kernel releases it
/// then, so a free lock means a dead owner, with no pid-reuse race).
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    /// Creates (mode 0600, or 0660 for a group; not following symlinks) or opens `path` and
    /// locks it exclusively without blocking. Fails with `WouldBlock` if someone else holds
    /// it (after retrying for ~20 ms: a process probing the lock holds it for a moment).
    pub(crate) fn acquire(path: &Path, access: Access) -> Result<LockFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(access.file_mode())
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io("create lock file", path, e))?;
        // Group members probe our lock: it must be readable by the group.
        if file.metadata().is_ok_and(|m| m.uid() == euid()) {
            apply_access(&file, access).map_err(|e| Error::io("create lock file", path, e))?;
        }
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
            // Non-blocking: a FIFO planted under a lock file's name must not hang us.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path),
        path,
    )
}

/// Creates `dir` (and missing parents) with mode 0700 and checks that it is a real directory
/// owned by us that other users cannot write.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
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
        return Err(insecure("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(insecure("is not a directory".into()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o2070 == 0o2070 && mode & 0o007 == 0 {
        return Err(insecure(format!(
            "is shared with group {} (mode {mode:o}): open its channels with group sharing \
             (group_shared(true), `mmipc --group`)",
            meta.gid()
        )));
    }
    if meta.uid() != euid() {
        return Err(insecure(format!(
            "is owned by uid {}, not by you (uid {})",
            meta.uid(),
            euid()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(insecure(format!(
            "is writable by other users (mode {:o})",
            mode & 0o777
        )));
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 2770 (setgid, so that new files take the
/// directory's group) and checks that it is a real directory of group `gid` (when `None`:
/// its own group, which must be one of ours), open to the whole group and closed to
/// everyone else. Returns the group. The mode is set explicitly: the umask does not matter.
pub(crate) fn ensure_group_dir(dir: &Path, gid: Option<u32>) -> Result<u32> {
    let insecure = |problem: String| Error::GroupDirectory {
        path: dir.to_path_buf(),
        problem,
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
                && !parent.exists()
            {
                ensure_group_dir(parent, gid)?;
            }
            match DirBuilder::new().mode(0o2770).create(dir) {
                Ok(()) => {
                    let made = std::fs::symlink_metadata(dir)
                        .map_err(|e| Error::io("stat directory", dir, e))?;
                    if made.uid() == euid() {
                        let chown = match gid {
                            Some(g) if g != made.gid() => {
                                std::os::unix::fs::lchown(dir, None, Some(g))
                            }
                            _ => Ok(()),
                        };
                        chown
                            .and_then(|()| {
                                std::fs::set_permissions(
                                    dir,
                                    std::fs::Permissions::from_mode(0o2770),
                                )
                            })
                            .map_err(|e| Error::io("set group and mode of directory", dir, e))?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create directory", dir, e)),
            }
            std::fs::symlink_metadata(dir).map_err(|e| Error::io("stat directory", dir, e))?
        }
        Err(e) => return Err(Error::io("stat directory", dir, e)),
    };
    if meta.file_type().is_symlink() {
        return Err(insecure("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(insecure("is not a directory".into()));
    }
    let mode = meta.mode() & 0o7777;
    let group = meta.gid();
    match gid {
        Some(g) if g != group => {
            return Err(insecure(format!(
                "belongs to group {group}, not to the channel root's group {g}"
            )));
        }
        // Root may use any group's directory (it could anyway).
        None if euid() != 0 && !is_member(group) => {
            return Err(insecure(format!(
                "belongs to group {group}, which you (uid {}) are not a member of",
                euid()
            )));
        }
        _ => {}
    }
    if mode & 0o007 != 0 {
        return Err(insecure(format!(
            "is open to users outside its group (mode {mode:o})"
        )));
    }
    if mode & 0o070 != 0o070 {
        return Err(insecure(format!(
            "is not shared with its group (mode {mode:o}; a private channel's directory is \
             used without group sharing)"
        )));
    }
    Ok(group)
}

/// Whether this process is a member of group `gid` (effective or supplementary).
fn is_member(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions and cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    // SAFETY: with a size of 0, getgroups only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(n) else {
        return false;
    };
    let mut groups: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: `groups` has room for `n` entries.
    let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    usize::try_from(n).is_ok_and(|n| groups[..n.min(len)].contains(&gid))
}

/// Whether the existing directory `dir` is shared with its group (any group permission bit
/// set) or private; what inspection tools use to read a channel made by someone else.
pub(crate) fn dir_access(dir: &Path) -> Access {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && m.mode() & 0o070 != 0 => Access::Group { gid: m.gid() },
        _ => Access::Private,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_create_open_share_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let a = Segment::create(&path, 4096, Access::Private).unwrap();
        assert_eq!(a.len(), 4096);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = Segment::open(&path, 4096, 4096, Access::Private).unwrap();
        // SAFETY: both mappings are 4096 bytes long and alive; single-threaded test.
        unsafe {
            a.as_ptr().add(100).write_volatile(42);
            assert_eq!(b.as_ptr().add(100).read_volatile(), 42);
        }
        assert!(
            matches!(
                Segment::create(&path, 4096, Access::Private),
                Err(Error::Io { .. })
            ),
            "create is exclusive"
        );
        assert!(unlink_segment(&path).unwrap());
        assert!(!unlink_segment(&path).unwrap());
    }

    #[test]
    fn open_refuses_wrong_size_symlink_and_loose_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let _a = Segment::create(&path, 4096, Access::Private).unwrap();
        assert!(matches!(
            Segment::open(&path, 8192, 1 << 20, Access::Private),
            Err(Error::BadSegment { .. })
        ));
        assert!(matches!(
            Segment::open(&path, 64, 1024, Access::Private),
            Err(Error::BadSegment { .. })
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(
            Segment::open(&link, 64, 1 << 20, Access::Private).is_err(),
            "symlinks are not followed"
        );
        assert!(
            Segment::create(&link, 64, Access::Private).is_err(),
            "create never follows symlinks"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Segment::open(&path, 64, 1 << 20, Access::Private),
            Err(Error::BadSegment { .. })
        ));
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(Segment::open(&dir.path().join("d"), 0, 1 << 20, Access::Private).is_err());
    }

    #[test]
    fn lock_file_is_exclusive_and_probe_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        assert_eq!(probe_lock(&path).unwrap(), LockState::Missing);
        let held = LockFile::acquire(&path, Access::Private).unwrap();
        assert_eq!(held.path(), path);
        assert_eq!(probe_lock(&path).unwrap(), LockState::Held);
        assert!(
            LockFile::acquire(&path, Access::Private).is_err(),
            "a second holder is refused"
        );
        drop(held);
        assert_eq!(probe_lock(&path).unwrap(), LockState::Free);
        let _again = LockFile::acquire(&path, Access::Private).unwrap();
    }

    #[test]
    fn private_dir_is_created_0700_and_loose_dirs_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        ensure_private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            ensure_private_dir(&dir),
            Err(Error::InsecureDirectory { .. })
        ));
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path().join("a"), &link).unwrap();
        assert!(matches!(
            ensure_private_dir(&link),
            Err(Error::InsecureDirectory { .. })
        ));
        let file = root.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(ensure_private_dir(&file).is_err());
    }

    fn egid() -> u32 {
        // SAFETY: getegid has no preconditions and cannot fail.
        unsafe { libc::getegid() }
    }

    /// Item 12 of the usability issue: a directory shared by the users of one group was
    /// refused; with group sharing it is made 2770 (whatever the umask) and its files 0660.
    #[test]
    fn group_dir_is_made_2770_and_its_files_0660_of_the_group() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shared/chan");
        let gid = ensure_group_dir(&dir, None).unwrap();
        assert_eq!(gid, egid());
        for d in [dir.parent().unwrap(), &dir] {
            let m = std::fs::metadata(d).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o2770, "{}", d.display());
            assert_eq!(m.gid(), gid);
        }
        assert_eq!(
            ensure_group_dir(&dir, Some(gid)).unwrap(),
            gid,
            "idempotent"
        );
        let access = Access::Group { gid };
        let seg = dir.join("seg");
        let a = Segment::create(&seg, 4096, access).unwrap();
        let rec = dir.join("rec");
        write_file(&rec, b"{}", access).unwrap();
        let lock = LockFile::acquire(&dir.join("lock"), access).unwrap();
        for f in [&seg, &rec, lock.path()] {
            let m = std::fs::metadata(f).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o660, "{}", f.display());
            assert_eq!(m.gid(), gid);
        }
        let b = Segment::open(&seg, 4096, 4096, access).unwrap();
        // SAFETY: both mappings are 4096 bytes long and alive; single-threaded test.
        unsafe {
            a.as_ptr().write_volatile(9);
            assert_eq!(b.as_ptr().read_volatile(), 9);
        }
        assert_eq!(read_small_file(&rec, 64, access).unwrap(), b"{}");
        // A private endpoint refuses the group's directory and says what to do.
        let err = ensure_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("group sharing"), "{err}");
        // A group file is not a private one.
        assert!(Segment::open(&seg, 4096, 4096, Access::Private).is_err());
    }

    #[test]
    fn group_dirs_and_files_open_to_others_or_not_shared_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("g");
        let gid = ensure_group_dir(&dir, None).unwrap();
        let set_mode = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set_mode(&dir, 0o2775);
        let err = ensure_group_dir(&dir, None).unwrap_err();
        assert!(matches!(err, Error::GroupDirectory { .. }), "{err}");
        assert!(err.to_string().contains("outside its group"), "{err}");
        set_mode(&dir, 0o700);
        let err = ensure_group_dir(&dir, Some(gid)).unwrap_err().to_string();
        assert!(err.contains("not shared with its group"), "{err}");
        set_mode(&dir, 0o2770);
        let err = ensure_group_dir(&dir, Some(gid.wrapping_add(1))).unwrap_err();
        assert!(
            err.to_string().contains("not to the channel root's group"),
            "{err}"
        );
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            ensure_group_dir(&link, Some(gid)),
            Err(Error::GroupDirectory { .. })
        ));
        let access = Access::Group { gid };
        let seg = dir.join("seg");
        let _a = Segment::create(&seg, 4096, access).unwrap();
        set_mode(&seg, 0o664);
        let err = Segment::open(&seg, 4096, 4096, access).unwrap_err();
        assert!(err.to_string().contains("outside the group"), "{err}");
        let rec = dir.join("rec");
        write_file(&rec, b"{}", access).unwrap();
        set_mode(&rec, 0o666);
        assert!(read_small_file(&rec, 64, access).is_err());
        if euid() == 0 {
            // Only root can give a file to a group it is not in: a file of another group is
            // refused even when closed to others.
            set_mode(&seg, 0o660);
            std::os::unix::fs::chown(&seg, None, Some(gid.wrapping_add(7))).unwrap();
            let err = Segment::open(&seg, 4096, 4096, access).unwrap_err();
            assert!(
                err.to_string().contains("not to the channel's group"),
                "{err}"
            );
        }
    }
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
