//! Errors of the segment and platform layer.

use std::io;
use std::path::PathBuf;

/// An error from creating, opening or checking shared-memory segments, lock files and
/// directories.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create segment", "lock", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A directory is not private to the current user, so peers of another user could read or
    /// tamper with channels in it.
    #[error(
        "directory {} {problem}; use a private directory (owned by you, mode 0700)",
        path.display()
    )]
    InsecureDirectory {
        /// The directory concerned.
        path: PathBuf,
        /// What is wrong with it ("is owned by uid 0", "is writable by other users", ...).
        problem: String,
    },
    /// A shared segment exists but is not what we expect (too small, not a regular file, not
    /// ours, or its header does not match).
    #[error("segment {} is unusable: {problem}; remove it or let the peer recreate it", path.display())]
    BadSegment {
        /// The segment file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The platform lacks an implementation of this operation.
    #[error("{what} is not supported on this platform yet (Linux is)")]
    Unsupported {
        /// The missing operation.
        what: &'static str,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate's segment and platform operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
