//! The writer task: the only code that writes the WAL's files. It takes operations from the
//! queue in FIFO order, so their effects reach the disk in the order callers made them.
//!
//! Group commit: after taking an append it drains every append already queued (up to
//! `batch_bytes_max`), encodes them and any pending committed marker into one buffer, and does
//! one write and one fdatasync for the lot before completing their callbacks. Any other
//! operation ends the batch and runs alone, after it.
//!
//! An I/O error (a full disk, a failed write or fsync) stalls the writer rather than failing the
//! WAL: it repairs the files and retries the step until the disk accepts it (see `repair.rs`),
//! holding back every callback meanwhile, so nothing is acknowledged that is not durable and
//! raft never sees a storage error. A failed fsync is never retried as such: the bytes it
//! covered are cut off and written again. Only a repair that finds synced bytes damaged fails
//! the WAL for good.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::format::{Record, SEGMENT_HEADER_BYTES, encode_record, encode_segment_header};
use super::meta::{COMMITTED_PAYLOAD_BYTES_MAX, MetaFile};
use super::positions::Position;
use super::recovery::Segment;
use super::state::{Committed, Failure, Shared};
use super::{OnDurable, WalOptions};
use crate::rt;
use crate::storage::Disk;

/// Room reserved in a batch buffer for a committed marker.
const COMMITTED_RECORD_BYTES_MAX: usize =
    Record::Committed { sequence: 0, payload: &[] }.encoded_len() + COMMITTED_PAYLOAD_BYTES_MAX;

/// With the `ack_before_fsync` bug, how long acknowledged appends wait to be written and synced.
const EARLY_ACK_SYNC_INTERVAL: rt::Duration = rt::Duration::from_millis(100);

/// One request to the writer; `sequence` is its place in the queue.
pub(super) struct Operation {
    pub(super) sequence: u64,
    pub(super) kind: OperationKind,
}

pub(super) enum OperationKind {
    Append {
        entries: Vec<(u64, Bytes)>,
        on_durable: OnDurable,
    },
    /// Remove every entry from `cut` on.
    TruncateAfter {
        cut: u64,
    },
    /// Delete segments holding only entries up to `upto`, inclusive.
    Purge {
        upto: u64,
    },
    SaveMeta {
        payload: Bytes,
        done: oneshot::Sender<io::Result<()>>,
    },
    FlushCommitted {
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Flush the pending committed marker, answer, and stop.
    Shutdown {
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// A step of disk work the writer retries, after repairing the files, until it succeeds (see
/// `repair.rs`). Each starts from the writer's view of the files, which only ever changes
/// after a step's disk calls succeeded, so a retry redoes exactly what did not happen.
pub(super) enum Work<'a> {
    /// Write and sync entries and a committed marker.
    Records {
        appends: &'a [(u64, Vec<(u64, Bytes)>)],
        committed: Option<Committed>,
    },
    Truncate {
        cut: u64,
    },
    Purge {
        upto: u64,
    },
    /// Write and sync a meta slot.
    Meta {
        payload: Option<Bytes>,
        log_end: u64,
    },
}

/// An append waiting in a batch.
struct Append {
    sequence: u64,
    entries: Vec<(u64, Bytes)>,
    on_durable: OnDurable,
}

/// An entry encoded into a batch buffer.
struct Placed {
    index: u64,
    offset: u64,
    len: u32,
    operation: u64,
}

/// The writer's own view of the files; the handles never see it.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) options: WalOptions,
    /// Segments in index order; the last one is active.
    pub(super) segments: Vec<Segment>,
    /// Where the log continues when there are no segments.
    pub(super) empty_next_index: u64,
    pub(super) meta: MetaFile,
    /// The newest committed marker known durable, in the log or in the meta file.
    pub(super) committed_durable: Option<Committed>,
    pub(super) failure: Option<Failure>,
    /// A non-append operation drained while gathering a batch; it runs next.
    pub(super) deferred: Option<Operation>,
    /// When `log_end` was last saved to the meta file (or the WAL opened).
    pub(super) log_end_saved_at: rt::Instant,
    /// How long to wait before the next repair while the disk is failing.
    pub(super) repair_backoff: rt::Duration,
}

impl Writer {
    /// Serves the queue until it is closed or a shutdown is processed.
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Operation>) {
        loop {
            let operation = match self.deferred.take() {
                Some(operation) => operation,
                None => match queue.recv().await {
                    Some(operation) => operation,
                    None => return,
                },
            };
            let sequence = operation.sequence;
            match operation.kind {
                OperationKind::Append { entries, on_durable } => {
                    let batch = self.gather(Append { sequence, entries, on_durable }, &mut queue);
                    self.append_batch(batch).await;
                }
                OperationKind::TruncateAfter { cut } => self.persist(Work::Truncate { cut }).await,
                OperationKind::Purge { upto } => self.persist(Work::Purge { upto }).await,
                OperationKind::SaveMeta { payload, done } => {
                    self.persist(Work::Meta { payload: Some(payload), log_end: self.next_index() }).await;
                    // The caller may have given up waiting; the meta is saved regardless.
                    let _ = done.send(self.outcome());
                }
                OperationKind::FlushCommitted { done } => {
                    self.flush_committed(sequence).await;
                    let _ = done.send(self.outcome());
                }
                OperationKind::Shutdown { done } => {
                    self.flush_committed(sequence).await;
                    self.save_log_end().await;
                    let _ = done.send(self.outcome());
                    return;
                }
            }
        }
    }

