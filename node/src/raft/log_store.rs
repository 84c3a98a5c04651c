//! openraft's log storage over the segmented WAL: entries are bincode-encoded WAL records, the
//! vote and the purge point live in the WAL's A/B meta slots, and the committed log id rides
//! along with the next group commit.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, Range, RangeBounds};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bugs::InjectedBugs;
use crate::metrics::WalMetrics;
use crate::raft::{Entry, LogId, TypeConfig, Vote};
use crate::storage::Disk;
use crate::storage::wal::{
    COMMITTED_PAYLOAD_BYTES_MAX, ENTRY_PAYLOAD_BYTES_MAX, META_PAYLOAD_BYTES_MAX, Wal, WalOptions,
};

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Encoded entry bytes one read for replication returns (beyond its first entry, which is
/// always returned): one AppendEntries' worth. Small enough that several are in flight to a
/// follower at once; a frame holds it, or one entry of the largest value a node accepts, with
/// room to spare.
pub const APPEND_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
const _: () = assert!(APPEND_BATCH_BYTES_MAX * 2 <= crate::transport::FRAME_BYTES_MAX);
const _: () = assert!(crate::config::VALUE_BYTES_MAX_LIMIT * 2 <= crate::transport::FRAME_BYTES_MAX);

/// Decoding stops, with an error, once a value claims more bytes than its record can hold, so
/// a damaged length never allocates more than this (see [`decode`]).
fn entry_config() -> impl bincode::config::Config {
    CONFIG.with_limit::<ENTRY_PAYLOAD_BYTES_MAX>()
}

fn meta_config() -> impl bincode::config::Config {
    CONFIG.with_limit::<META_PAYLOAD_BYTES_MAX>()
}

fn committed_config() -> impl bincode::config::Config {
    CONFIG.with_limit::<COMMITTED_PAYLOAD_BYTES_MAX>()
}

/// What the WAL's meta slots hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LogMeta {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
}

/// State shared by the storage handle and its readers. A std mutex: every critical section
/// copies or replaces a small value, never across an await.
#[derive(Default)]
struct Shared {
    meta: LogMeta,
    last_log_id: Option<LogId>,
}

/// openraft's log store: appends, truncations, purges, the vote and the committed log id.
pub struct LogStore {
    wal: Wal,
    shared: Arc<Mutex<Shared>>,
    recovered_committed: Option<LogId>,
}

/// Makes the committed log id durable on demand, for reads served from the local state.
#[derive(Clone)]
pub struct CommitDurability {
    wal: Wal,
}

impl CommitDurability {
    /// Returns once the newest committed log id given to the log store is on disk.
    pub async fn flush_committed(&self) -> io::Result<()> {
        self.wal.flush_committed().await
    }

    /// The error the log is stalled on while the disk fails; `None` while writes go through.
    pub fn stalled(&self) -> Option<io::Error> {
        self.wal.stalled()
    }

    /// Closes the log cleanly once raft has stopped: flushes the committed log id and records
    /// how far the log is synced, so that losing its tail later is detected at the next start.
    pub async fn close(&self) -> io::Result<()> {
        self.wal.shutdown().await
    }
}

impl LogStore {
    pub async fn open(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        bugs: InjectedBugs,
        metrics: WalMetrics,
    ) -> io::Result<LogStore> {
        let options = WalOptions { bugs, metrics, ..WalOptions::default() };
        let (wal, recovered) = Wal::open(disk, dir, options).await.map_err(io::Error::other)?;
        let meta: LogMeta =
            recovered.meta.as_deref().map(|bytes| decode(bytes, meta_config())).transpose()?.unwrap_or_default();
        let recovered_committed: Option<LogId> =
            recovered.committed.as_deref().map(|bytes| decode(bytes, committed_config())).transpose()?;
        if let Some(purged) = &meta.last_purged
            && wal.last_index().is_none()
            && wal.next_index() != purged.index.saturating_add(1)
        {
            // A crash between deleting the last segments and creating the next one leaves an
            // empty log that does not know where it continues; the purge point says.
            wal.purge(purged.index).await?;
        }
        let last_log_id = match wal.last_index() {
            Some(last) => {
                let entries = wal.read(last..last + 1).await?;
                let (_, bytes) = entries.first().ok_or_else(|| io::Error::other("the last WAL entry is unreadable"))?;
                Some(decode::<Entry>(bytes, entry_config())?.log_id)
            }
            None => meta.last_purged,
        };
        let shared = Arc::new(Mutex::new(Shared { meta, last_log_id }));
        Ok(LogStore { wal, shared, recovered_committed })
    }

