//! Why a WAL could not be opened. Once open, operations report plain `io::Error`s, which is
//! what openraft's storage traits speak.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// What an operator does about a log that cannot be trusted.
const RECOVERY: &str = "This node's log cannot be trusted and the node must not start on it: \
    remove it from the cluster (`cairn member remove <id>`), wipe its data directory, and join \
    it again under a fresh id (`--join`); its peers hold every committed entry";

/// Why [`Wal::open`](super::Wal::open) failed. Nothing is running afterwards.
#[derive(Debug, Error)]
pub enum WalError {
    /// The options break a documented constraint. Nothing was read or changed.
    #[error("invalid WAL options: {0}")]
    Options(&'static str),
    /// A disk operation failed. A torn tail found before the failure may already have been
    /// truncated; everything else is unchanged. Retrying may work if the cause was transient.
    #[error("WAL I/O on {path}: {source}")]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Damaged or missing bytes that cannot be a torn final write: in a segment other than the
    /// last, followed by a valid later record, before the point known synced, or well-formed
    /// but not understood. Nothing was changed; this needs an operator (restore the node from
    /// its peers), never happens otherwise.
    #[error("WAL segment {path} is corrupt at byte {offset}: {reason}. {RECOVERY}")]
    Corrupt {
        /// The damaged segment.
        path: PathBuf,
        /// Byte offset of the first damaged record (0 for the header).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Valid records whose indices skip or repeat, within or across segments: a lost segment or
    /// a bug. Nothing was changed.
    #[error("WAL segment {path} holds index {found} where {expected} should come next. {RECOVERY}")]
    NonConsecutive {
        /// The segment where the sequence breaks.
        path: PathBuf,
        /// The index that should have come next.
        expected: u64,
        /// The index found instead.
        found: u64,
    },
    /// Both slots of the meta file were written once and neither is valid now: media
    /// corruption. Nothing was changed.
    #[error("WAL meta file {path} has no valid slot. {RECOVERY}")]
    CorruptMeta {
        /// The meta file.
        path: PathBuf,
    },
}

impl WalError {
    /// Wraps an I/O error with the path it concerns.
    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { path, source }
    }
}
