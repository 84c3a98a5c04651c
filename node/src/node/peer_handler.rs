//! Answers what peers send: raft RPCs go to raft, snapshot chunks to the receiver, forwarded
//! client requests to this node as leader.

use openraft::raft::AppendEntriesResponse;

use crate::command::NodeId;
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
    async fn handle(&self, from: NodeId, request: PeerRequest) -> PeerResponse {
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
            PeerRequest::Vote(rpc) => raft.vote(rpc).await.map_or_else(PeerResponse::refused, PeerResponse::Vote),
            PeerRequest::PreVote(rpc) => {
                raft.pre_vote(rpc).await.map_or_else(PeerResponse::refused, PeerResponse::Vote)
            }
            PeerRequest::Snapshot(chunk) => self.snapshots.receive(from, chunk, raft).await,
            PeerRequest::Forward(request) => PeerResponse::Forward(self.node.answer_forward(request).await),
        }
    }
}
