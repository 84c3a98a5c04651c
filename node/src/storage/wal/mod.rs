//! A segmented write-ahead log of opaque payloads on a [`Disk`], shaped for openraft's
//! `RaftLogStorage`: appends readable at once and acknowledged once durable, a two-slot meta
//! file for the vote, and lazily persisted committed markers.
//!
//! ```text
//!   handles (Wal, cloneable)                    writer task (one per WAL)
//!   ─────────────────────────                   ─────────────────────────
//!   append ──┐ update logical state,            take an op; if append, drain queued
//!   truncate ├─ cache, then enqueue ──queue──▶  appends → encode → ONE write + ONE
//!   purge    │  (under one lock, so queue        fdatasync → positions, callbacks
//!   save_meta│   order = effect order)           truncate/purge/meta → files, in order
//!   flush ───┘                                          │
//!   read ──▶ cache ─miss─▶ positions ─▶ Disk ◀──────────┘
//! ```
//!
//! Directory layout: `meta` (see `meta.rs`) and segments `{first_index:020}.wal` (see
//! `format.rs`). Guarantees:
//! - [`Wal::append`]'s callback fires only after the entries (and everything queued before
//!   them) are written and fdatasync'd.
//! - After a crash the log on disk is a consecutive run of entries, and a prefix of what was
//!   appended (truncations and purges cut it only in ways that keep it one).
//! - [`Wal::save_meta`] is durable on return; a torn save never loses the previous meta.
//! - A committed marker returned by [`Wal::flush_committed`] is never lost afterwards, even
//!   when truncations and purges delete the log bytes holding it (a copy goes to the meta
//!   file first).
//! - An I/O error (a full or failing disk) stalls the writer instead of failing the WAL: it
//!   repairs the files and retries until the disk accepts the write (see `repair.rs`), and no
//!   callback fires meanwhile. [`Wal::stalled`] reports the stall.
//! - [`Wal::open`] cuts a torn tail only when nothing valid follows the damage and it lies past
//!   the log end recorded in the meta file; anything else fails the open (see `recovery.rs`).
//!
//! Purges are physical only at segment granularity, and the purge point itself is not
//! persisted: after [`Wal::open`], [`Recovered::first_index`] may be lower than the last purge.
//! Callers persist the purge point (with the meta) and purge again after opening.

mod cache;
mod error;
mod format;
mod meta;
mod options;
mod positions;
mod read;
mod recovery;
mod repair;
mod state;
mod writer;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use self::cache::EntryCache;
pub use self::error::WalError;
pub use self::format::ENTRY_PAYLOAD_BYTES_MAX;
use self::meta::MetaFile;
pub use self::meta::{COMMITTED_PAYLOAD_BYTES_MAX, META_PAYLOAD_BYTES_MAX};
pub use self::options::WalOptions;
pub use self::recovery::TruncatedTail;
use self::recovery::{RecoveredLog, recover_log};
use self::state::{Committed, PendingCommitted, Shared, State, closed_error};
use self::writer::{Operation, OperationKind, Writer};
use crate::rt::{self, JoinHandle};
use crate::storage::Disk;

/// Called once with the outcome of an append: `Ok` once it is durable, or the error that
/// failed the WAL. It runs on the writer task, so it must be quick (send on a channel).
pub type OnDurable = Box<dyn FnOnce(io::Result<()>) + Send>;

/// What [`Wal::open`] found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The payload of the newest valid [`Wal::save_meta`], if any.
    pub meta: Option<Bytes>,
    /// The newest committed marker found (in the log or its copy in the meta file).
    pub committed: Option<Bytes>,
    /// The first entry on disk; `None` if the log is empty.
    pub first_index: Option<u64>,
    /// The last entry on disk; `None` if the log is empty.
    pub last_index: Option<u64>,
    /// The torn or garbled tail that was cut off, if any.
    pub truncated_tail: Option<TruncatedTail>,
}

