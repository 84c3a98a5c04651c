//! Backups at rest: describing a snapshot file saved from a cluster (`cairn snapshot status`)
//! and preparing a data directory from it for a new cluster (`cairn snapshot restore`).
//!
//! A restore follows etcd's: the saved keys, revisions, watch history and ACLs carry over, and
//! everything that named the old cluster does not. The new cluster gets a new id and the
//! membership the operator lists; the old membership, the ids it retired and its raft log are
//! left behind. Every node of the new cluster restores the same file with the same member list
//! and so starts from the same snapshot, under the same log id and cluster id.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::LogId;
use openraft::vote::leader_id_adv::CommittedLeaderId;
use thiserror::Error;

use crate::command::{ClusterId, NodeId};
use crate::data_dir::{DataDir, DataDirError};
use crate::raft::{Member, Membership, SnapshotMeta, StoredMembership};
use crate::rt;
use crate::storage::Disk;
use crate::store::snapshot::{self, SnapshotFiles};
use crate::store::state::KvState;

/// What a verified snapshot file holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotSummary {
    pub bytes: u64,
    /// The store's revision when the snapshot was taken.
    pub revision: u64,
    pub keys: usize,
    /// The raft log index the snapshot's state was applied through.
    pub index: u64,
    pub term: u64,
    pub cluster_id: Option<ClusterId>,
    /// The members of the cluster the snapshot was taken from.
    pub members: BTreeMap<NodeId, Member>,
    /// The oldest revision a watch of the restored cluster can start from.
    pub oldest_watch_revision: u64,
    pub acl_enabled: bool,
}

/// Why a snapshot file cannot be restored. Nothing was written, except where it says so.
#[derive(Debug, Error)]
pub enum RestoreError {
    #[error("{0}")]
    Unreadable(io::Error),
    #[error("--id {id} is not listed in --initial-cluster")]
    NotListed { id: NodeId },
    #[error(
        "data directory {dir} is not empty: a restore only prepares a new directory (move the old one \
         aside first)"
    )]
    NotEmpty { dir: PathBuf },
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("writing the restored snapshot into {dir}: {source} (remove {dir} before trying again)")]
    Write { dir: PathBuf, source: io::Error },
}

/// Verifies the snapshot file at `path` and describes it.
pub async fn describe(disk: Arc<dyn Disk>, path: &Path) -> io::Result<SnapshotSummary> {
    let path = path.to_path_buf();
    rt::run_blocking(move || {
        let (meta, state) = snapshot::load_file(disk.as_ref(), &path)?;
        Ok(summary(disk.len(&path)?, &meta, &state))
    })
    .await
}

fn summary(bytes: u64, meta: &SnapshotMeta, state: &KvState) -> SnapshotSummary {
    let (index, term) = meta.last_log_id.as_ref().map_or((0, 0), |id| (id.index, id.leader_id.term));
    SnapshotSummary {
        bytes,
        revision: state.revision(),
        keys: state.len(),
        index,
        term,
        cluster_id: state.cluster_id(),
        members: meta.last_membership.membership().nodes().map(|(id, member)| (*id, member.clone())).collect(),
        oldest_watch_revision: state.oldest_event(),
        acl_enabled: state.acl().enabled(),
    }
}

/// What to restore, and as which node of which new cluster.
pub struct RestorePlan<'a> {
    pub snapshot: &'a Path,
    pub data_dir: &'a Path,
    pub id: NodeId,
    /// The new cluster's voters and their addresses, as `--initial-cluster` lists them.
    pub members: &'a BTreeMap<NodeId, Member>,
}

/// What a restore prepared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub summary: SnapshotSummary,
    pub cluster_id: ClusterId,
}

/// Prepares `plan.data_dir` (absent or empty) so that node `plan.id` starts from the snapshot
/// file as a member of a new cluster of `plan.members`.
pub async fn restore(disk: Arc<dyn Disk>, plan: RestorePlan<'_>) -> Result<Restored, RestoreError> {
    if !plan.members.contains_key(&plan.id) {
        return Err(RestoreError::NotListed { id: plan.id });
    }
    let dir = plan.data_dir.to_path_buf();
    let occupied = disk.exists(&dir).and_then(|exists| Ok(exists && !disk.list(&dir)?.is_empty()));
    match occupied {
        Ok(false) => {}
        Ok(true) => return Err(RestoreError::NotEmpty { dir }),
        Err(source) => return Err(RestoreError::Write { dir, source }),
    }
    let source = plan.snapshot.to_path_buf();
    let reader = disk.clone();
    let (old_meta, mut state, bytes) = rt::run_blocking(move || {
        let (meta, state) = snapshot::load_file(reader.as_ref(), &source)?;
        Ok::<_, io::Error>((meta, state, reader.len(&source)?))
    })
    .await
    .map_err(RestoreError::Unreadable)?;
    let summary = summary(bytes, &old_meta, &state);
    let cluster_id = new_cluster_id(&summary, plan.members);
    state.begin_new_cluster(cluster_id);
    let meta = new_cluster_meta(summary.index, plan.members);
    let data_dir = DataDir::open(disk.clone(), &dir, plan.id)?;
    data_dir.record_cluster_id(cluster_id, "the restored snapshot")?;
    let write_error = |source| RestoreError::Write { dir: dir.clone(), source };
    let files = SnapshotFiles::open(disk, dir.join("snapshots")).map_err(write_error)?;
    files.write(&meta, &state).await.map_err(write_error)?;
    Ok(Restored { summary, cluster_id })
}

/// The restored snapshot's place in the new cluster's log: the saved index, under a leader of
/// term 0 (no node's), so that the first leader the new cluster elects (term 1 at least) writes
/// entries after it; and the listed voters as the membership in force.
fn new_cluster_meta(index: u64, members: &BTreeMap<NodeId, Member>) -> SnapshotMeta {
    let log_id = LogId::new(CommittedLeaderId { term: 0, node_id: 0 }, index);
    let voters = members.keys().copied().collect();
    let membership =
        Membership::new(vec![voters], members.clone()).expect("the voters are the listed members, each with addresses");
    SnapshotMeta { last_log_id: Some(log_id), last_membership: StoredMembership::new(Some(log_id), membership) }
}

/// The new cluster's id, the same on every node restored from the same file with the same
/// members, and unlike the old cluster's (FNV-1a over both).
fn new_cluster_id(summary: &SnapshotSummary, members: &BTreeMap<NodeId, Member>) -> ClusterId {
    let mut text = format!(
        "cairn restore|{}|{}|{}|{}",
        summary.cluster_id.map_or(0, |id| id.0),
        summary.index,
        summary.revision,
        summary.bytes
    );
    for (id, member) in members {
        text.push_str(&format!("|{id}={}@{}", member.peer, member.http));
    }
    let hash = text
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    match summary.cluster_id {
        Some(old) if old.0 == hash => ClusterId(hash ^ 1),
        _ => ClusterId(hash),
    }
}