    /// Drains queued appends after `first` into one batch, up to the batch size.
    fn gather(&mut self, first: Append, queue: &mut mpsc::Receiver<Operation>) -> Vec<Append> {
        let payload_bytes = |entries: &[(u64, Bytes)]| entries.iter().map(|(_, p)| p.len()).sum::<usize>();
        let mut bytes = payload_bytes(&first.entries);
        let mut batch = vec![first];
        while bytes < self.options.batch_bytes_max {
            match queue.try_recv() {
                Ok(Operation { sequence, kind: OperationKind::Append { entries, on_durable } }) => {
                    bytes += payload_bytes(&entries);
                    batch.push(Append { sequence, entries, on_durable });
                }
                Ok(other) => {
                    self.deferred = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    async fn append_batch(&mut self, batch: Vec<Append>) {
        let through = batch.last().expect("a batch has at least one append").sequence;
        let (appends, mut callbacks): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|append| ((append.sequence, append.entries), append.on_durable)).unzip();
        if self.options.bugs.ack_before_fsync() {
            for on_durable in callbacks.drain(..) {
                on_durable(self.outcome());
            }
            rt::sleep(EARLY_ACK_SYNC_INTERVAL).await;
        }
        if self.failure.is_none() {
            let committed = self.take_committed(through);
            self.persist(Work::Records { appends: &appends, committed }).await;
        }
        for on_durable in callbacks {
            on_durable(self.outcome());
        }
        if self.log_end_saved_at.elapsed() >= self.options.log_end_save_interval {
            self.save_log_end().await;
        }
    }

    /// Records in the meta file that the log reaches its current end, if it does not say so
    /// already. After the batch's callbacks, so acknowledgements never wait for it; at most
    /// once per `log_end_save_interval` (and at shutdown), so its sync costs the hot path
    /// little. Entries synced since the last save are protected only by their checksums.
    async fn save_log_end(&mut self) {
        self.log_end_saved_at = rt::Instant::now();
        if self.meta.log_end() != self.next_index() {
            let payload = self.meta.current().and_then(|record| record.meta.clone());
            self.persist(Work::Meta { payload, log_end: self.next_index() }).await;
        }
    }

    async fn flush_committed(&mut self, through: u64) {
        if self.failure.is_none()
            && let Some(committed) = self.take_committed(through)
        {
            self.persist(Work::Records { appends: &[], committed: Some(committed) }).await;
        }
    }

    /// The pending committed marker, if every operation enqueued before it was set is at most
    /// `through` (so it is written with or after those operations, never before).
    fn take_committed(&self, through: u64) -> Option<Committed> {
        let mut state = self.shared.lock();
        let ready = state.committed_pending.as_ref().is_some_and(|pending| pending.after_operation <= through);
        ready.then(|| state.committed_pending.take().expect("checked above").committed)
    }

    /// Encodes the batch's entries and the marker, writes them with one write and one
    /// fdatasync, then publishes their positions.
    async fn write_records(
        &mut self,
        appends: &[(u64, Vec<(u64, Bytes)>)],
        committed: Option<Committed>,
    ) -> io::Result<()> {
        let entry_records = appends.iter().flat_map(|(_, entries)| entries);
        let capacity: usize =
            entry_records.map(|(index, payload)| Record::Entry { index: *index, payload }.encoded_len()).sum();
        let mut buffer = Vec::with_capacity(capacity + COMMITTED_RECORD_BYTES_MAX);
        let mut placed = Vec::new();
        let mut next_index = self.next_index();
        for (operation, entries) in appends {
            for (index, payload) in entries {
                assert_eq!(*index, next_index, "a batch continues the log on disk");
                let offset = buffer.len() as u64;
                let len = encode_record(&mut buffer, &Record::Entry { index: *index, payload });
                placed.push(Placed { index: *index, offset, len: len as u32, operation: *operation });
                next_index += 1;
            }
        }
        if let Some(committed) = &committed {
            let newer = self.committed_durable.as_ref().is_none_or(|durable| committed.sequence > durable.sequence);
            assert!(newer, "committed markers are written in the order they were set");
            encode_record(
                &mut buffer,
                &Record::Committed { sequence: committed.sequence, payload: &committed.payload },
            );
        }
        if buffer.is_empty() {
            return Ok(());
        }
        let (segment, base) = self.segment_for(buffer.len() as u64).await?;
        let written = buffer.len() as u64;
        let path = self.shared.segment_path(segment);
        let sync_path = path.clone();
        let latency = self.shared.disk.sync_latency();
        let synced_in = if latency.is_zero() {
            // One trip to the blocking pool for both: each trip wakes a pool thread and then
            // this task, tens of microseconds on a busy machine, and it is on the path of every
            // acknowledged write (on the leader and on the follower that completes the quorum).
            self.blocking(move |disk| {
                disk.write_at(&path, base, &buffer)?;
                let started = rt::Instant::now();
                disk.sync(&sync_path)?;
                Ok(started.elapsed())
            })
            .await?
        } else {
            // A simulated disk: waiting between the write and the sync lets a simulated crash
            // fall between them.
            self.blocking(move |disk| disk.write_at(&path, base, &buffer)).await?;
            let started = rt::Instant::now();
            rt::sleep(latency).await;
            self.blocking(move |disk| disk.sync(&sync_path)).await?;
            started.elapsed()
        };
        self.options.metrics.write_bytes.inc_by(written);
        self.options.metrics.fsync_seconds.observe(synced_in.as_secs_f64());
        let active = self.segments.last_mut().expect("segment_for made one");
        active.bytes += written;
        active.next_index = next_index;
        let mut state = self.shared.lock();
        for Placed { index, offset, len, operation } in placed {
            state.positions.push(index, Position { segment, offset: base + offset, len });
            state.cache.mark_written(index, operation);
        }
        state.cache.evict();
        if let Some(committed) = &committed {
            state.committed_sequence_durable = committed.sequence;
        }
        drop(state);
        if committed.is_some() {
            self.committed_durable = committed;
        }
        Ok(())
    }

    /// The active segment to write `len` bytes to, and the offset to write at: a new segment if
    /// there is none or the active one would grow past the limit. A segment without entries
    /// never rolls, however full of markers: its successor would have the same first index.
    async fn segment_for(&mut self, len: u64) -> io::Result<(u64, u64)> {
        let roll_at = match self.segments.last() {
            None => Some(self.empty_next_index),
            Some(active)
                if active.next_index > active.first_index && active.bytes + len > self.options.segment_bytes_max =>
            {
                Some(active.next_index)
            }
            Some(_) => None,
        };
        if let Some(first_index) = roll_at {
            self.create_segment(first_index).await?;
        }
        let active = self.segments.last().expect("created above if missing");
        Ok((active.first_index, active.bytes))
    }

    /// Creates the segment starting at `first_index`: header written and synced, directory
    /// synced, before anything is written to it.
    async fn create_segment(&mut self, first_index: u64) -> io::Result<()> {
        if let Some(last) = self.segments.last() {
            assert_eq!(last.next_index, first_index, "a new segment continues the last one");
        }
        let path = self.shared.segment_path(first_index);
        let dir = self.shared.dir.clone();
        let header = encode_segment_header(first_index);
        self.blocking(move |disk| {
            if disk.exists(&path)? {
                let message = format!("{} exists but is not a known segment", path.display());
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, message));
            }
            disk.write_at(&path, 0, &header)?;
            disk.sync(&path)?;
            disk.sync_dir(&dir)
        })
        .await?;
        self.segments.push(Segment { first_index, next_index: first_index, bytes: SEGMENT_HEADER_BYTES });
        Ok(())
    }

    /// Removes entries from `cut` on: later segments newest first, then the rest of the
    /// segment holding `cut`, so that after a crash at any point the log is a prefix of the old.
    async fn truncate(&mut self, cut: u64) -> io::Result<()> {
        if cut >= self.next_index() {
            return Ok(());
        }
        self.back_up_committed(cut).await?;
        while self.segments.len() > 1 && self.segments.last().is_some_and(|last| last.first_index >= cut) {
            let last = self.segments.last().expect("checked above").first_index;
            self.remove_segment(last).await?;
            self.segments.pop();
        }
        let active = self.segments.last().expect("the log is not empty");
        assert!(active.first_index <= cut, "truncation below the first segment");
        let offset = if active.first_index == cut {
            SEGMENT_HEADER_BYTES
        } else {
            self.shared.lock().positions.get(cut - 1).expect("the entry before the cut is on disk").end()
        };
        assert!(offset <= active.bytes);
        let path = self.shared.segment_path(active.first_index);
        self.blocking(move |disk| {
            disk.set_len(&path, offset)?;
            disk.sync(&path)
        })
        .await?;
        let active = self.segments.last_mut().expect("still there");
        active.bytes = offset;
        active.next_index = cut;
        self.shared.lock().positions.truncate(cut);
        Ok(())
    }

    /// Deletes, oldest first, every segment other than the active one whose entries are all at
    /// most `upto`. If `upto` is past the end of the log, deletes them all and starts an empty
    /// segment at `upto + 1`, so the log's position survives.
    async fn purge(&mut self, upto: u64) -> io::Result<()> {
        let first_kept = upto + 1;
        if first_kept > self.next_index() {
            return self.purge_all(first_kept).await;
        }
        let mut backed_up = false;
        while self.segments.len() > 1 && self.segments[1].first_index <= first_kept {
            if !backed_up {
                self.back_up_committed(self.next_index()).await?;
                backed_up = true;
            }
            self.remove_segment(self.segments[0].first_index).await?;
            self.segments.remove(0);
            self.shared.lock().positions.remove_before(self.segments[0].first_index);
        }
        Ok(())
    }

    async fn purge_all(&mut self, first_kept: u64) -> io::Result<()> {
        // The log end stays the old one: until the new segment exists, the log on disk may
        // still be the old one.
        self.back_up_committed(self.next_index()).await?;
        while let Some(oldest) = self.segments.first() {
            self.remove_segment(oldest.first_index).await?;
            self.segments.remove(0);
        }
        self.empty_next_index = first_kept;
        self.shared.lock().positions.reset(first_kept);
        self.create_segment(first_kept).await
    }

    /// Removes a segment durably. A segment already gone is fine: this is a retry after the
    /// directory sync failed.
    fn remove_segment(&self, first_index: u64) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let path = self.shared.segment_path(first_index);
        let dir = self.shared.dir.clone();
        self.blocking(move |disk| {
            match disk.remove(&path) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
            disk.sync_dir(&dir)
        })
    }

