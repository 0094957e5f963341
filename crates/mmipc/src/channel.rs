//! Channel names and the directories a channel lives in.
//!
//! ```text
//! <root>/<channel>/           records: pub-<id>.json, pub-<id>.lock, sub-<id>.json, sub-<id>.lock
//! <segments>/                 sub-<id>.bell (a subscriber's doorbell), ring-<pub>-<sub>-<gen>
//! ```
//!
//! `<segments>` is the channel directory itself when the root is on a memory file system
//! (tmpfs), else `/dev/shm/mmipc-<uid>/r<hash of root>/<channel>`, so that shared memory never
//! lands on a disk.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

/// Longest channel name accepted, in bytes (file names built from it must stay short).
///
/// # Examples
///
/// ```
/// assert!(mmipc::validate_channel(&"x".repeat(mmipc::MAX_CHANNEL_LEN)).is_ok());
/// assert!(mmipc::validate_channel(&"x".repeat(mmipc::MAX_CHANNEL_LEN + 1)).is_err());
/// ```
pub const MAX_CHANNEL_LEN: usize = 100;

/// Checks that `name` can be used as a channel name: 1 to [`MAX_CHANNEL_LEN`] bytes, no
/// path separator, no leading `.`, no NUL or control character.
///
/// # Errors
/// [`Error::InvalidChannel`] saying what is wrong.
///
/// # Examples
///
/// ```
/// assert!(mmipc::validate_channel("telemetry").is_ok());
/// let err = mmipc::validate_channel("a/b").unwrap_err();
/// assert!(err.to_string().contains("path separator"));
/// ```
pub fn validate_channel(name: &str) -> Result<()> {
    validate(name)
}

/// Checks that `name` can be used as a channel name.
pub(crate) fn validate(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_CHANNEL_LEN {
        Some("it is longer than 100 bytes")
    } else if name.contains('/') || name.contains('\\') {
        Some("it contains a path separator")
    } else if name == "." || name == ".." || name.starts_with('.') {
        Some("it starts with '.'")
    } else if name.contains('\0') {
        Some("it contains a NUL character")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::InvalidChannel {
            name: name.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The default root directory: the platform's own where it has one (Windows:
/// `%LOCALAPPDATA%\mmipc`; macOS: `$TMPDIR/mmipc`, `TMPDIR` being per-user there), else
/// `$XDG_RUNTIME_DIR/mmipc` when that variable names an absolute directory, else
/// `/dev/shm/mmipc-<uid>` (or the temp directory where `/dev/shm` is missing).
///
/// Any local user can create `/dev/shm/mmipc-<uid>` before you do (or a symbolic link under
/// that name), which would block or expose you. If that name is taken by anything that is not
/// your private directory, the root is `/dev/shm/mmipc-<uid>-<secret>` instead, where
/// `<secret>` is 32 random hex digits kept in `$HOME/.mmipc-root` (created mode 0600 on first
/// use), a name other users cannot know in advance. Every process of yours that shares that
/// home directory agrees on it.
///
/// # Examples
///
/// ```
/// let root = mmipc::default_root();
/// println!("channels live under {}", root.display());
/// assert!(root.is_absolute());
/// ```
pub fn default_root() -> PathBuf {
    if let Some(root) = sys::platform_root() {
        return root;
    }
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() && xdg.is_dir() {
            return xdg.join("mmipc");
        }
    }
    shm_base()
}

fn shm_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && h.is_dir());
    choose_shm_root(&base, sys::current_uid(), home.as_deref())
}

/// `<base>/mmipc-<uid>`, unless something that is not our private directory holds that name:
/// then `<base>/mmipc-<uid>-<secret>`, the secret read from (or first written to)
/// `<home>/.mmipc-root`. Without a home, the plain name (whose check then fails with a
/// message saying what to do).
fn choose_shm_root(base: &Path, uid: u32, home: Option<&Path>) -> PathBuf {
    let plain = base.join(format!("mmipc-{uid}"));
    if is_ours_or_free(&plain, uid) {
        return plain;
    }
    match home.and_then(root_secret) {
        Some(secret) => base.join(format!("mmipc-{uid}-{secret}")),
        None => plain,
    }
}

