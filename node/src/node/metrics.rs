//! What the node adds to its [`Metrics`]: leader changes as it sees them, and the gauges a
//! scrape reads from its state.

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;

use super::Node;
use crate::metrics::{Metrics, NodeState};
use crate::rt::{self, Duration};

/// How long a scrape waits for the gossip actor's counters before it answers without them.
const GOSSIP_ANSWER_MAX: Duration = Duration::from_secs(1);

impl Node {
    /// The metrics this node counts in, for the layers outside it (the HTTP actor).
    pub fn metrics_registry(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The exposition text of `GET /metrics`. Should the gossip actor not answer in time, its
    /// counters keep the values of the last scrape.
    pub async fn render_metrics(&self) -> String {
        let raft = self.metrics();
        let progress = self.inner.store.progress();
        let gossip = rt::timeout(GOSSIP_ANSWER_MAX, self.gossip_view()).await.ok().flatten().map(|view| view.counters);
        let state = NodeState {
            has_leader: raft.current_leader.is_some(),
            is_leader: raft.state == ServerState::Leader,
            keys: progress.keys,
            revision: progress.revision,
            gossip,
        };
        self.inner.metrics.render(&state)
    }

    /// Counts, as etcd does, every time raft's leader becomes a node other than the one it
    /// named just before (none included), until the node stops. Quick flips between two reads
    /// of raft's metrics may go unseen.
    pub(super) async fn count_leader_changes(self) {
        let mut metrics = self.inner.raft.metrics();
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut last = None;
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            if leader.is_some() && leader != last {
                self.inner.metrics.leader_changes_seen.inc();
            }
            last = leader;
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
    }
}
