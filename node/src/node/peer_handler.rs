//! Answers what peers send: raft RPCs go to raft, snapshot chunks to the receiver, forwarded
//! client requests to this node as leader.

use futures_util::StreamExt;
use openraft::raft::{StreamAppendError, VoteRequest};
use tokio::sync::mpsc;

use crate::command::NodeId;
use crate::raft::TypeConfig;
use crate::raft::contact::LeaseProof;
use crate::transport::{AppendLane, PeerHandler, PeerRequest, PeerResponse};

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
            PeerRequest::Vote(rpc) => {
                raft.vote(ordinary(rpc)).await.map_or_else(PeerResponse::refused, PeerResponse::Vote)
            }
            PeerRequest::PreVote(rpc) => {
                raft.pre_vote(ordinary(rpc)).await.map_or_else(PeerResponse::refused, PeerResponse::Vote)
            }
            PeerRequest::Snapshot(chunk) => self.snapshots.receive(from, chunk, raft).await,
            PeerRequest::Forward(request) => PeerResponse::Forward(self.node.answer_forward(request).await),
            PeerRequest::StreamAppend { .. } | PeerRequest::EndStream { .. } => {
                PeerResponse::refused("a stream request outside its stream")
            }
        }
    }

    /// Feeds the stream to raft's pipelined `stream_append`, which hands each request to the
    /// raft core as it arrives (so a follower's log writes batch) and yields the results in
    /// order; each answer carries this node's contact stamp.
    async fn serve_stream(&self, from: NodeId, lane: AppendLane) {
        let AppendLane { mut requests, answers } = lane;
        if let Err(refusal) = self.admit_appends(from).await {
            if let Some(append) = requests.recv().await {
                answers.send(append.id, refusal).await;
            }
            return;
        }
        // Each request's id and proof, in the order raft receives the requests.
        let (arrived, mut in_order) = mpsc::unbounded_channel();
        let input = futures_util::stream::unfold(requests, |mut requests| async move {
            requests.recv().await.map(|append| (append, requests))
        })
        .map(move |append| {
            let _ = arrived.send((append.id, append.lease));
            append.rpc
        });
        let mut output = std::pin::pin!(self.node.inner.raft.stream_append(input));
        while let Some(result) = output.next().await {
            let Some((id, lease)) = in_order.recv().await else { break };
            let body = match result {
                Ok(result) => {
                    if !matches!(result, Err(StreamAppendError::HigherVote(_))) {
                        self.heard_leader(lease);
                    }
                    PeerResponse::StreamAppend { result, stamp: self.node.inner.contact.stamp() }
                }
                Err(fatal) => PeerResponse::refused(fatal),
            };
            if !answers.send(id, body).await {
                break;
            }
        }
    }
}

impl NodePeerHandler {
    /// An append the leader of this node's term sent was accepted or checked: contact with it,
    /// proven by `lease` when the leader held its lease.
    fn heard_leader(&self, lease: Option<LeaseProof>) {
        let contact = &self.node.inner.contact;
        if self.node.inner.config.bugs.unproven_leader_contact() {
            contact.heard_unproven();
        } else if let Some(proof) = lease {
            contact.proven(proof);
        }
    }

    /// Who may ask what. The handshake proved `from` knows the cluster secret; this keeps
    /// removed nodes and strangers to the configuration out of elections and client requests.
    /// Appends and snapshots are not limited to known members: a follower that missed the entry
    /// adding a new leader must still accept that leader's log to catch up; raft's own term and
    /// log checks decide them. A retired id is told so, whatever it asks.
    async fn admit(&self, from: NodeId, request: &PeerRequest) -> Result<(), PeerResponse> {
        self.admit_appends(from).await?;
        if !self.is_member(from)
            && matches!(request, PeerRequest::Vote(_) | PeerRequest::PreVote(_) | PeerRequest::Forward(_))
        {
            let refusal = format!("node {from} is not a member of this node's configuration");
            tracing::warn!(from, %refusal, "refused a peer request");
            return Err(PeerResponse::refused(refusal));
        }
        Ok(())
    }

    /// Whether `from` may send appends and snapshots: anyone but a retired id.
    async fn admit_appends(&self, from: NodeId) -> Result<(), PeerResponse> {
        if self.is_member(from) {
            return Ok(());
        }
        match self.node.inner.store.is_retired(from).await {
            Ok(false) => Ok(()),
            Ok(true) => {
                tracing::debug!(from, "refused a request from a removed node");
                Err(PeerResponse::Retired)
            }
            Err(_) => {
                tracing::warn!(from, "refused a peer request: the store is stopping");
                Err(PeerResponse::refused("the store is stopping"))
            }
        }
    }
}

/// cairn never transfers leadership, so a vote claiming to be part of a transfer (which voters
/// grant despite a live leader's lease) is taken as an ordinary vote.
fn ordinary(mut rpc: VoteRequest<TypeConfig>) -> VoteRequest<TypeConfig> {
    rpc.leadership_transfer = false;
    rpc
}