/// Whether `dir` does not exist, or is a real directory of `uid` that others cannot write.
fn is_ours_or_free(dir: &Path, uid: u32) -> bool {
    match std::fs::symlink_metadata(dir) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        #[cfg(unix)]
        Ok(m) => {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o022 == 0
        }
        #[cfg(not(unix))]
        Ok(m) => {
            let _ = uid;
            m.is_dir()
        }
    }
}

/// The secret of `<home>/.mmipc-root` (32 lowercase hex digits), created if missing.
fn root_secret(home: &Path) -> Option<String> {
    let path = home.join(".mmipc-root");
    let valid = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Ok(buf) = sys::read_small_file(&path, 64, sys::Access::Private) {
        let text = String::from_utf8_lossy(&buf).trim().to_owned();
        return valid(&text).then_some(text);
    }
    let secret = crate::discovery::EndpointId::random().to_string();
    // Written once with create_new semantics: a concurrent first use by another process of
    // ours wins, and we read what it wrote.
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes()).ok()?;
            Some(secret)
        }
        Err(_) => {
            let buf = sys::read_small_file(&path, 64, sys::Access::Private).ok()?;
            let text = String::from_utf8_lossy(&buf).trim().to_owned();
            valid(&text).then_some(text)
        }
    }
}

/// The two directories of one channel, both created private (0700) and checked, or, for a
/// group-shared channel, one directory (2770) holding records and segments alike.
#[derive(Debug, Clone)]
pub(crate) struct ChannelDirs {
    pub records: PathBuf,
    pub segments: PathBuf,
    /// Who may use the channel's files: the mode of every file made, the check of every file
    /// opened.
    pub access: sys::Access,
}

impl ChannelDirs {
    /// Where an existing channel's files are, creating nothing (for inspection tools). The
    /// segment directory may not exist. A channel directory with group permissions is taken
    /// as group-shared.
    pub(crate) fn locate(root: &Path, channel: &str) -> Result<ChannelDirs> {
        validate(channel)?;
        let records = root.join(channel);
        let access = sys::dir_access(&records);
        Self::locate_with(root, channel, access)
    }

    fn locate_with(root: &Path, channel: &str, access: sys::Access) -> Result<ChannelDirs> {
        let records = root.join(channel);
        // A group-shared channel keeps its segments beside its records, in the one directory
        // every member can reach (the per-user tmpfs directory is private).
        let segments = if sys::is_memory_fs(&records) || access != sys::Access::Private {
            records.clone()
        } else {
            let canonical = root
                .canonicalize()
                .map_err(|e| Error::io("resolve", root, e))?;
            segment_dir(&canonical, channel)
        };
        Ok(ChannelDirs {
            records,
            segments,
            access,
        })
    }

    /// The channel's directories, created private (0700) where missing and checked; or, when
    /// `group` is set, shared with the root's group (2770, see
    /// [`sys::ensure_group_dir`]).
    pub(crate) fn new(root: &Path, channel: &str, group: bool) -> Result<ChannelDirs> {
        validate(channel)?;
        if group {
            let gid = sys::ensure_group_dir(root, None)?;
            sys::ensure_group_dir(&root.join(channel), Some(gid))?;
            return ChannelDirs::locate_with(root, channel, sys::Access::Group { gid });
        }
        sys::ensure_private_dir(root)?;
        sys::ensure_private_dir(&root.join(channel))?;
        let dirs = ChannelDirs::locate_with(root, channel, sys::Access::Private)?;
        if dirs.segments != dirs.records {
            sys::ensure_private_dir(&shm_base())?;
            // The per-root directory, then the channel's inside it.
            if let Some(parent) = dirs.segments.parent() {
                sys::ensure_private_dir(parent)?;
            }
            sys::ensure_private_dir(&dirs.segments)?;
        }
        Ok(dirs)
    }
}

impl ChannelDirs {
    /// Removes the channel's directories if they are empty (the last endpoint leaving, or
    /// `clean`); the root stays. A directory that is not empty stays, atomically: the kernel
    /// refuses to remove it.
    pub(crate) fn remove_if_empty(&self) {
        if self.segments != self.records {
            let _ = std::fs::remove_dir(&self.segments);
            if let Some(per_root) = self.segments.parent() {
                let _ = std::fs::remove_dir(per_root);
            }
        }
        let _ = std::fs::remove_dir(&self.records);
    }

