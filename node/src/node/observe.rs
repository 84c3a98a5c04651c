//! What the node tells about itself and the cluster beyond raft: the state the gossip actor
//! spreads, the staleness figures of stale reads, and the joined raft + gossip cluster view.

use std::collections::BTreeMap;

use openraft::ServerState;

use crate::api::{ClusterNode, ClusterView, GossipPart, RaftPart, Staleness};
use crate::command::NodeId;
use crate::gossip::{GossipView, LocalState};
use crate::rt::{self, Duration};

use super::Node;

impl Node {
    /// Records that a leader's AppendEntries (or heartbeat) just reached this node.
    pub(super) fn touch_leader_contact(&self) {
        let mut contact = self.inner.leader_contact.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *contact = Some(rt::Instant::now());
    }

    /// Since this node last heard from a leader: for a leader, since a quorum last acknowledged
    /// it; for others, since the last AppendEntries from a leader. None if never since start.
    pub fn leader_contact(&self) -> Option<Duration> {
        let metrics = self.metrics();
        if metrics.state == ServerState::Leader {
            return metrics.last_quorum_acked.map(|acked| std::time::Instant::now().saturating_duration_since(*acked));
        }
        let contact = *self.inner.leader_contact.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        contact.map(|at| rt::Instant::now().saturating_duration_since(at))
    }

    /// What the gossip actor announces about this node.
    pub(super) fn local_state(&self) -> LocalState {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        LocalState {
            role: self.role(&metrics),
            term: metrics.current_term,
            leader: metrics.current_leader,
            revision: self.revision(),
            leader_contact: self.leader_contact(),
            raft_peers: membership.nodes().map(|(_, member)| member.peer.clone()).collect(),
        }
    }

    /// The gossip actor's view, if gossip runs and the actor still answers.
    pub async fn gossip_view(&self) -> Option<GossipView> {
        self.inner.gossip.get()?.view().await
    }

    /// How stale an answer at `revision` from this node is.
    pub async fn staleness(&self, revision: u64) -> Staleness {
        let gossip = self.gossip_view().await;
        let heard = gossip.as_ref().map_or(0, |view| view.newest_revision);
        let newest = heard.max(self.revision());
        let gossip_leader = gossip.and_then(|view| view.change.map(|notice| notice.leader));
        Staleness {
            known_leader: self.leader().or(gossip_leader),
            last_contact: self.leader_contact(),
            lag: newest.saturating_sub(revision),
        }
    }

    /// Every node raft or gossip knows, by id: raft members with their role and replication
    /// progress, joined with their gossip liveness.
    pub async fn cluster(&self) -> ClusterView {
        let gossip = self.gossip_view().await;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let matched = |id: &NodeId| metrics.replication.as_ref()?.get(id)?.as_ref().map(|log_id| log_id.index);
        let mut nodes: BTreeMap<NodeId, ClusterNode> = BTreeMap::new();
        for (id, member) in membership.nodes() {
            let raft = RaftPart {
                voter: voters.contains(id),
                leader: metrics.current_leader == Some(*id),
                match_index: matched(id),
            };
            let node = ClusterNode {
                id: *id,
                http: member.http.clone(),
                peer: member.peer.clone(),
                gossip_addr: None,
                raft: Some(raft),
                gossip: None,
            };
            nodes.insert(*id, node);
        }
        let gossip_counters = gossip.as_ref().map(|view| view.counters);
        for member in gossip.into_iter().flat_map(|view| view.members) {
            let identity = member.identity;
            let part = GossipPart {
                state: member.state,
                generation: identity.generation,
                last_seen_ms: member.last_seen.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            let node = nodes.entry(identity.id).or_insert_with(|| ClusterNode {
                id: identity.id,
                http: identity.http.clone(),
                peer: identity.peer.clone(),
                gossip_addr: None,
                raft: None,
                gossip: None,
            });
            // Several identities of one node (an old generation still remembered as down): the
            // newest generation speaks for it.
            if node.gossip.as_ref().is_none_or(|known| known.generation <= part.generation) {
                node.gossip_addr = Some(identity.gossip.to_string());
                node.gossip = Some(part);
            }
        }
        ClusterView { nodes: nodes.into_values().collect(), gossip_counters }
    }
}
