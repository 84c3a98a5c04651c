//! Surviving a failing disk: when a step of the writer fails (ENOSPC, EIO, a failed fsync), the
//! writer stalls instead of failing the WAL. It waits, repairs the files, and retries the step,
//! with a growing backoff, until the disk accepts it.
//!
//! Why a repair and not a plain retry: after a failed fsync the page cache may hold bytes that
//! never reached the disk while reporting them clean ("fsyncgate"), so a second fsync could
//! succeed without writing them. The writer's own view of the files changes only after a step's
//! disk calls all succeeded, so it is exactly what is durable. The repair cuts the active
//! segment back to that length (dropping whatever the failed step wrote), removes a segment
//! whose creation failed, syncs, and re-reads the synced part to verify it; the retried step
//! then writes its bytes afresh and syncs them, so nothing is ever trusted that a failed fsync
//! covered. Only a verification that finds synced bytes damaged fails the WAL for good.
//!
//! While stalled, the WAL keeps accepting operations (they queue behind the stalled one, with
//! the queue's backpressure), keeps serving reads, and reports the stall through
//! [`Wal::stalled`](super::Wal::stalled), so the node can refuse new writes with a clear error.
//! No callback of the stalled batch runs until it is durable: raft sees a slow disk, never a
//! storage error (openraft stops for good on one).

use std::io;
use std::path::{Path, PathBuf};

use super::format::{SEGMENT_HEADER_BYTES, parse_segment_file_name};
use super::recovery::{Segment, scan_segment};
use super::state::{Failure, segment_path};
use super::writer::{Work, Writer};
use crate::rt;
use crate::storage::Disk;

/// The first wait before repairing; it doubles with every failed retry.
pub(super) const REPAIR_BACKOFF_MIN: rt::Duration = rt::Duration::from_millis(50);
/// The longest wait between retries while the disk is failing.
const REPAIR_BACKOFF_MAX: rt::Duration = rt::Duration::from_secs(1);

impl Writer {
    /// Does `work`, stalling on each I/O error (repair, then retry) until it succeeds, the WAL
    /// is shut down, or a repair finds the log corrupt.
    pub(super) async fn persist(&mut self, work: Work<'_>) {
        while self.failure.is_none() {
            let Err(error) = self.attempt(&work).await else {
                self.resume();
                return;
            };
            if self.shared.lock().closed {
                // Shutting down: nothing will retry this, and the process may be exiting.
                self.settle(Err(error));
                return;
            }
            self.stall(&error);
            self.repair_until_done().await;
        }
    }

    /// Records the stall for the handles to report.
    fn stall(&mut self, error: &io::Error) {
        let mut state = self.shared.lock();
        if state.stall.is_none() {
            tracing::error!(%error, dir = %self.shared.dir.display(), "WAL I/O failed; retrying until the disk recovers");
        }
        state.stall = Some(Failure::new(error));
    }

    /// Clears the stall after a successful step.
    fn resume(&mut self) {
        self.repair_backoff = REPAIR_BACKOFF_MIN;
        if self.shared.lock().stall.take().is_some() {
            tracing::warn!(dir = %self.shared.dir.display(), "the disk accepts writes again; the WAL resumes");
        }
    }

    /// Waits and repairs until a repair succeeds (or finds corruption, or the WAL shuts down).
    async fn repair_until_done(&mut self) {
        loop {
            tokio::select! {
                biased;
                () = self.shared.closing.notified() => {}
                () = rt::sleep(self.repair_backoff) => {}
            }
            self.repair_backoff = (self.repair_backoff * 2).min(REPAIR_BACKOFF_MAX);
            if self.shared.lock().closed {
                self.settle(Err(io::Error::other("the WAL shut down while the disk was failing")));
                return;
            }
            let view = DurableView {
                dir: self.shared.dir.clone(),
                known: self.segments.iter().map(|segment| segment.first_index).collect(),
                next_index: self.next_index(),
                active: self.segments.last().cloned(),
            };
            match self.blocking(move |disk| Ok(view.repair(disk))).await {
                Ok(Ok(())) => return,
                Ok(Err(Repair::Corrupt(error))) => {
                    self.settle(Err(error));
                    return;
                }
                Ok(Err(Repair::Io(error))) | Err(error) => self.stall(&error),
            }
        }
    }
}

/// Why a repair did not finish.
enum Repair {
    /// The disk failed again; try later.
    Io(io::Error),
    /// Synced bytes do not verify: the log cannot be trusted.
    Corrupt(io::Error),
}

impl From<io::Error> for Repair {
    fn from(error: io::Error) -> Repair {
        Repair::Io(error)
    }
}

/// What the writer knows is durable, moved to the blocking pool for the repair.
struct DurableView {
    dir: PathBuf,
    /// First indices of the segments the writer knows, oldest first.
    known: Vec<u64>,
    next_index: u64,
    active: Option<Segment>,
}

impl DurableView {
    fn repair(&self, disk: &dyn Disk) -> Result<(), Repair> {
        self.remove_unknown_segments(disk)?;
        let Some(active) = &self.active else { return Ok(()) };
        let path = segment_path(&self.dir, active.first_index);
        let len = match disk.len(&path) {
            // A truncation or purge removed it but failed to sync the directory: its retry
            // finishes the job.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        if len > active.bytes {
            disk.set_len(&path, active.bytes)?;
        }
        disk.sync(&path)?;
        verify(disk, &path, active, len.min(active.bytes))
    }

    /// Removes segments at or past the end of the log that the writer does not know: one whose
    /// creation failed part way.
    fn remove_unknown_segments(&self, disk: &dyn Disk) -> io::Result<()> {
        let mut removed = false;
        for name in disk.list(&self.dir)? {
            let Some(first) = parse_segment_file_name(&name) else { continue };
            if first >= self.next_index && !self.known.contains(&first) {
                tracing::warn!(file = %self.dir.join(&name).display(), "removing a segment whose creation failed");
                match disk.remove(&self.dir.join(&name)) {
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
                removed = true;
            }
        }
        if removed { disk.sync_dir(&self.dir) } else { Ok(()) }
    }
}

/// Re-reads the first `upto` bytes of the active segment, which were synced, and checks that
/// they hold exactly the records the writer wrote: valid, consecutive, and (when `upto` is the
/// whole durable length) ending where the writer's view ends.
fn verify(disk: &dyn Disk, path: &Path, active: &Segment, upto: u64) -> Result<(), Repair> {
    let corrupt = |reason: String| {
        Repair::Corrupt(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} fails verification after a disk error: {reason}", path.display()),
        ))
    };
    let mut bytes = disk.read_all(path)?;
    bytes.truncate(usize::try_from(upto).map_err(io::Error::other)?);
    if upto < SEGMENT_HEADER_BYTES {
        return Err(corrupt(format!("{upto} bytes, shorter than its header")));
    }
    let scan = scan_segment(&bytes, active.first_index, path).map_err(|error| corrupt(error.to_string()))?;
    if let Some(damage) = scan.damage {
        return Err(corrupt(format!("synced bytes damaged at byte {}: {}", damage.offset, damage.reason)));
    }
    if upto == active.bytes && scan.segment.next_index != active.next_index {
        let found = scan.segment.next_index;
        return Err(corrupt(format!("it ends before entry {found}, the writer wrote up to {}", active.next_index)));
    }
    Ok(())
}