/// A handle to an open WAL. Cheap to clone; all clones share one writer task.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Operation>,
    /// The writer task, taken and awaited by the first [`Wal::shutdown`]. A std `Mutex`: it is
    /// only locked to take the handle, never across an `.await`.
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`: reads the meta file and every segment,
    /// verifies them, cuts a torn tail off the last segment, and starts the writer task.
    pub async fn open(
        disk: Arc<dyn Disk>,
        dir: impl Into<PathBuf>,
        options: WalOptions,
    ) -> Result<(Wal, Recovered), WalError> {
        options.validate()?;
        let dir = dir.into();
        let (log, meta) = {
            let (disk, dir) = (disk.clone(), dir.clone());
            rt::run_blocking(move || read_directory(disk.as_ref(), &dir)).await?
        };
        let committed = [log.committed.clone(), meta.current().and_then(|record| record.committed.clone())]
            .into_iter()
            .flatten()
            .max_by_key(|committed| committed.sequence);
        let next_index = log.positions.next_index();
        let first_index = log.segments.first().map_or(next_index, |segment| segment.first_index);
        let recovered = Recovered {
            meta: meta.current().and_then(|record| record.meta.clone()),
            committed: committed.as_ref().map(|committed| committed.payload.clone()),
            first_index: (first_index < next_index).then_some(first_index),
            last_index: (first_index < next_index).then(|| next_index - 1),
            truncated_tail: log.truncated_tail.clone(),
        };
        let state = State {
            first_index,
            next_index,
            cache: EntryCache::new(options.cache_bytes_max),
            positions: log.positions,
            operation_last: 0,
            committed_sequence_last: committed.as_ref().map_or(0, |committed| committed.sequence),
            committed_pending: None,
            committed_sequence_durable: committed.as_ref().map_or(0, |committed| committed.sequence),
            failure: None,
            stall: None,
            closed: false,
        };
        let shared = Arc::new(Shared::new(disk, dir, state));
        let (queue, receiver) = mpsc::channel(options.queue_depth_max.get());
        let writer = Writer {
            shared: shared.clone(),
            options,
            segments: log.segments,
            empty_next_index: next_index,
            meta,
            committed_durable: committed,
            failure: None,
            deferred: None,
            log_end_saved_at: rt::Instant::now(),
            repair_backoff: repair::REPAIR_BACKOFF_MIN,
        };
        let writer = rt::spawn(writer.run(receiver));
        tracing::info!(dir = %shared.dir.display(), first_index, next_index, "WAL opened");
        Ok((Wal { shared, queue, writer: Arc::new(Mutex::new(Some(writer))) }, recovered))
    }

    /// Appends entries, which must continue the log (the first index is [`Wal::next_index`]),
    /// and calls `on_durable` once they are written and synced. The entries are readable when
    /// this returns; it waits only for room in the queue.
    ///
    /// ### To ensure correctness
    /// - On `Err` (the WAL failed or was shut down) nothing was appended and `on_durable` is
    ///   dropped without being called.
    /// - Panics if an index does not continue the log or a payload is larger than
    ///   [`ENTRY_PAYLOAD_BYTES_MAX`]: callers must bound entries before they reach the log.
    pub async fn append(&self, entries: Vec<(u64, Bytes)>, on_durable: OnDurable) -> io::Result<()> {
        for (index, payload) in &entries {
            assert!(payload.len() <= ENTRY_PAYLOAD_BYTES_MAX, "entry {index} is {} bytes", payload.len());
        }
        self.enqueue(move |state, operation| {
            for (index, payload) in &entries {
                assert_eq!(*index, state.next_index, "appended entries must continue the log");
                state.cache.insert(*index, payload.clone(), operation);
                state.next_index += 1;
            }
            OperationKind::Append { entries, on_durable }
        })
        .await
    }

    /// Removes every entry after `after` (all of them if `None`). Readers stop seeing them at
    /// once; on disk, later segments go newest first and then the rest of the cut segment, so a
    /// crash at any point leaves a prefix of the old log. Not durable on return: a later
    /// append's callback (or [`Wal::flush_committed`]) confirms it, being queued after it.
    ///
    /// ### To ensure correctness
    /// - Panics if `after` is below the purged prefix.
    pub async fn truncate_after(&self, after: Option<u64>) -> io::Result<()> {
        self.enqueue(move |state, _| {
            let cut = after.map_or(state.first_index, |after| after + 1);
            assert!(
                cut >= state.first_index,
                "truncating purged entries (after {after:?}, first {})",
                state.first_index
            );
            if cut < state.next_index {
                state.next_index = cut;
                state.cache.remove_from(cut);
            }
            OperationKind::TruncateAfter { cut }
        })
        .await
    }

    /// Removes every entry up to `upto`, inclusive. Readers stop seeing them at once; on disk,
    /// whole segments holding only such entries are deleted, oldest first. Purging past the end
    /// of the log empties it and makes it continue at `upto + 1`.
    pub async fn purge(&self, upto: u64) -> io::Result<()> {
        assert!(upto < u64::MAX, "index space exhausted");
        self.enqueue(move |state, _| {
            let first_kept = upto + 1;
            if first_kept > state.first_index {
                state.first_index = first_kept;
                state.next_index = state.next_index.max(first_kept);
                state.cache.remove_before(first_kept);
            }
            OperationKind::Purge { upto }
        })
        .await
    }

    /// Saves the meta payload; durable when this returns `Ok`. Fails without change with
    /// [`io::ErrorKind::InvalidInput`] if `payload` is larger than [`META_PAYLOAD_BYTES_MAX`].
    pub async fn save_meta(&self, payload: Bytes) -> io::Result<()> {
        if payload.len() > META_PAYLOAD_BYTES_MAX {
            let message = format!("meta payload of {} bytes is over the limit", payload.len());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        let (done, outcome) = oneshot::channel();
        self.enqueue(move |_, _| OperationKind::SaveMeta { payload, done }).await?;
        outcome.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Records the committed marker; it is written with the next batch of appends, or by
    /// [`Wal::flush_committed`]. Only the newest value is kept. Never waits.
    ///
    /// ### To ensure correctness
    /// - The marker is written with or after every operation enqueued before this call, never
    ///   before them.
    /// - Panics if `payload` is larger than [`COMMITTED_PAYLOAD_BYTES_MAX`].
    pub fn set_committed(&self, payload: Bytes) -> io::Result<()> {
        assert!(payload.len() <= COMMITTED_PAYLOAD_BYTES_MAX, "committed payload of {} bytes", payload.len());
        let mut state = self.shared.lock();
        state.check_usable()?;
        state.committed_sequence_last += 1;
        let committed = Committed { sequence: state.committed_sequence_last, payload };
        state.committed_pending = Some(PendingCommitted { committed, after_operation: state.operation_last });
        Ok(())
    }

    /// Returns once the committed marker set before this call (if any) is durable, writing it
    /// now if no batch has taken it yet. Everything enqueued before is durable too.
    ///
    /// While the writer is stalled on a failing disk ([`Wal::stalled`]) it answers at once
    /// instead of waiting for the disk: `Ok` if the marker set last is already durable (then
    /// nothing enqueued before is promised), the stall's error otherwise.
    pub async fn flush_committed(&self) -> io::Result<()> {
        {
            let state = self.shared.lock();
            state.check_usable()?;
            if let Some(stall) = &state.stall {
                return if state.committed_sequence_last <= state.committed_sequence_durable {
                    Ok(())
                } else {
                    Err(stall.to_stall_error())
                };
            }
        }
        let (done, outcome) = oneshot::channel();
        self.enqueue(move |_, _| OperationKind::FlushCommitted { done }).await?;
        outcome.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// The entries in `range` that exist (the range is clamped to the log), in order. Recent
    /// entries come from memory; older ones are read from disk and verified.
    ///
    /// ### To ensure correctness
    /// - Reading entries while they are being purged or truncated may fail: the caller must not
    ///   purge or truncate what it is still reading.
    pub async fn read(&self, range: Range<u64>) -> io::Result<Vec<(u64, Bytes)>> {
        self.read_limited(range, usize::MAX).await
    }

    /// Like [`Wal::read`], but stops before the entry that would take the payloads read past
    /// `bytes_max`; the first entry is always read, whatever its size.
    pub async fn read_limited(&self, range: Range<u64>, bytes_max: usize) -> io::Result<Vec<(u64, Bytes)>> {
        let mut cached = Vec::new();
        let mut on_disk = Vec::new();
        {
            let state = self.shared.lock();
            state.check_usable()?;
            let mut bytes = 0usize;
            for index in range.start.max(state.first_index)..range.end.min(state.next_index) {
                let (entry_bytes, location) = match state.cache.get(index) {
                    Some(payload) => (payload.len(), Ok(payload)),
                    None => {
                        let position = state.positions.get(index).expect("an uncached entry is on disk");
                        (position.len as usize, Err(position))
                    }
                };
                bytes = bytes.saturating_add(entry_bytes);
                if bytes > bytes_max && index > range.start.max(state.first_index) {
                    break;
                }
                match location {
                    Ok(payload) => cached.push((index, payload)),
                    Err(position) => on_disk.push((index, position)),
                }
            }
        }
        if on_disk.is_empty() {
            return Ok(cached);
        }
        let shared = self.shared.clone();
        let loaded = rt::run_blocking(move || read::read_entries(shared.disk.as_ref(), &shared.dir, &on_disk)).await?;
        Ok(merge_by_index(cached, loaded))
    }

    /// The error the writer is stalled on, while the disk fails (its kind is the disk's, e.g.
    /// [`io::ErrorKind::StorageFull`]); `None` while writes go through. Appends are accepted
    /// meanwhile but become durable (and acknowledged) only once the disk recovers.
    pub fn stalled(&self) -> Option<io::Error> {
        self.shared.lock().stall.as_ref().map(|stall| stall.to_stall_error())
    }

    /// The first readable index; `None` if the log is empty.
    pub fn first_index(&self) -> Option<u64> {
        let state = self.shared.lock();
        (state.first_index < state.next_index).then_some(state.first_index)
    }

    /// The last readable index; `None` if the log is empty.
    pub fn last_index(&self) -> Option<u64> {
        let state = self.shared.lock();
        (state.first_index < state.next_index).then(|| state.next_index - 1)
    }

    /// The index the next append must start at.
    pub fn next_index(&self) -> u64 {
        self.shared.lock().next_index
    }

    /// Drains every queued operation, writes the pending committed marker, and stops the
    /// writer. Later operations on any clone fail. `Err` if the WAL had failed.
    pub async fn shutdown(&self) -> io::Result<()> {
        {
            // Closed before waiting for room in the queue: a writer stalled on a failing disk
            // (with a full queue behind it) gives up once it sees this, and makes room.
            let mut state = self.shared.lock();
            if state.closed {
                return Ok(());
            }
            state.closed = true;
        }
        self.shared.closing.notify_one();
        let Ok(permit) = self.queue.reserve().await else { return Ok(()) };
        let (done, outcome) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            state.operation_last += 1;
            permit.send(Operation { sequence: state.operation_last, kind: OperationKind::Shutdown { done } });
        }
        let outcome = outcome.await.unwrap_or_else(|_| Err(writer_gone()));
        let writer = self.writer.lock().expect("only taken, never poisoned").take();
        if let Some(writer) = writer {
            writer.await.map_err(io::Error::other)?;
        }
        outcome
    }

    /// Waits for room in the queue, then, under the state lock, applies `update` to the logical
    /// state and enqueues the operation it returns.
    async fn enqueue(&self, update: impl FnOnce(&mut State, u64) -> OperationKind) -> io::Result<()> {
        let permit = self.queue.reserve().await.map_err(|_| closed_error())?;
        let mut state = self.shared.lock();
        state.check_usable()?;
        state.operation_last += 1;
        let sequence = state.operation_last;
        let kind = update(&mut state, sequence);
        permit.send(Operation { sequence, kind });
        Ok(())
    }
}

/// Creates the directory (syncing its parent) and reads the meta file and the segments.
fn read_directory(disk: &dyn Disk, dir: &Path) -> Result<(RecoveredLog, MetaFile), WalError> {
    disk.create_dir_all(dir).map_err(WalError::io(dir))?;
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        disk.sync_dir(parent).map_err(WalError::io(parent))?;
    }
    let meta = MetaFile::read(disk, dir)?;
    let log = recover_log(disk, dir, meta.log_end())?;
    Ok((log, meta))
}

/// Merges two runs of entries, each ascending, into one.
fn merge_by_index(left: Vec<(u64, Bytes)>, right: Vec<(u64, Bytes)>) -> Vec<(u64, Bytes)> {
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let mut right = right.into_iter().peekable();
    for entry in left {
        while let Some(next) = right.next_if(|(index, _)| *index < entry.0) {
            merged.push(next);
        }
        merged.push(entry);
    }
    merged.extend(right);
    debug_assert!(merged.windows(2).all(|pair| pair[0].0 + 1 == pair[1].0));
    merged
}

fn writer_gone() -> io::Error {
    io::Error::other("the WAL writer stopped before answering")
}
