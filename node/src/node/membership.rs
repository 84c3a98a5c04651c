//! Membership changes, always made by the leader: adding a node (as a learner, promoted to
//! voter once caught up) and removing one (its id retired first, so it is never reused).

use std::collections::{BTreeMap, BTreeSet};

use openraft::ChangeMembers;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};

use super::Node;
use super::leader::Attempt;
use crate::api::{Forward, ForwardReply, MemberKind, MemberView, NodeError};
use crate::command::{Command, NodeId, Request};
use crate::raft::{Member, TypeConfig};
use crate::rt::{self, Duration};
use crate::validate;

/// How often the leader checks for a joint configuration to finish.
const JOINT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often a promotion re-checks a learner's progress (it also wakes on every metrics change).
const CATCH_UP_POLL_INTERVAL: Duration = Duration::from_millis(50);

impl Node {
    /// Adds node `id` at `member`'s addresses as `kind`, or confirms it is already that (or a
    /// voter) there. Idempotent by id; a retired id or an id in use elsewhere is refused.
    pub async fn add_member(&self, id: NodeId, member: Member, kind: MemberKind) -> Result<Vec<MemberView>, NodeError> {
        self.ensure_serving()?;
        members_of(self.run_on_leader(Forward::AddMember { id, member, kind }).await?)
    }

    /// Removes node `id` from the cluster for good.
    pub async fn remove_member(&self, id: NodeId) -> Result<Vec<MemberView>, NodeError> {
        self.ensure_serving()?;
        members_of(self.run_on_leader(Forward::RemoveMember { id }).await?)
    }

    pub(super) async fn add_member_on_leader(
        &self,
        id: NodeId,
        member: Member,
        kind: MemberKind,
    ) -> Result<Vec<MemberView>, Attempt> {
        if self.inner.store.is_retired(id).await.map_err(|_| Attempt::Retry)? {
            return Err(Attempt::Failed(NodeError::MemberRetired { id }));
        }
        let (voters, nodes) = self.membership();
        validate::new_member(id, &member, nodes.iter().map(|(id, member)| (*id, member)))
            .map_err(|invalid| Attempt::Failed(invalid.into()))?;
        match nodes.get(&id) {
            Some(existing) if *existing != member => return Err(Attempt::Failed(NodeError::MemberConflict { id })),
            Some(_) if voters.contains(&id) => return Ok(self.members()),
            Some(_) => {}
            None => {
                let added = self.inner.raft.add_learner(id, member, false).await;
                added.map_err(management_failure)?;
                tracing::info!(id, ?kind, "added a learner");
            }
        }
        if kind == MemberKind::Learner {
            return Ok(self.members());
        }
        self.wait_caught_up(id).await?;
        let mut new_voters = voters.clone();
        new_voters.insert(id);
        self.ensure_quorum_after(&voters, &new_voters)?;
        let promoted = self.inner.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await;
        promoted.map_err(management_failure)?;
        tracing::info!(id, "node is now a voter");
        Ok(self.members())
    }

    pub(super) async fn remove_member_on_leader(&self, id: NodeId) -> Result<Vec<MemberView>, Attempt> {
        let (voters, nodes) = self.membership();
        if !nodes.contains_key(&id) {
            return match self.inner.store.is_retired(id).await {
                Ok(true) => Ok(self.members()),
                Ok(false) => Err(Attempt::Failed(NodeError::MemberNotFound { id })),
                Err(_) => Err(Attempt::Retry),
            };
        }
        let is_voter = voters.contains(&id);
        if is_voter && voters.len() == 1 {
            let reason = "removing the last voter would leave the cluster without a quorum".to_string();
            return Err(Attempt::Failed(NodeError::MembershipRefused { reason }));
        }
        if is_voter {
            let mut new_voters = voters.clone();
            new_voters.remove(&id);
            self.ensure_quorum_after(&voters, &new_voters)?;
        }
        let retire =
            Request { tag: None, proposed_at_ms: super::write::unix_time_ms(), command: Command::RetireNode { id } };
        self.propose(retire).await?;
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.inner.raft.change_membership(change, false).await.map_err(management_failure)?;
        tracing::info!(id, "removed a node from the cluster");
        Ok(self.members())
    }

