//! Tuning knobs of the WAL.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::WalError;
use super::format::SEGMENT_HEADER_BYTES;
use crate::bugs::InjectedBugs;
use crate::metrics::WalMetrics;

/// How the WAL sizes its files, cache, batches and queue. [`WalOptions::default`] suits
/// production; tests shrink segments to exercise rolling and purging.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A new segment is started when the next batch would take the active one past this many
    /// bytes (a single batch larger than this still goes into one segment). Must be larger than
    /// a segment header. Larger means fewer files; smaller means purges free space sooner.
    pub segment_bytes_max: u64,
    /// Payload bytes of recent entries kept in memory to serve reads without disk I/O. Entries
    /// not yet written are kept regardless, so this is a target, not a hard cap.
    pub cache_bytes_max: usize,
    /// Group commit stops draining queued appends once a batch holds this many bytes. Must not
    /// be zero. Larger batches amortize one fdatasync over more entries but delay the first.
    pub batch_bytes_max: usize,
    /// Operations queued in front of the writer; `append`, `truncate_after`, `purge`,
    /// `save_meta` and `flush_committed` wait for room when it is full (backpressure on the raft
    /// actor when the disk falls behind).
    pub queue_depth_max: NonZeroUsize,
    /// How often, at most, the writer records in the meta file how far the log is synced (one
    /// extra meta sync, after a batch's callbacks). A power loss may tear what was synced since
    /// the last record undetected by anything but checksums; what was synced before, if later
    /// lost, makes the open fail instead of silently shortening the log. Also saved at shutdown.
    pub log_end_save_interval: Duration,
    /// Deliberate bugs; see [`InjectedBugs::ack_before_fsync`].
    pub bugs: InjectedBugs,
    /// Where the writer counts its bytes and fsync latencies.
    pub metrics: WalMetrics,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes_max: 64 * 1024 * 1024,
            cache_bytes_max: 64 * 1024 * 1024,
            batch_bytes_max: 4 * 1024 * 1024,
            queue_depth_max: NonZeroUsize::new(1024).expect("not zero"),
            log_end_save_interval: Duration::from_secs(1),
            bugs: InjectedBugs::default(),
            metrics: WalMetrics::default(),
        }
    }
}

impl WalOptions {
    /// Checks the constraints documented on each field.
    pub fn validate(&self) -> Result<(), WalError> {
        if self.segment_bytes_max <= SEGMENT_HEADER_BYTES {
            return Err(WalError::Options("segment_bytes_max must be larger than a segment header"));
        }
        if self.batch_bytes_max == 0 {
            return Err(WalError::Options("batch_bytes_max must not be zero"));
        }
        Ok(())
    }
}