    pub fn durability(&self) -> CommitDurability {
        CommitDurability { wal: self.wal.clone() }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn save_meta(&self, meta: LogMeta) -> io::Result<()> {
        self.wal.save_meta(encode(&meta)?).await?;
        self.shared().meta = meta;
        Ok(())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let shared = self.shared();
        Ok(LogState { last_purged_log_id: shared.meta.last_purged, last_log_id: shared.last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { wal: self.wal.clone(), shared: self.shared.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let meta = LogMeta { vote: Some(*vote), ..self.shared().meta.clone() };
        self.save_meta(meta).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        if let Some(committed) = committed {
            self.wal.set_committed(encode(&committed)?)?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.recovered_committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut records = Vec::new();
        let mut last = None;
        for entry in entries {
            records.push((entry.log_id.index, encode(&entry)?));
            last = Some(entry.log_id);
        }
        let Some(last) = last else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let first = records[0].0;
        if self.wal.last_index().is_none() && first > self.wal.next_index() {
            // An empty log may start anywhere (openraft's own suite starts at 1); the WAL
            // continues after a purge point, so move it there.
            self.wal.purge(first - 1).await?;
        }
        self.shared().last_log_id = Some(last);
        self.wal.append(records, Box::new(move |result| callback.io_completed(result))).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        self.wal.truncate_after(last_log_id.as_ref().map(|id| id.index)).await?;
        let mut shared = self.shared();
        match last_log_id {
            Some(kept) if shared.last_log_id.is_some_and(|last| last.index <= kept.index) => {}
            Some(kept) => shared.last_log_id = Some(kept),
            None => shared.last_log_id = shared.meta.last_purged,
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let meta = {
            let shared = self.shared();
            assert!(shared.meta.last_purged.as_ref() <= Some(&log_id), "purges only move forward");
            LogMeta { last_purged: Some(log_id), ..shared.meta.clone() }
        };
        self.save_meta(meta).await?;
        self.wal.purge(log_id.index).await?;
        let mut shared = self.shared();
        if shared.last_log_id.as_ref() < Some(&log_id) {
            shared.last_log_id = Some(log_id);
        }
        Ok(())
    }
}

/// Reads entries for replication and apply; shares the WAL with the store.
pub struct LogReader {
    wal: Wal,
    shared: Arc<Mutex<Shared>>,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let range = bounded(range);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        self.wal.read(range).await?.iter().map(|(_, bytes)| decode(bytes, entry_config())).collect()
    }

    /// Bounded by bytes as well as by openraft's entry count, so that one AppendEntries of
    /// large values stays a reasonable frame and a lagging follower catches up in steps.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let records = self.wal.read_limited(start..end, APPEND_BATCH_BYTES_MAX).await?;
        records.iter().map(|(_, bytes)| decode(bytes, entry_config())).collect()
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.shared.lock().unwrap_or_else(PoisonError::into_inner).meta.vote)
    }
}

fn bounded(range: impl RangeBounds<u64>) -> Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(start) => *start,
        Bound::Excluded(start) => start.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(end) => end.saturating_add(1),
        Bound::Excluded(end) => *end,
        Bound::Unbounded => u64::MAX,
    };
    start..end.max(start)
}

fn encode<T: Serialize>(value: &T) -> io::Result<Bytes> {
    bincode::serde::encode_to_vec(value, CONFIG).map(Bytes::from).map_err(io::Error::other)
}

/// Decodes a value from a record's payload. `config` carries the byte limit: without one,
/// bincode allocates whatever a length field claims before reading the bytes behind it.
fn decode<T: DeserializeOwned>(bytes: &[u8], config: impl bincode::config::Config) -> io::Result<T> {
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(value, _)| value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // Goal: a damaged length field never allocates what it claims. Method: a string whose
    // varint length says 2^44 bytes (bincode's 0xFD prefix, then a u64); without the limit the
    // decoder would try to allocate 16 TiB and abort the process.
    #[test]
    fn a_huge_declared_length_is_refused_not_allocated() {
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&(1u64 << 44).to_le_bytes());
        bytes.extend_from_slice(b"short");
        assert!(decode::<String>(&bytes, entry_config()).is_err());
        assert!(decode::<LogMeta>(&bytes, meta_config()).is_err());
    }

    proptest! {
        // Goal: random and mutated bytes through the log store's decoders never panic.
        // Method: decode random bytes as entries, meta and committed ids; and a valid entry
        // encoding with flipped bytes.
        #[test]
        fn random_and_mutated_payloads_never_panic_the_decoders(
            random in proptest::collection::vec(any::<u8>(), 0..512),
            flips in proptest::collection::vec((any::<usize>(), 1..=u8::MAX), 1..4),
        ) {
            let _ = decode::<Entry>(&random, entry_config());
            let _ = decode::<LogMeta>(&random, meta_config());
            let _ = decode::<LogId>(&random, committed_config());
            let meta = LogMeta { vote: None, last_purged: None };
            let mut bytes = encode(&meta).unwrap().to_vec();
            bytes.extend_from_slice(&random);
            let len = bytes.len();
            for (at, mask) in flips {
                bytes[at % len] ^= mask;
            }
            let _ = decode::<LogMeta>(&bytes, meta_config());
            let _ = decode::<Entry>(&bytes, entry_config());
        }
    }
}
