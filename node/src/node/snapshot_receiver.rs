//! Receives snapshots streamed by the leader: chunks go to a temporary file, and after the last
//! one the file is handed to raft, which installs it through the state machine.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::Snapshot;

use super::Raft;
use crate::command::NodeId;
use crate::rt;
use crate::store::snapshot::{SnapshotFile, SnapshotFiles};
use crate::transport::{PeerResponse, SnapshotChunk};

struct Incoming {
    from: NodeId,
    file: SnapshotFile,
    next_offset: u64,
}

pub(super) struct SnapshotReceiver {
    files: Arc<SnapshotFiles>,
    /// Transfers in progress by id. An async mutex, held across the chunk write: chunks of one
    /// transfer arrive one at a time, and transfers are rare.
    transfers: tokio::sync::Mutex<BTreeMap<u64, Incoming>>,
}

impl SnapshotReceiver {
    pub(super) fn new(files: Arc<SnapshotFiles>) -> SnapshotReceiver {
        SnapshotReceiver { files, transfers: tokio::sync::Mutex::new(BTreeMap::new()) }
    }

    pub(super) async fn receive(&self, from: NodeId, chunk: SnapshotChunk, raft: &Raft) -> PeerResponse {
        let mut transfers = self.transfers.lock().await;
        if chunk.offset == 0 {
            self.abandon_older(&mut transfers, from);
            let file = SnapshotFile { path: self.files.temp_path(&format!("from-{from}")) };
            transfers.insert(chunk.transfer, Incoming { from, file, next_offset: 0 });
        }
        let Some(incoming) = transfers.get_mut(&chunk.transfer) else {
            return PeerResponse::refused("unknown snapshot transfer; restart it from offset 0");
        };
        if chunk.offset != incoming.next_offset {
            return PeerResponse::refused(format!("expected offset {}, got {}", incoming.next_offset, chunk.offset));
        }
        let files = self.files.clone();
        let file = incoming.file.clone();
        let (offset, data, done) = (chunk.offset, chunk.data.clone(), chunk.done);
        if let Err(error) = rt::run_blocking(move || files.write_chunk(&file, offset, &data, done)).await {
            return PeerResponse::refused(format!("writing a snapshot chunk: {error}"));
        }
        incoming.next_offset += chunk.data.len() as u64;
        if !chunk.done {
            return PeerResponse::Snapshot(None);
        }
        let incoming = transfers.remove(&chunk.transfer).expect("present above");
        let snapshot = Snapshot { meta: chunk.meta, snapshot: incoming.file.clone() };
        let last = snapshot.meta.last_log_id;
        match raft.install_full_snapshot(chunk.vote, snapshot).await {
            Ok(response) => {
                tracing::info!(from, last_log_id = ?last, "installed a snapshot from the leader");
                PeerResponse::Snapshot(Some(response))
            }
            Err(error) => {
                self.files.discard(&incoming.file);
                PeerResponse::refused(format!("installing the snapshot: {error}"))
            }
        }
    }

    /// A leader restarts a transfer from offset 0 after a failure; its earlier partial files go.
    fn abandon_older(&self, transfers: &mut BTreeMap<u64, Incoming>, from: NodeId) {
        let abandoned: Vec<u64> = transfers.iter().filter(|(_, t)| t.from == from).map(|(id, _)| *id).collect();
        for id in abandoned {
            if let Some(transfer) = transfers.remove(&id) {
                self.files.discard(&transfer.file);
            }
        }
    }
}
