//! The read path: `stale` from the local store, `linearizable` (ReadIndex) and `lease` on the
//! leader, forwarded there from a follower.

use openraft::ReadPolicy;
use openraft::error::{LinearizableReadError, RaftError};

use super::Node;
use super::leader::Attempt;
use crate::api::{Consistency, Forward, ForwardReply, NodeError, ReadResult};
use crate::record::Key;

impl Node {
    pub async fn read(&self, key: Key, consistency: Consistency) -> Result<ReadResult, NodeError> {
        self.ensure_serving()?;
        if consistency == Consistency::Stale || self.inner.config.bugs.local_linearizable_reads() {
            return self.read_local(key).await;
        }
        match self.run_on_leader(Forward::Read { key, consistency }).await? {
            ForwardReply::Read(result) => Ok(result),
            other => Err(NodeError::Internal { message: format!("a read was answered with {other:?}") }),
        }
    }

    /// Reads this node's state machine as it is. The committed index covering what is read is
    /// made durable first, so a crash and restart never serves an older state than this read.
    async fn read_local(&self, key: Key) -> Result<ReadResult, NodeError> {
        let result = self.inner.store.get(key).await.map_err(|_| NodeError::ShuttingDown)?;
        self.inner
            .durability
            .flush_committed()
            .await
            .map_err(|e| NodeError::Internal { message: format!("persisting the commit index: {e}") })?;
        Ok(result)
    }

    /// Confirms leadership (a quorum round for ReadIndex, the lease otherwise), waits until the
    /// store has applied the read index, then reads.
    pub(super) async fn read_on_leader(
        &self,
        key: crate::record::Key,
        consistency: Consistency,
    ) -> Result<ReadResult, Attempt> {
        let policy = match consistency {
            Consistency::Lease => ReadPolicy::LeaseRead,
            Consistency::Linearizable | Consistency::Stale => ReadPolicy::ReadIndex,
        };
        match self.inner.raft.ensure_linearizable(policy).await {
            Ok(_) => {}
            Err(RaftError::APIError(
                LinearizableReadError::ForwardToLeader(_) | LinearizableReadError::QuorumNotEnough(_),
            )) => {
                return Err(Attempt::Retry);
            }
            Err(RaftError::Fatal(_)) => return Err(Attempt::Failed(NodeError::ShuttingDown)),
        }
        self.inner.store.get(key).await.map_err(|_| Attempt::Failed(NodeError::ShuttingDown))
    }
}
