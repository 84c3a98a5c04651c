//! The raft actor: openraft configured with cairn's types, runtime, storage and network.

pub mod contact;
pub mod log_store;
pub mod network;
mod pipeline;
pub mod state_machine;
#[cfg(test)]
mod storage_suite;

use serde::{Deserialize, Serialize};

use crate::command::{NodeId, Request, Response};
use crate::rt::CairnRuntime;

/// Where a member listens: its peer (raft and forwarding) address and its HTTP address.
/// (`Default`, empty addresses, only because openraft's storage test suite builds nodes so.)
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub peer: String,
    pub http: String,
}

openraft::declare_raft_types!(
    /// cairn's raft types: requests and responses of the store, u64 node ids, members with
    /// addresses, and the runtime that switches between tokio and madsim.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        AsyncRuntime = CairnRuntime,
);

pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, Member>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
