//! The state shared by the WAL's handles (appenders and readers) and its writer task.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::cache::EntryCache;
use super::format::segment_file_name;
use super::positions::Positions;
use crate::storage::Disk;

/// A committed marker: the caller's opaque payload, ordered by a sequence number that grows with
/// every [`Wal::set_committed`](super::Wal::set_committed) and survives restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Committed {
    pub(super) sequence: u64,
    pub(super) payload: Bytes,
}

/// What every handle and the writer share.
pub(super) struct Shared {
    pub(super) disk: Arc<dyn Disk>,
    pub(super) dir: PathBuf,
    /// A std `Mutex`: every critical section is a few map or counter updates, never I/O and
    /// never across an `.await`, so an async mutex would only add cost. Holding it while
    /// enqueueing makes the order of operations in the queue the order of their effects on the
    /// logical state.
    state: Mutex<State>,
    /// Notified once by `shutdown`, to wake a writer waiting out a failing disk.
    pub(super) closing: tokio::sync::Notify,
}

impl Shared {
    pub(super) fn new(disk: Arc<dyn Disk>, dir: PathBuf, state: State) -> Shared {
        Shared { disk, dir, state: Mutex::new(state), closing: tokio::sync::Notify::new() }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections only assert and update; a panic in one means the state is not
        // trustworthy, so the poison is passed on rather than ignored.
        self.state.lock().expect("a WAL critical section panicked")
    }

    pub(super) fn segment_path(&self, first_index: u64) -> PathBuf {
        segment_path(&self.dir, first_index)
    }
}

pub(super) fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(segment_file_name(first_index))
}

/// The logical log as callers see it, plus what readers need to find entries.
#[derive(Debug)]
pub(super) struct State {
    /// The first readable index; everything below was purged.
    pub(super) first_index: u64,
    /// One past the last readable index; the next append starts here.
    pub(super) next_index: u64,
    /// Recent entries, including every entry not yet written.
    pub(super) cache: EntryCache,
    /// Where written entries are on disk; maintained by the writer.
    pub(super) positions: Positions,
    /// Sequence number of the last operation enqueued to the writer.
    pub(super) operation_last: u64,
    /// Sequence number of the last committed marker given to `set_committed` (or recovered).
    pub(super) committed_sequence_last: u64,
    /// The newest committed marker not yet taken by the writer.
    pub(super) committed_pending: Option<PendingCommitted>,
    /// The sequence of the newest committed marker known durable.
    pub(super) committed_sequence_durable: u64,
    /// Set when a repair found synced bytes damaged; the WAL refuses everything after.
    pub(super) failure: Option<Failure>,
    /// Set while the writer is stalled on a failing disk (it repairs and retries; see
    /// `repair.rs`), cleared once a retry succeeds.
    pub(super) stall: Option<Failure>,
    /// Set by `shutdown`; later operations are refused.
    pub(super) closed: bool,
}

/// A committed marker waiting to be written.
#[derive(Debug)]
pub(super) struct PendingCommitted {
    pub(super) committed: Committed,
    /// The last operation enqueued before the marker was set: the marker may only be written
    /// with or after it, so that a durable marker never claims entries that were still queued.
    pub(super) after_operation: u64,
}

/// An I/O error of the writer, kept to report to later operations: the one that failed the WAL,
/// or the one it is stalled on.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    pub(super) fn new(error: &io::Error) -> Failure {
        Failure { kind: error.kind(), message: error.to_string() }
    }

    pub(super) fn to_error(&self) -> io::Error {
        io::Error::new(self.kind, format!("the WAL failed earlier and accepts no more operations: {}", self.message))
    }

    /// The error a stalled WAL reports, of the same kind as the disk's.
    pub(super) fn to_stall_error(&self) -> io::Error {
        let message = format!("the disk is failing; writes resume once it accepts them again: {}", self.message);
        io::Error::new(self.kind, message)
    }
}

impl State {
    /// An error if the WAL refuses operations.
    pub(super) fn check_usable(&self) -> io::Result<()> {
        if let Some(failure) = &self.failure {
            return Err(failure.to_error());
        }
        if self.closed {
            return Err(closed_error());
        }
        Ok(())
    }
}

pub(super) fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the WAL is shut down")
}