    /// Waits until learner `id` holds every entry the leader had when the wait began: a voter that
    /// cannot keep up (or does not exist at its address) would count towards the quorum without
    /// helping it. Refuses after half the request timeout; the learner stays a learner, and the
    /// caller may ask again.
    async fn wait_caught_up(&self, id: NodeId) -> Result<(), Attempt> {
        let target = self.metrics().last_log_index.unwrap_or(0);
        let deadline = rt::Instant::now() + self.inner.config.request_timeout / 2;
        loop {
            let metrics = self.metrics();
            if metrics.current_leader != Some(self.id()) {
                return Err(Attempt::Retry);
            }
            let matched = metrics.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index);
            if matched.is_some_and(|matched| matched >= target) {
                return Ok(());
            }
            let remaining = deadline.saturating_duration_since(rt::Instant::now());
            if remaining.is_zero() {
                let matched = matched.map_or_else(|| "nothing".to_string(), |index| format!("entry {index}"));
                let reason = format!(
                    "node {id} has not caught up (it holds {matched} of {target}); it stays a learner until it does: retry"
                );
                return Err(Attempt::Failed(NodeError::MembershipRefused { reason }));
            }
            self.wait_for_change(remaining.min(CATCH_UP_POLL_INTERVAL)).await;
        }
    }

    /// Refuses a change of voters from `old` to `new` unless a majority of each answered this
    /// leader recently: a joint configuration needs both majorities to commit, and one that
    /// cannot would block every write until the missing voters return.
    fn ensure_quorum_after(&self, old: &BTreeSet<NodeId>, new: &BTreeSet<NodeId>) -> Result<(), Attempt> {
        let metrics = self.metrics();
        let recent = self.inner.config.timings.election_timeout_max * 2;
        // openraft's clock is std's (virtual under the simulator too, see `rt::openraft_runtime`).
        let now = std::time::Instant::now();
        let answered = |id: &NodeId| {
            *id == self.id()
                || metrics
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(id).cloned().flatten())
                    .is_some_and(|at| now.saturating_duration_since(*at) <= recent)
        };
        for voters in [old, new] {
            let reachable: BTreeSet<NodeId> = voters.iter().copied().filter(answered).collect();
            if reachable.len() * 2 <= voters.len() {
                let reason = format!(
                    "the change would leave the cluster unable to commit: of voters {voters:?} only {reachable:?} \
                     answered the leader in the last {recent:?}"
                );
                return Err(Attempt::Failed(NodeError::MembershipRefused { reason }));
            }
        }
        Ok(())
    }

    /// Finishes a joint configuration left behind by a membership change whose caller went away
    /// (a leader change between the two phases): openraft proposes the uniform phase only from
    /// the caller's future. Runs on every node; acts only while this node leads.
    pub(super) async fn finish_joint_configurations(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = rt::sleep(JOINT_CHECK_INTERVAL) => {}
            }
            if self.leader() != Some(self.id()) || self.is_removed() {
                continue;
            }
            let Some(target) = self.unfinished_joint_target() else { continue };
            tracing::warn!(voters = ?target, "finishing a joint membership left by an interrupted change");
            let finished = self.inner.raft.change_membership(ChangeMembers::ReplaceAllVoters(target), false).await;
            if let Err(error) = finished {
                tracing::debug!(%error, "finishing the joint membership failed; will retry");
            }
        }
    }

    /// The newest voter set of a committed joint configuration, if the membership is joint.
    fn unfinished_joint_target(&self) -> Option<BTreeSet<NodeId>> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow_watched();
        let effective = metrics.membership_config.membership();
        let committed = metrics.committed_membership_config.membership();
        let joint = effective.get_joint_config();
        (joint.len() > 1 && committed.get_joint_config() == joint).then(|| joint.last().cloned()).flatten()
    }

    /// The current voter ids and all members (voters and learners) with their addresses.
    fn membership(&self) -> (BTreeSet<NodeId>, BTreeMap<NodeId, Member>) {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters = membership.voter_ids().collect();
        let nodes = membership.nodes().map(|(id, member)| (*id, member.clone())).collect();
        (voters, nodes)
    }
}

fn members_of(reply: ForwardReply) -> Result<Vec<MemberView>, NodeError> {
    match reply {
        ForwardReply::Members(members) => Ok(members),
        other => Err(NodeError::Internal { message: format!("a membership change was answered with {other:?}") }),
    }
}

fn management_failure(error: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Attempt {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Attempt::Retry,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))) => {
            Attempt::Retry
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            Attempt::Unknown("the membership change was discarded by a leader change".into())
        }
        RaftError::APIError(other) => Attempt::Failed(NodeError::MembershipRefused { reason: other.to_string() }),
        RaftError::Fatal(fatal) => Attempt::Unknown(format!("raft stopped: {fatal}")),
    }
}