    /// Copies the newest durable committed marker into the meta file unless it is already
    /// there, and lowers the recorded log end to `log_end` if it is higher: called before
    /// deleting log bytes, which may hold the only copy of the marker, and which a log end
    /// above the cut would make look lost.
    async fn back_up_committed(&mut self, log_end: u64) -> io::Result<()> {
        let current = self.meta.current();
        let marker_saved = current.and_then(|record| record.committed.as_ref()) == self.committed_durable.as_ref();
        let log_end = log_end.min(self.meta.log_end());
        if marker_saved && log_end == self.meta.log_end() {
            return Ok(());
        }
        let meta = current.and_then(|record| record.meta.clone());
        self.write_meta(meta, log_end).await
    }

    /// Writes and syncs the meta slot not holding the newest valid copy, with the newest
    /// durable committed marker.
    async fn write_meta(&mut self, meta: Option<Bytes>, log_end: u64) -> io::Result<()> {
        let planned = self.meta.next_write(meta, self.committed_durable.clone(), log_end);
        let created = self.meta.needs_create();
        let path = self.meta.path.clone();
        let dir = self.shared.dir.clone();
        let planned = self
            .blocking(move |disk| {
                MetaFile::write(disk, &dir, &path, &planned, created)?;
                Ok(planned)
            })
            .await?;
        self.meta.written(planned);
        Ok(())
    }

