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

/// The default root directory: `$XDG_RUNTIME_DIR/mmipc` when that variable names an absolute
/// directory, else `/dev/shm/mmipc-<uid>` (or the temp directory where `/dev/shm` is missing).
///
/// # Examples
///
/// ```
/// let root = mmipc::default_root();
/// println!("channels live under {}", root.display());
/// assert!(root.is_absolute());
/// ```
pub fn default_root() -> PathBuf {
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
    base.join(format!("mmipc-{}", sys::current_uid()))
}

/// The two directories of one channel, both created private (0700) and checked.
#[derive(Debug, Clone)]
pub(crate) struct ChannelDirs {
    pub records: PathBuf,
    pub segments: PathBuf,
}

impl ChannelDirs {
    /// Where an existing channel's files are, creating nothing (for inspection tools). The
    /// segment directory may not exist.
    pub(crate) fn locate(root: &Path, channel: &str) -> Result<ChannelDirs> {
        validate(channel)?;
        let records = root.join(channel);
        let segments = if sys::is_memory_fs(&records) {
            records.clone()
        } else {
            let canonical = root
                .canonicalize()
                .map_err(|e| Error::io("resolve", root, e))?;
            segment_dir(&canonical, channel)
        };
        Ok(ChannelDirs { records, segments })
    }

    /// The channel's directories, created private (0700) where missing and checked.
    pub(crate) fn new(root: &Path, channel: &str) -> Result<ChannelDirs> {
        validate(channel)?;
        sys::ensure_private_dir(root)?;
        sys::ensure_private_dir(&root.join(channel))?;
        let dirs = ChannelDirs::locate(root, channel)?;
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

    #[test]
    fn disk_roots_get_their_segments_on_tmpfs() {
        let root = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let dirs = ChannelDirs::new(root.path(), "chan").unwrap();
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
