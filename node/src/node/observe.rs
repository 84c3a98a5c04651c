//! What the node tells about itself and the cluster beyond raft: the state the gossip actor
//! spreads, the staleness figures of stale reads, and the joined raft + gossip cluster view.

use std::collections::BTreeMap;

use openraft::ServerState;

use crate::api::{ClusterNode, ClusterView, GossipPart, RaftPart, Staleness};
use crate::command::NodeId;
use crate::gossip::{GossipView, LocalState};
use crate::raft::contact;
use crate::rt;

use super::Node;

impl Node {
    /// Since when this node's state holds every write acknowledged by any leader (see
    /// [`crate::raft::contact`]): for a leader, since a quorum last acknowledged it; for others,
    /// the latest proven contact they have applied. None if there is none since start.
    ///
    /// Take it before reading: a read served afterwards holds at least this state.
    pub fn leader_contact(&self) -> Option<rt::Instant> {
        let metrics = self.metrics();
        if metrics.state == ServerState::Leader {
            return contact::leader_contact(&metrics);
        }
        self.inner.contact.fresh(self.inner.store.progress().applied_index)
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
            leader_contact: self.leader_contact().map(|at| at.elapsed()),
            raft_peers: membership.nodes().map(|(_, member)| member.peer.clone()).collect(),
        }
    }

    /// The gossip actor's view, if gossip runs and the actor still answers.
    pub async fn gossip_view(&self) -> Option<GossipView> {
        self.inner.gossip.get()?.view().await
    }

    /// How stale an answer at `revision` from this node is, given `contact`, the
    /// [`Node::leader_contact`] taken before the read.
    pub async fn staleness(&self, revision: u64, contact: Option<rt::Instant>) -> Staleness {
        let gossip = self.gossip_view().await;
        let heard = gossip.as_ref().map_or(0, |view| view.newest_revision);
        let newest = heard.max(self.revision());
        let gossip_leader = gossip.and_then(|view| view.change.map(|notice| notice.leader));
        Staleness {
            known_leader: self.leader().or(gossip_leader),
            last_contact: contact.map(|at| at.elapsed()),
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
