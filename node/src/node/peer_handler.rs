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
            PeerRequest::Append(rpc) => {
                let answer = raft.append_entries(rpc).await;
                if answer.as_ref().is_ok_and(|response| !matches!(response, AppendEntriesResponse::HigherVote(_))) {
                    self.node.touch_leader_contact();
                }
                answer.map_or_else(PeerResponse::refused, PeerResponse::Append)
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