    /// Creates the channel's directories and, inside, the lock file of a new endpoint. The
    /// last endpoint of a channel removes its directory as it leaves: if that happens
    /// between our creating the directory and our lock file, we create it again.
    pub(crate) fn new_with_lock(
        root: &Path,
        channel: &str,
        group: bool,
        lock_path: impl Fn(&ChannelDirs) -> PathBuf,
    ) -> Result<(ChannelDirs, sys::LockFile)> {
        let mut attempts = 0;
        loop {
            let made = ChannelDirs::new(root, channel, group).and_then(|dirs| {
                Ok((sys::LockFile::acquire(&lock_path(&dirs), dirs.access)?, dirs))
            });
            match made {
                Ok((lock, dirs)) => return Ok((dirs, lock)),
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempts < 100 =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The tmpfs directory of a channel whose (canonical) root is on disk.
fn segment_dir(canonical_root: &Path, channel: &str) -> PathBuf {
    shm_base()
        .join(format!(
            "r{:016x}",
            fnv1a(canonical_root.as_os_str().as_encoded_bytes())
        ))
        .join(channel)
}

/// FNV-1a, to name a root directory by a short stable hash.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_channel_names_are_refused_with_a_reason() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "nul\0",
            "bell\x07",
            &"x".repeat(101),
        ] {
            let err = validate(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidChannel { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains("invalid channel name"));
        }
        for good in ["telemetry", "a.b-c_d", "émoji🙂", "x y", &"x".repeat(100)] {
            validate(good).unwrap();
        }
    }

    /// Defect: any local user could deny the default root by creating
    /// `/dev/shm/mmipc-<uid>` (or a symbolic link there) first.
    #[cfg(unix)]
    #[test]
    fn a_squatted_default_root_falls_back_to_a_secret_name() {
        let base = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let uid = sys::current_uid();
        let plain = base.path().join(format!("mmipc-{uid}"));
        assert_eq!(choose_shm_root(base.path(), uid, Some(home.path())), plain);
        // Someone else's name there: a symbolic link (another user's directory is the same
        // case, tested below when we can make one).
        std::os::unix::fs::symlink("/", &plain).unwrap();
        let fallback = choose_shm_root(base.path(), uid, Some(home.path()));
        assert_ne!(fallback, plain);
        let name = fallback.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(&format!("mmipc-{uid}-")), "{name}");
        assert_eq!(name.len(), format!("mmipc-{uid}-").len() + 32);
        // Stable: every process of ours finds the same one.
        assert_eq!(
            choose_shm_root(base.path(), uid, Some(home.path())),
            fallback
        );
        sys::ensure_private_dir(&fallback).unwrap();
        assert_eq!(
            choose_shm_root(base.path(), uid, Some(home.path())),
            fallback
        );
        std::fs::remove_file(&plain).unwrap();
        // A directory writable by others (or owned by another user, which root can make).
        std::fs::create_dir(&plain).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            choose_shm_root(base.path(), uid, Some(home.path())),
            fallback
        );
        // Without a home there is no secret: the plain name, whose check explains.
        assert_eq!(choose_shm_root(base.path(), uid, None), plain);
        let err = sys::ensure_private_dir(&plain).unwrap_err().to_string();
        assert!(err.contains("remove it") && err.contains("dir"), "{err}");
    }

    #[test]
    fn disk_roots_get_their_segments_on_tmpfs() {
        let root = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let dirs = ChannelDirs::new(root.path(), "chan", false).unwrap();
        assert_eq!(dirs.records, root.path().join("chan"));
        if sys::is_memory_fs(root.path()) {
            assert_eq!(dirs.segments, dirs.records);
        } else if Path::new("/dev/shm").is_dir() {
            assert!(dirs.segments.starts_with("/dev/shm"), "{:?}", dirs.segments);
            assert!(sys::is_memory_fs(&dirs.segments));
            std::fs::remove_dir(&dirs.segments).unwrap();
        }
    }
}