    pub(super) fn next_index(&self) -> u64 {
        self.segments.last().map_or(self.empty_next_index, |active| active.next_index)
    }

    /// Runs disk work off the async workers (inline under the simulator). The future does not
    /// borrow the writer: `Writer` is not `Sync` (it holds callbacks), so a borrow of it held
    /// across an `.await` would make the task not `Send`.
    pub(super) fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Disk) -> io::Result<T> + Send + 'static,
    ) -> impl Future<Output = io::Result<T>> + Send + 'static {
        let shared = self.shared.clone();
        rt::run_blocking(move || work(shared.disk.as_ref()))
    }

    /// Records the first failure; the WAL then refuses everything.
    pub(super) fn settle(&mut self, result: io::Result<()>) {
        if let Err(error) = result
            && self.failure.is_none()
        {
            tracing::error!(%error, dir = %self.shared.dir.display(), "WAL I/O failed; the WAL stops");
            let failure = Failure::new(&error);
            self.shared.lock().failure = Some(failure.clone());
            self.failure = Some(failure);
        }
    }

    /// Does one attempt at `work`.
    pub(super) async fn attempt(&mut self, work: &Work<'_>) -> io::Result<()> {
        match work {
            Work::Records { appends, committed } => self.write_records(appends, committed.clone()).await,
            Work::Truncate { cut } => self.truncate(*cut).await,
            Work::Purge { upto } => self.purge(*upto).await,
            Work::Meta { payload, log_end } => self.write_meta(payload.clone(), *log_end).await,
        }
    }

    /// What to tell the caller of the operation just handled.
    fn outcome(&self) -> io::Result<()> {
        match &self.failure {
            Some(failure) => Err(failure.to_error()),
            None => Ok(()),
        }
    }
}
