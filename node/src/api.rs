//! What a node offers its clients (the HTTP actor, and peers forwarding to the leader): read
//! consistency levels, results, errors, and views of the cluster.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::acl::{Credential, Denial};
use crate::command::{ClusterId, NodeId, Request, Response};
use crate::raft::Member;
use crate::record::{Key, Record};
use crate::store::filter::Filter;

/// How a read is ordered with respect to writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// ReadIndex: the leader confirms its leadership with a quorum after the read arrives.
    Linearizable,
    /// The leader answers within its lease, without a quorum round; linearizable as long as
    /// clocks advance at the same rate.
    Lease,
    /// Served by the asked node's state machine as it is, even with no leader.
    Stale,
}

/// A read's answer: the record (if present) and the store revision it was read at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResult {
    pub record: Option<Record>,
    pub revision: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResult {
    pub records: Vec<Record>,
    /// Matching records in all pages.
    pub total: usize,
    /// The last key of this page when more follow.
    pub next: Option<Key>,
    /// The store revision the listing was read at.
    pub revision: u64,
}

/// What to list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    pub filter: Filter,
    /// Start after this key (a continuation).
    pub after: Option<Key>,
    pub limit: usize,
}

/// What an added member becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberKind {
    /// A voter: added as a learner and promoted once it has caught up.
    Voter,
    /// A learner (etcd's `member add --learner`): it replicates and serves stale reads but does
    /// not vote. Adding it again as a voter promotes it; so does autopilot after
    /// `--stabilization`.
    Learner,
}

/// One member as the cluster API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: NodeId,
    pub peer: String,
    pub http: String,
    pub voter: bool,
    pub leader: bool,
}

/// A node's own view of its raft state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: u64,
    /// The last log index the newest snapshot covers (0: no snapshot yet).
    pub snapshot_index: u64,
    /// The last log index purged from the log (0: none); a member further behind than this
    /// catches up from a snapshot.
    pub purged_index: u64,
    /// The cluster this node belongs to, once it knows (see `data_dir`); absent in answers
    /// from nodes that predate cluster ids.
    #[serde(default)]
    pub cluster_id: Option<ClusterId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    /// Not (yet) part of a cluster: waiting to join or to be initialized.
    Detached,
    /// Removed from the cluster; it no longer serves.
    Removed,
    Shutdown,
}

/// Why a node could not answer. Each variant states whether the request may have taken effect.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeError {
    /// No leader could be reached before the deadline; the request did not take effect.
    #[error("no leader is reachable")]
    NoLeader,
    /// The request may or may not have taken effect (a timeout or a leader change after it
    /// was proposed). Retrying with the same client tag is safe.
    #[error("the outcome is unknown: {reason}")]
    OutcomeUnknown { reason: String },
    /// A read or cluster query did not complete before its deadline; it changed nothing.
    #[error("the request timed out")]
    Timeout,
    /// This node was removed from the cluster and no longer serves.
    #[error("this node was removed from the cluster")]
    NodeRemoved,
    /// This node is not part of a cluster yet (it is joining or waiting for bootstrap).
    #[error("this node has not joined a cluster yet")]
    NotJoined,
    #[error("this node is shutting down")]
    ShuttingDown,
    /// The member id belonged to a removed node; ids are never reused.
    #[error("node id {id} was removed from the cluster and cannot be reused")]
    MemberRetired { id: NodeId },
    /// The member id is in use with different addresses.
    #[error("node id {id} is already a member with other addresses")]
    MemberConflict { id: NodeId },
    /// No member has this id.
    #[error("node {id} is not a member")]
    MemberNotFound { id: NodeId },
    /// The membership change is not allowed (for example, it would remove the last voter).
    #[error("membership change refused: {reason}")]
    MembershipRefused { reason: String },
    /// The request breaks the node's rules (see [`crate::validate`]); nothing was proposed.
    #[error("invalid request: {0}")]
    Invalid(#[from] crate::validate::Invalid),
    /// This node's disk is full: the write was refused before it was proposed (nothing
    /// happened). The node resumes writing by itself once space is freed.
    #[error("insufficient storage: {message}")]
    InsufficientStorage { message: String },
    /// This node's disk fails (I/O errors): the request was refused (nothing happened). The
    /// node retries the disk and resumes by itself once it accepts writes again.
    #[error("storage unavailable: {message}")]
    StorageUnavailable { message: String },
    /// A bug or a storage failure; the node stops serving writes.
    #[error("internal error: {message}")]
    Internal { message: String },
    /// The ACL state refused the request's token; nothing changed.
    #[error("{0}")]
    Denied(Denial),
    /// This node is already streaming a backup; ask again once it is done.
    #[error("a backup of this node is already in progress")]
    SnapshotInProgress,
}

/// A client request a follower hands to the leader over the peer transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Forward {
    Write(Request),
    Read { key: Key, consistency: Consistency, credential: Credential },
    List { query: ListQuery, consistency: Consistency, credential: Credential },
    AddMember { id: NodeId, member: Member, kind: MemberKind },
    RemoveMember { id: NodeId },
    ReadIndex,
}

/// The leader's answer to a [`Forward`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardReply {
    Written(Response),
    Read(ReadResult),
    Listed(ListResult),
    Members(Vec<MemberView>),
    /// The index everything committed before a [`Forward::ReadIndex`] reaches, once the leader
    /// confirmed its leadership: what the asking node must apply to catch up.
    ReadIndex(u64),
}

/// How stale this node's answer may be, for `consistency=stale` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staleness {
    /// The leader this node knows of: raft's, else the one gossip's newest change notice names.
    pub known_leader: Option<NodeId>,
    /// Since this node last heard from a leader (for a leader: since its quorum last acked), or
    /// none if it never did since it started.
    pub last_contact: Option<std::time::Duration>,
    /// Revisions between the answer and the newest revision this node has heard of (from its
    /// own store, or gossip: members' metadata and the leader's change notices).
    pub lag: u64,
}

/// One node in `GET /v1/cluster`: raft membership joined with gossip state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub id: NodeId,
    pub http: String,
    pub peer: String,
    /// Its gossip address, if gossip knows the node.
    pub gossip_addr: Option<String>,
    /// Null for a node gossip knows but the raft membership does not.
    pub raft: Option<RaftPart>,
    /// Null for a raft member gossip has not seen (or when gossip is off).
    pub gossip: Option<GossipPart>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPart {
    pub voter: bool,
    pub leader: bool,
    /// The last log index replicated to it, where this node (as leader) knows it.
    pub match_index: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipPart {
    pub state: crate::gossip::PeerState,
    pub generation: u64,
    /// Since a gossip packet from it last reached this node.
    pub last_seen_ms: Option<u64>,
}

/// `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub nodes: Vec<ClusterNode>,
    /// This node's gossip counters: packets, drops by reason, members declared down (null when
    /// gossip is off).
    pub gossip_counters: Option<crate::gossip::GossipCounters>,
}

impl NodeError {
    /// The error for a request refused because this node's disk is failing: insufficient
    /// storage for a full disk (ENOSPC, EDQUOT), storage unavailable for anything else.
    pub fn from_storage(error: &std::io::Error) -> NodeError {
        let message = error.to_string();
        match error.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                NodeError::InsufficientStorage { message }
            }
            _ => NodeError::StorageUnavailable { message },
        }
    }
}
