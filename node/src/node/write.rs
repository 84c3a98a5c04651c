//! The write path. Every client write carries a client tag, so it can be retried across
//! leader changes (see [`super::leader`]) and still apply at most once.

use openraft::error::{ClientWriteError, RaftError};

use super::Node;
use super::leader::Attempt;
use crate::acl::{self, Credential};
use crate::api::{Forward, ForwardReply, NodeError};
use crate::command::{ClientTag, Command, Request, Response};
use crate::validate;

impl Node {
    /// Applies `command` through raft under `tag` (a fresh one if `None`) and returns the store's
    /// response. Fails with [`NodeError::OutcomeUnknown`] only when an attempt may have been
    /// proposed; every other error means the command was not applied.
    ///
    /// The command is applied only if the ACL state allows it to `credential` at its place in
    /// the log (a refusal is [`Response::Denied`], remembered for retries like any answer).
    pub async fn write(
        &self,
        command: Command,
        tag: Option<ClientTag>,
        credential: Credential,
    ) -> Result<Response, NodeError> {
        self.ensure_serving()?;
        let command = match credential {
            Credential::Anonymous => command,
            credential => Command::Authorized { credential, command: Box::new(command) },
        };
        validate::client_command(&command, &self.inner.config.limits)?;
        if tag.is_none() {
            self.refuse_early(&command).await?;
        }
        let tag = Some(tag.unwrap_or_else(Node::fresh_tag));
        let request = Request { tag, proposed_at_ms: unix_time_ms(), command };
        match self.run_on_leader(Forward::Write(request)).await? {
            ForwardReply::Written(response) => Ok(response),
            other => Err(NodeError::Internal { message: format!("a write was answered with {other:?}") }),
        }
    }

    /// Refuses, before it is proposed, an untagged client write this node's ACL state refuses
    /// now, so that a client without a token cannot fill the log with refusals. Only untagged
    /// writes: a tagged one may be the retry of an attempt that already applied, which only the
    /// session table at apply time can answer (refusing it here would deny a write that
    /// happened). The check at apply time stays the one that counts. A refusal is confirmed in
    /// the cluster's current state first: this node may lag behind a token's creation or a
    /// grant its client has already seen acknowledged.
    async fn refuse_early(&self, command: &Command) -> Result<(), NodeError> {
        if !self.inner.store.progress().acl_enabled {
            return Ok(());
        }
        let (credential, command) = match command {
            Command::Authorized { credential, command } => (*credential, &**command),
            command => (Credential::Anonymous, command),
        };
        if let Command::Acl(acl::AclCommand::Bootstrap { .. }) = command {
            return Ok(());
        }
        if acl::permits(&self.authority(credential).await?, command) {
            return Ok(());
        }
        self.catch_up().await?;
        let authority = self.authority(credential).await?;
        authority.check(acl::permits(&authority, command)).map_err(NodeError::Denied)
    }

    /// One proposal on this node as leader.
    /// Refused up front while this node's disk fails: the entry could not become durable here,
    /// and the client learns why at once instead of waiting for an unknown outcome.
    pub(super) async fn propose(&self, request: Request) -> Result<Response, Attempt> {
        let metrics = &self.inner.metrics;
        if let Some(error) = self.inner.durability.stalled() {
            metrics.proposals_failed.inc();
            return Err(Attempt::Failed(NodeError::from_storage(&error)));
        }
        let pending = metrics.proposal();
        let written = self.inner.raft.client_write(request).await;
        drop(pending);
        match &written {
            Ok(written) if self.inner.config.bugs.leaves_proposal_uncounted(written.log_id.index) => {}
            Ok(_) => {
                metrics.proposals_committed.inc();
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {}
            Err(_) => {
                metrics.proposals_failed.inc();
            }
        }
        match written {
            Ok(written) => Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(Attempt::Retry),
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(Attempt::Unknown("the proposal was discarded by a leader change".into()))
            }
            Err(RaftError::APIError(other)) => Err(Attempt::Failed(NodeError::Internal { message: other.to_string() })),
            Err(RaftError::Fatal(fatal)) => Err(Attempt::Unknown(format!("raft stopped: {fatal}"))),
        }
    }
}

/// Milliseconds since the Unix epoch on this node's clock (virtual under the simulator). Used
/// only to stamp proposals; the state machine never reads a clock itself.
pub fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}
