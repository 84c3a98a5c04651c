//! Answers what peers send: raft RPCs go to raft, snapshot chunks to the receiver, forwarded
//! client requests to this node as leader.

use openraft::raft::{AppendEntriesResponse, VoteRequest};

use crate::command::NodeId;
use crate::raft::TypeConfig;
use crate::transport::{PeerHandler, PeerRequest, PeerResponse};

use super::Node;
use super::snapshot_receiver::SnapshotReceiver;

pub(super) struct NodePeerHandler {
    node: Node,
    snapshots: SnapshotReceiver,
}

impl NodePeerHandler {
    pub(super) fn new(node: Node, snapshots: SnapshotReceiver) -> NodePeerHandler {
        NodePeerHandler { node, snapshots }
    }
}

impl PeerHandler for NodePeerHandler {
    fn is_member(&self, id: NodeId) -> bool {
        self.node.member(id).is_some()
    }

    async fn handle(&self, from: NodeId, request: PeerRequest) -> PeerResponse {
        if let Err(refusal) = self.admit(from, &request).await {
            return refusal;
        }
        let raft = &self.node.inner.raft;
        match request {
            PeerRequest::Append { rpc, lease } => {
                let answer = raft.append_entries(rpc).await;
                let contact = &self.node.inner.contact;
                if answer.as_ref().is_ok_and(|response| !matches!(response, AppendEntriesResponse::HigherVote(_))) {
                    if self.node.inner.config.bugs.unproven_leader_contact() {
                        contact.heard_unproven();
                    } else if let Some(proof) = lease {
                        contact.proven(proof);
                    }
                }
                let stamp = contact.stamp();
                answer.map_or_else(PeerResponse::refused, |response| PeerResponse::Append { response, stamp })
            }
            PeerRequest::Vote(rpc) => {
                raft.vote(ordinary(rpc)).await.map_or_else(PeerResponse::refused, PeerResponse::Vote)
            }
            PeerRequest::PreVote(rpc) => {
                raft.pre_vote(ordinary(rpc)).await.map_or_else(PeerResponse::refused, PeerResponse::Vote)
            }
            PeerRequest::Snapshot(chunk) => self.snapshots.receive(from, chunk, raft).await,
            PeerRequest::Forward(request) => PeerResponse::Forward(self.node.answer_forward(request).await),
        }
    }
}

impl NodePeerHandler {
    /// Who may ask what. The handshake proved `from` knows the cluster secret; this keeps
    /// removed nodes and strangers to the configuration out of elections and client requests.
    /// Appends and snapshots are not limited to known members: a follower that missed the entry
    /// adding a new leader must still accept that leader's log to catch up; raft's own term and
    /// log checks decide them. A retired id is told so, whatever it asks.
    async fn admit(&self, from: NodeId, request: &PeerRequest) -> Result<(), PeerResponse> {
        if self.is_member(from) {
            return Ok(());
        }
        let refused = |refusal: String| {
            tracing::warn!(from, %refusal, "refused a peer request");
            PeerResponse::refused(refusal)
        };
        match self.node.inner.store.is_retired(from).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::debug!(from, "refused a request from a removed node");
                return Err(PeerResponse::Retired);
            }
            Err(_) => return Err(refused("the store is stopping".to_string())),
        }
        if matches!(request, PeerRequest::Vote(_) | PeerRequest::PreVote(_) | PeerRequest::Forward(_)) {
            return Err(refused(format!("node {from} is not a member of this node's configuration")));
        }
        Ok(())
    }
}

/// cairn never transfers leadership, so a vote claiming to be part of a transfer (which voters
/// grant despite a live leader's lease) is taken as an ordinary vote.
fn ordinary(mut rpc: VoteRequest<TypeConfig>) -> VoteRequest<TypeConfig> {
    rpc.leadership_transfer = false;
    rpc
}
