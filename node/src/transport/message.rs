//! The messages peers exchange.

use bytes::Bytes;
use openraft::raft::{AppendEntriesRequest, SnapshotResponse, StreamAppendResult, VoteRequest, VoteResponse};
use serde::{Deserialize, Serialize};

use crate::api::{Forward, ForwardReply, NodeError};
use crate::raft::contact::{ContactStamp, LeaseProof};
use crate::raft::{SnapshotMeta, TypeConfig, Vote};

/// A request and the id its response will carry.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

/// Bumped on any incompatible change to the messages below or the handshake. 3: the
/// authenticated handshake; sessions remember request fingerprints (`Response::TagReused`).
/// 4: the handshake carries both sides' cluster ids; `PeerResponse::Retired`. 5: forwarded
/// reads carry the client's credential; ACL commands and `Command::Authorized`. 6: pipelined
/// append streams (`StreamAppend`, `EndStream`); `Forward::ReadIndex`.
pub(super) const PROTOCOL: u32 = 6;

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot(SnapshotChunk),
    Forward(Forward),
    /// One AppendEntries of a pipelined stream: the receiver hands a stream's requests to raft
    /// in the order they arrived on the connection and answers them in that order. With a proof
    /// of leader contact when the sender holds its lease (see `raft::contact`).
    StreamAppend {
        stream: u64,
        rpc: AppendEntriesRequest<TypeConfig>,
        lease: Option<LeaseProof>,
    },
    /// Nothing more will be sent on `stream`; it gets no answer.
    EndStream {
        stream: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    /// A stream's answer, with the answering node's stamp, for the leader to prove contact
    /// with later.
    StreamAppend {
        result: StreamAppendResult<TypeConfig>,
        stamp: ContactStamp,
    },
    Vote(VoteResponse<TypeConfig>),
    /// `Some` once the last chunk is installed; `None` acknowledges an intermediate chunk.
    Snapshot(Option<SnapshotResponse<TypeConfig>>),
    Forward(Result<ForwardReply, NodeError>),
    /// The peer could not handle the request (its raft stopped, a chunk arrived out of order).
    Refused(String),
    /// The caller was removed from the cluster: its id is retired in the peer's applied state,
    /// for good. A removed node that missed the commit of its own retirement (the leader stops
    /// replicating to it once the configuration without it commits) learns it this way.
    Retired,
}

/// One piece of a snapshot streamed from the leader. Chunks of one transfer arrive in order;
/// the receiver writes them to a temporary file and installs it after the last.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// Identifies the transfer, so a restarted transfer never mixes with an abandoned one.
    pub transfer: u64,
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub data: Bytes,
    pub done: bool,
}
