//! The read path: `stale` from the local store, `linearizable` (ReadIndex) and `lease` on the
//! leader, forwarded there from a follower.

use openraft::ReadPolicy;
use openraft::error::{LinearizableReadError, RaftError};

use super::Node;
use super::leader::Attempt;
use crate::acl::{Authority, Credential, Denial};
use crate::api::{Consistency, Forward, ForwardReply, ListQuery, ListResult, NodeError, ReadResult};
use crate::record::Key;
use crate::rt;
use crate::store::EventsResult;
use crate::store::StoreStopped;
use crate::store::events::Compacted;
use crate::store::filter::Filter;

impl Node {
    /// Reads `key` on behalf of `credential`, at the given consistency.
    pub async fn read(
        &self,
        key: Key,
        consistency: Consistency,
        credential: Credential,
    ) -> Result<ReadResult, NodeError> {
        self.ensure_serving()?;
        if consistency == Consistency::Stale || self.inner.config.bugs.local_linearizable_reads() {
            return self.read_local(key, credential).await;
        }
        match self.run_on_leader(Forward::Read { key, consistency, credential }).await? {
            ForwardReply::Read(result) => Ok(result),
            other => Err(NodeError::Internal { message: format!("a read was answered with {other:?}") }),
        }
    }

    /// Lists records at the given consistency (stale lists are served locally).
    /// Only records `credential` may read are listed.
    pub async fn list(
        &self,
        query: ListQuery,
        consistency: Consistency,
        credential: Credential,
    ) -> Result<ListResult, NodeError> {
        self.ensure_serving()?;
        if consistency == Consistency::Stale || self.inner.config.bugs.local_linearizable_reads() {
            return self.list_local(query, credential).await;
        }
        match self.run_on_leader(Forward::List { query, consistency, credential }).await? {
            ForwardReply::Listed(result) => Ok(result),
            other => Err(NodeError::Internal { message: format!("a list was answered with {other:?}") }),
        }
    }

    async fn list_local(&self, query: ListQuery, credential: Credential) -> Result<ListResult, NodeError> {
        let listed = self.inner.store.list(query.filter, query.after, query.limit, credential).await;
        let result = served(listed)?;
        self.make_committed_durable().await?;
        Ok(result)
    }

    /// Events this node has applied from revision `from` on, of keys `credential` may read
    /// (watches are served locally: every event is committed, so a lagging node is late but
    /// never wrong).
    pub async fn events(
        &self,
        from: u64,
        filter: Filter,
        max: usize,
        credential: Credential,
    ) -> Result<EventsResult, NodeError> {
        self.ensure_serving()?;
        served(self.inner.store.events(from, filter, max, credential).await)
    }

    /// Whether anything matching `filter` that `credential` may read changed after revision
    /// `after` on this node; `Err` when that revision was compacted away.
    pub async fn changed_after(
        &self,
        after: u64,
        filter: Filter,
        credential: Credential,
    ) -> Result<Result<bool, Compacted>, NodeError> {
        self.ensure_serving()?;
        let changed = served(self.inner.store.changed_after(after, filter, credential).await)?;
        Ok(changed.ok_or(Compacted { oldest: after + 1 }))
    }

    /// What `credential` may do in this node's current state (cluster and ACL routes are
    /// checked against it; keys are checked where they are read or applied).
    pub async fn authority(&self, credential: Credential) -> Result<Authority, NodeError> {
        served(self.inner.store.authorize(credential).await)
    }

    /// This node's ACL state as it is (an O(1) clone).
    pub async fn acl(&self) -> Result<crate::acl::AclState, NodeError> {
        self.ensure_serving()?;
        self.inner.store.acl().await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Reads this node's state machine as it is. The committed index covering what is read is
    /// made durable first, so a crash and restart never serves an older state than this read.
    async fn read_local(&self, key: Key, credential: Credential) -> Result<ReadResult, NodeError> {
        let result = served(self.inner.store.get(key, credential).await)?;
        self.make_committed_durable().await?;
        Ok(result)
    }

    async fn make_committed_durable(&self) -> Result<(), NodeError> {
        self.inner.durability.flush_committed().await.map_err(|e| match self.inner.durability.stalled() {
            Some(stall) => NodeError::from_storage(&stall),
            None => NodeError::Internal { message: format!("persisting the commit index: {e}") },
        })
    }

    /// Lists on this node as leader, after confirming leadership as a read does.
    pub(super) async fn list_on_leader(
        &self,
        query: ListQuery,
        consistency: Consistency,
        credential: Credential,
    ) -> Result<ListResult, Attempt> {
        self.confirm_leadership(consistency).await?;
        let listed = self.inner.store.list(query.filter, query.after, query.limit, credential).await;
        served(listed).map_err(Attempt::Failed)
    }

    /// Reads on this node as leader, after confirming leadership.
    pub(super) async fn read_on_leader(
        &self,
        key: Key,
        consistency: Consistency,
        credential: Credential,
    ) -> Result<ReadResult, Attempt> {
        self.confirm_leadership(consistency).await?;
        served(self.inner.store.get(key, credential).await).map_err(Attempt::Failed)
    }

    /// Waits until this node has applied everything the cluster committed before the call,
    /// so that what it decides next from its own state is as current as a linearizable read
    /// (a lagging follower would otherwise refuse ACL management right after a bootstrap it
    /// has not applied yet, or honour a token revoked a moment ago).
    pub async fn catch_up(&self) -> Result<(), NodeError> {
        self.ensure_serving()?;
        let index = match self.run_on_leader(Forward::ReadIndex).await? {
            ForwardReply::ReadIndex(index) => index,
            other => return Err(NodeError::Internal { message: format!("a read index was answered with {other:?}") }),
        };
        let mut progress = self.inner.store.watch_progress();
        match rt::timeout(self.inner.config.request_timeout, progress.wait_for(|p| p.applied_index >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_closed)) => Err(NodeError::ShuttingDown),
            Err(_) => Err(NodeError::Timeout),
        }
    }

    /// Confirms leadership (a quorum round for ReadIndex, the lease otherwise) and waits until
    /// the store has applied everything committed before the request arrived, up to the
    /// index it returns.
    pub(super) async fn confirm_leadership(&self, consistency: Consistency) -> Result<u64, Attempt> {
        let policy = match consistency {
            Consistency::Lease => ReadPolicy::LeaseRead,
            Consistency::Linearizable | Consistency::Stale => ReadPolicy::ReadIndex,
        };
        match self.inner.raft.ensure_linearizable(policy).await {
            Ok(read) => Ok(read.index()),
            Err(RaftError::APIError(
                LinearizableReadError::ForwardToLeader(_) | LinearizableReadError::QuorumNotEnough(_),
            )) => Err(Attempt::Retry),
            Err(RaftError::Fatal(_)) => Err(Attempt::Failed(NodeError::ShuttingDown)),
        }
    }
}

/// The store's answer as the node's: a stopped store means the node is shutting down.
fn served<T>(answer: Result<Result<T, Denial>, StoreStopped>) -> Result<T, NodeError> {
    answer.map_err(|_| NodeError::ShuttingDown)?.map_err(NodeError::Denied)
}
