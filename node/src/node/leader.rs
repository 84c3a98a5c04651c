//! Running a client request on the leader: locally when this node leads, forwarded over the
//! peer transport otherwise, retried across leader changes until the request's deadline.

use super::Node;
use crate::api::{Consistency, Forward, ForwardReply, NodeError};
use crate::command::NodeId;
use crate::rt::{self, Duration, Instant};
use crate::transport::{PeerRequest, PeerResponse, RpcError};
use crate::validate;

/// The first pause between attempts; it doubles up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(10);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(200);

/// How one attempt ended, from the point of view of retrying.
pub(super) enum Attempt {
    /// Certainly not applied (no leader, a leader change before proposing): try again.
    Retry,
    /// May have been applied: try again (safe: writes carry a client tag, membership changes
    /// are idempotent), but if time runs out the answer is "outcome unknown".
    Unknown(String),
    /// A final answer that retrying cannot change.
    Failed(NodeError),
}

impl Forward {
    /// Whether an attempt that ran out of time may have changed the cluster.
    fn may_change_state(&self) -> bool {
        !matches!(self, Forward::Read { .. } | Forward::List { .. } | Forward::ReadIndex)
    }
}

impl Node {
    /// Runs `request` on the leader and returns its reply. Fails with
    /// [`NodeError::OutcomeUnknown`] only when an attempt may have taken effect; every other
    /// error means nothing changed.
    pub(super) async fn run_on_leader(&self, request: Forward) -> Result<ForwardReply, NodeError> {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let mut unknown_reason = None;
        let mut pause = RETRY_PAUSE_MIN;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = match self.leader() {
                Some(leader) if leader == self.id() => {
                    match rt::timeout(remaining, self.serve_forward(request.clone())).await {
                        Ok(outcome) => outcome,
                        Err(_) if request.may_change_state() => {
                            Err(Attempt::Unknown("no answer from raft before the deadline".into()))
                        }
                        Err(_) => Err(Attempt::Retry),
                    }
                }
                Some(leader) => self.forward(leader, request.clone(), remaining).await,
                None => Err(Attempt::Retry),
            };
            match attempt {
                Ok(reply) => return Ok(reply),
                Err(Attempt::Failed(error)) => return Err(error),
                Err(Attempt::Unknown(reason)) => unknown_reason = Some(reason),
                Err(Attempt::Retry) => {}
            }
            if Instant::now() + pause >= deadline {
                return Err(match unknown_reason {
                    Some(reason) => NodeError::OutcomeUnknown { reason },
                    None => NodeError::NoLeader,
                });
            }
            self.wait_for_change(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// Serves a request this node received as leader, from a follower or its own clients.
    pub(super) async fn serve_forward(&self, request: Forward) -> Result<ForwardReply, Attempt> {
        match request {
            Forward::Write(request) => self.propose(request).await.map(ForwardReply::Written),
            Forward::Read { key, consistency, credential } => {
                self.read_on_leader(key, consistency, credential).await.map(ForwardReply::Read)
            }
            Forward::List { query, consistency, credential } => {
                self.list_on_leader(query, consistency, credential).await.map(ForwardReply::Listed)
            }
            Forward::AddMember { id, member, kind } => {
                self.add_member_on_leader(id, member, kind).await.map(ForwardReply::Members)
            }
            Forward::RemoveMember { id } => self.remove_member_on_leader(id).await.map(ForwardReply::Members),
            Forward::ReadIndex => self.confirm_leadership(Consistency::Linearizable).await.map(ForwardReply::ReadIndex),
        }
    }

    /// Answers a request a follower forwarded to this node, which believed it the leader. One
    /// attempt only: the follower retries, towards whichever node leads by then.
    pub(super) async fn answer_forward(&self, request: Forward) -> Result<ForwardReply, NodeError> {
        self.ensure_serving()?;
        if let Forward::Write(write) = &request {
            validate::client_command(&write.command, &self.inner.config.limits)?;
        }
        if self.leader() != Some(self.id()) {
            return Err(NodeError::NoLeader);
        }
        let may_change_state = request.may_change_state();
        match rt::timeout(self.inner.config.request_timeout, self.serve_forward(request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(Attempt::Retry)) => Err(NodeError::NoLeader),
            Ok(Err(Attempt::Unknown(reason))) => Err(NodeError::OutcomeUnknown { reason }),
            Ok(Err(Attempt::Failed(error))) => Err(error),
            Err(_) if may_change_state => {
                Err(NodeError::OutcomeUnknown { reason: "no answer from raft before the deadline".into() })
            }
            Err(_) => Err(NodeError::NoLeader),
        }
    }

    /// Hands `request` to the leader over the peer transport.
    async fn forward(&self, leader: NodeId, request: Forward, timeout: Duration) -> Result<ForwardReply, Attempt> {
        let Some(member) = self.member(leader) else { return Err(Attempt::Retry) };
        let may_change_state = request.may_change_state();
        let client = self.inner.peers.client(leader, &member.peer);
        match client.call(PeerRequest::Forward(request), timeout).await {
            Ok(PeerResponse::Forward(Ok(reply))) => Ok(reply),
            Ok(PeerResponse::Forward(Err(NodeError::OutcomeUnknown { reason }))) => Err(Attempt::Unknown(reason)),
            Ok(PeerResponse::Forward(Err(NodeError::NoLeader | NodeError::ShuttingDown | NodeError::NodeRemoved))) => {
                Err(Attempt::Retry)
            }
            Ok(PeerResponse::Forward(Err(error))) => Err(Attempt::Failed(error)),
            Ok(_) | Err(RpcError::Unreachable(_)) => Err(Attempt::Retry),
            Err(error @ (RpcError::Timeout | RpcError::Disconnected)) if may_change_state => {
                Err(Attempt::Unknown(format!("forwarding to leader {leader}: {error}")))
            }
            Err(RpcError::Timeout | RpcError::Disconnected) => Err(Attempt::Retry),
        }
    }
}
