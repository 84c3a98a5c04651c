//! Backups on the wire: `GET /v1/snapshot` takes the store's state as applied now (a copy that
//! shares the state's structure, so it costs memory only as later writes diverge from it),
//! writes it as a snapshot file beside raft's own, and streams that file, which goes away with
//! the stream.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use super::Node;
use crate::api::NodeError;
use crate::raft::SnapshotMeta;
use crate::rt;
use crate::store::snapshot::{SnapshotFile, SnapshotFiles};
use crate::store::state::KvState;

/// Bytes read from the file per chunk of the stream.
const CHUNK_BYTES: usize = 1024 * 1024;

/// A snapshot file written for one backup; removed when dropped.
pub struct ExportedSnapshot {
    files: Arc<SnapshotFiles>,
    file: SnapshotFile,
    pub bytes: u64,
    pub revision: u64,
    pub keys: usize,
    /// The raft log index the state was applied through.
    pub index: u64,
    _one_at_a_time: OwnedSemaphorePermit,
}

impl ExportedSnapshot {
    /// The chunk of the file at `offset`; empty at its end.
    pub async fn chunk(&self, offset: u64) -> io::Result<Bytes> {
        let wanted = self.bytes.saturating_sub(offset).min(CHUNK_BYTES as u64) as usize;
        if wanted == 0 {
            return Ok(Bytes::new());
        }
        let (files, file) = (self.files.clone(), self.file.clone());
        let chunk = rt::run_blocking(move || files.read_chunk(&file, offset, wanted)).await?;
        if chunk.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the backup file ended early"));
        }
        Ok(Bytes::from(chunk))
    }
}

impl Drop for ExportedSnapshot {
    fn drop(&mut self) {
        self.files.discard(&self.file);
    }
}

impl Node {
    /// Writes this node's applied state as a snapshot file for a backup. One backup runs at a
    /// time; another asked meanwhile is refused rather than queued behind it.
    pub async fn export_snapshot(&self) -> Result<ExportedSnapshot, NodeError> {
        self.ensure_serving()?;
        let permit = self.inner.exports.clone().try_acquire_owned().map_err(|_| NodeError::SnapshotInProgress)?;
        let frozen = self.inner.store.freeze().await.map_err(|_| NodeError::ShuttingDown)?;
        let files = self.inner.snapshots.clone();
        let applied =
            (SnapshotMeta { last_log_id: frozen.last_applied, last_membership: frozen.membership }, frozen.state);
        let (meta, state) = if self.inner.config.bugs.backup_from_raft_snapshot() {
            newest_raft_snapshot(&files).await.map_err(|error| NodeError::from_storage(&error))?.unwrap_or(applied)
        } else {
            applied
        };
        let file =
            files.write_detached("backup", &meta, &state).await.map_err(|error| NodeError::from_storage(&error))?;
        let bytes = match files.len(&file) {
            Ok(bytes) => bytes,
            Err(error) => {
                files.discard(&file);
                return Err(NodeError::from_storage(&error));
            }
        };
        Ok(ExportedSnapshot {
            files,
            file,
            bytes,
            revision: state.revision(),
            keys: state.len(),
            index: meta.last_log_id.map_or(0, |id| id.index),
            _one_at_a_time: permit,
        })
    }
}

/// The state of raft's newest snapshot file (for the injected bug that backs it up).
async fn newest_raft_snapshot(files: &SnapshotFiles) -> io::Result<Option<(SnapshotMeta, KvState)>> {
    match files.current().await? {
        Some((_, file)) => files.load(&file).await.map(Some),
        None => Ok(None),
    }
}
