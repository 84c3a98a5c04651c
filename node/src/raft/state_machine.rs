//! openraft's state-machine interface, answered by the store actor. openraft's state-machine
//! worker calls these methods one at a time; each forwards to the actor, which owns the state.

use std::io;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{Snapshot, SnapshotMeta as RaftSnapshotMeta};
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::Metrics;
use crate::raft::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::rt;
use crate::store::snapshot::{SnapshotFile, SnapshotFiles};
use crate::store::{Frozen, StoreHandle, StoreStopped};

/// Entries forwarded to the store per message: large enough to amortize the hop, small enough
/// that one batch never holds the store for long.
const APPLY_BATCH_MAX: usize = 1024;

pub type RaftSnapshot =
    Snapshot<openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>, u64, super::Member, SnapshotFile>;

/// The state machine openraft drives: a proxy for the store actor plus the snapshot files.
pub struct StateMachine {
    store: StoreHandle,
    snapshots: Arc<SnapshotFiles>,
    metrics: Arc<Metrics>,
}

impl StateMachine {
    /// Counts applied entries and times snapshot saves in `metrics`.
    pub fn new(store: StoreHandle, snapshots: Arc<SnapshotFiles>, metrics: Arc<Metrics>) -> StateMachine {
        StateMachine { store, snapshots, metrics }
    }
}

fn stopped(_: StoreStopped) -> io::Error {
    io::Error::other("the store actor has stopped")
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        self.store.applied_state().await.map_err(stopped)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + Send,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        loop {
            let next = entries.next().await.transpose()?;
            let end = next.is_none();
            if let Some((entry, responder)) = next {
                batch.push(entry);
                responders.push(responder);
            }
            if batch.len() >= APPLY_BATCH_MAX || (end && !batch.is_empty()) {
                let responses = self.store.apply(std::mem::take(&mut batch)).await.map_err(stopped)?;
                self.metrics.proposals_applied.inc_by(responses.len() as u64);
                assert_eq!(responses.len(), responders.len(), "one response per entry");
                for (response, responder) in responses.into_iter().zip(responders.drain(..)) {
                    if let Some(responder) = responder {
                        responder.send(response);
                    }
                }
            }
            if end {
                return Ok(());
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let frozen = self.store.freeze().await;
        SnapshotBuilder {
            frozen: Some(frozen),
            snapshots: self.snapshots.clone(),
            save_seconds: self.metrics.snapshot_save_seconds.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> io::Result<()> {
        let (file_meta, state) = self.snapshots.load(&snapshot).await?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "snapshot file does not match its meta"));
        }
        self.snapshots.adopt(meta, snapshot).await?;
        self.store.install(meta.clone(), state).await.map_err(stopped)
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<RaftSnapshot>> {
        let current = self.snapshots.current().await?;
        Ok(current.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Builds a snapshot from the store's state frozen when the builder was made, so applies that
/// continue meanwhile do not leak into it.
pub struct SnapshotBuilder {
    frozen: Option<Result<Frozen, StoreStopped>>,
    snapshots: Arc<SnapshotFiles>,
    save_seconds: Histogram,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<RaftSnapshot> {
        let frozen = self.frozen.take().expect("a builder builds one snapshot").map_err(stopped)?;
        let meta = RaftSnapshotMeta { last_log_id: frozen.last_applied, last_membership: frozen.membership };
        let started = rt::Instant::now();
        let snapshot = self.snapshots.write(&meta, &frozen.state).await?;
        self.save_seconds.observe(started.elapsed().as_secs_f64());
        Ok(Snapshot { meta, snapshot })
    }
}
