//! The cluster id's life on a node: a leader whose cluster has none proposes one (right after
//! a bootstrap, or once after an upgrade from before cluster ids); every node stamps its data
//! directory with the id its store applied, and stops if the directory belongs to another
//! cluster.

use crate::command::{ClusterId, Command, Request};
use crate::rt::{self, Duration};

use super::Node;
use super::write::unix_time_ms;

/// How often a node without a cluster id checks whether it leads and should propose one.
const PROPOSE_CHECK_INTERVAL: Duration = Duration::from_millis(200);

impl Node {
    /// Runs until the data directory is stamped with the cluster's id (or the node stops).
    pub(super) async fn keep_cluster_id(self) {
        let mut progress = self.inner.store.watch_progress();
        let mut shutdown = self.inner.shutdown.subscribe();
        let cluster_id = loop {
            if let Some(cluster_id) = progress.borrow_and_update().cluster_id {
                break cluster_id;
            }
            if self.leader() == Some(self.id()) && !self.is_removed() {
                self.propose_cluster_id().await;
            }
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = progress.changed() => {}
                () = rt::sleep(PROPOSE_CHECK_INTERVAL) => {}
            }
        };
        self.stamp_cluster_id(cluster_id).await;
    }

    /// Proposes the id this node's directory was stamped with at start (a new single-node
    /// cluster's), or else a fresh random one; the first one applied wins, so a race between
    /// leaders (or with an earlier proposal) is harmless.
    async fn propose_cluster_id(&self) {
        let cluster_id = self.cluster_id().unwrap_or_else(|| ClusterId(rt::random_u64()));
        let command = Command::SetClusterId { cluster_id };
        let request = Request { tag: None, proposed_at_ms: unix_time_ms(), command };
        if self.propose(request).await.is_err() {
            tracing::debug!("proposing a cluster id failed; will retry while leading");
        }
    }

    /// Stamps the data directory with the applied cluster id. A directory stamped for another
    /// cluster means this node's raft state came from a cluster the directory does not belong
    /// to: it stops rather than serve two clusters' data under one identity.
    async fn stamp_cluster_id(&self, cluster_id: ClusterId) {
        let data_dir = self.inner.data_dir.clone();
        let recorded =
            rt::run_blocking(move || data_dir.record_cluster_id(cluster_id, "the cluster's replicated state")).await;
        match recorded {
            Ok(()) => tracing::info!(cluster_id = %cluster_id, "the data directory belongs to this cluster"),
            Err(error) => {
                tracing::error!(%error, "stopping: the data directory belongs to another cluster");
                self.shutdown().await;
            }
        }
    }
}
