//! openraft's network interface over the peer transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError, StreamAppendResult, VoteRequest,
    VoteResponse,
};

use crate::command::NodeId;
use crate::metrics::Metrics;
use crate::raft::contact::{ContactStamp, LeaseProof, LeaseWitness};
use crate::raft::pipeline::AppendPipeline;
use crate::raft::state_machine::RaftSnapshot;
use crate::raft::{Member, TypeConfig, Vote};
use crate::rt::{self, Duration};
use crate::store::snapshot::{SnapshotFile, SnapshotFiles};
use crate::transport::{CallStream, PeerAuth, PeerClient, PeerRequest, PeerResponse, RpcError, SnapshotChunk};

/// Bytes of a snapshot per chunk RPC.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Deadline for one snapshot chunk: sending a chunk is slower than a heartbeat.
const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(10);

/// One client per peer, shared by raft replication and request forwarding.
pub struct Peers {
    auth: Arc<PeerAuth>,
    metrics: Arc<Metrics>,
    /// A std mutex: lookups and inserts only.
    clients: Mutex<BTreeMap<NodeId, Arc<PeerClient>>>,
}

impl Peers {
    pub fn new(auth: Arc<PeerAuth>, metrics: Arc<Metrics>) -> Peers {
        Peers { auth, metrics, clients: Mutex::new(BTreeMap::new()) }
    }

    /// The client for `id` at `address`, replacing one that points elsewhere.
    pub fn client(&self, id: NodeId, address: &str) -> Arc<PeerClient> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        match clients.get(&id) {
            Some(client) if client.address() == address => client.clone(),
            _ => {
                let client = PeerClient::new(self.auth.clone(), address.to_string()).measured_by(self.metrics.peer(id));
                let client = Arc::new(client);
                clients.insert(id, client.clone());
                client
            }
        }
    }
}

/// Makes a [`PeerLink`] per replication target.
pub struct Network {
    peers: Arc<Peers>,
    snapshots: Arc<SnapshotFiles>,
    witness: Arc<LeaseWitness>,
    removed: Arc<AtomicBool>,
    appends_in_flight: usize,
}

impl Network {
    /// `removed` is set when a peer answers that this node's id is retired; each follower has
    /// at most `appends_in_flight` AppendEntries in flight.
    pub fn new(
        peers: Arc<Peers>,
        snapshots: Arc<SnapshotFiles>,
        witness: Arc<LeaseWitness>,
        removed: Arc<AtomicBool>,
        appends_in_flight: usize,
    ) -> Network {
        debug_assert!(appends_in_flight > 0, "a validated config allows at least one append in flight");
        Network { peers, snapshots, witness, removed, appends_in_flight }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerLink {
        PeerLink {
            from: self.peers.auth.id(),
            target,
            client: self.peers.client(target, &node.peer),
            snapshots: self.snapshots.clone(),
            witness: self.witness.clone(),
            removed: self.removed.clone(),
            appends_in_flight: self.appends_in_flight,
            echo: None,
        }
    }
}

/// Raft's RPCs to one peer.
pub struct PeerLink {
    from: NodeId,
    target: NodeId,
    client: Arc<PeerClient>,
    snapshots: Arc<SnapshotFiles>,
    witness: Arc<LeaseWitness>,
    removed: Arc<AtomicBool>,
    appends_in_flight: usize,
    /// The peer's stamp from its latest answer on this link, echoed in the next request's lease
    /// proof. The proof's applied index is read when that request is sent, after the stamp
    /// arrived, so it covers every write acknowledged before the stamp.
    echo: Option<ContactStamp>,
}

impl PeerLink {
    /// The proof of contact for the next append of `vote`, echoing the peer's latest stamp.
    pub(super) fn lease_proof(&self, vote: &Vote) -> Option<LeaseProof> {
        self.witness.proof(vote, self.echo)
    }

    /// Opens a stream to the peer.
    pub(super) async fn open_stream(&self, timeout: Duration) -> Result<CallStream, RpcError> {
        self.client.open_stream(timeout).await
    }

    /// Keeps the stamp of the peer's latest answer, for the next proof.
    pub(super) fn heard(&mut self, stamp: ContactStamp) {
        self.echo = Some(stamp);
    }

    pub(super) fn failure(
        &self,
        action: RPCTypes,
        timeout: Duration,
        outcome: Result<PeerResponse, RpcError>,
    ) -> RPCError<TypeConfig> {
        match outcome {
            Err(RpcError::Unreachable(reason)) => RPCError::Unreachable(Unreachable::from_string(reason)),
            Err(RpcError::Timeout) => {
                RPCError::Timeout(Timeout { action, id: self.from, target: self.target, timeout })
            }
            Err(RpcError::Disconnected) => RPCError::Network(NetworkError::from_string("connection lost")),
            Ok(PeerResponse::Refused(reason)) => RPCError::Network(NetworkError::from_string(reason)),
            Ok(PeerResponse::Retired) => {
                if !self.removed.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        id = self.from,
                        peer = self.target,
                        "node {} says this node was removed from the cluster; it no longer serves",
                        self.target
                    );
                }
                RPCError::Network(NetworkError::from_string("this node was removed from the cluster"))
            }
            Ok(other) => RPCError::Network(NetworkError::from_string(format!("unexpected answer {other:?}"))),
        }
    }

    async fn vote_rpc(
        &mut self,
        request: PeerRequest,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.soft_ttl();
        match self.client.call(request, timeout).await {
            Ok(PeerResponse::Vote(response)) => Ok(response),
            other => Err(self.failure(RPCTypes::Vote, timeout, other)),
        }
    }

    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: RaftSnapshot,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let file: SnapshotFile = snapshot.snapshot;
        let len = self.snapshots.len(&file).map_err(|e| Unreachable::<TypeConfig>::new(&e))?;
        let transfer = rt::random_u64();
        let mut offset = 0;
        loop {
            let snapshots = self.snapshots.clone();
            let chunk_file = file.clone();
            let data = rt::run_blocking(move || snapshots.read_chunk(&chunk_file, offset, SNAPSHOT_CHUNK_BYTES))
                .await
                .map_err(|e| Unreachable::<TypeConfig>::new(&e))?;
            let done = offset + data.len() as u64 >= len;
            let chunk =
                SnapshotChunk { transfer, vote, meta: snapshot.meta.clone(), offset, data: Bytes::from(data), done };
            offset += chunk.data.len() as u64;
            match self.client.call(PeerRequest::Snapshot(chunk), SNAPSHOT_CHUNK_TIMEOUT).await {
                Ok(PeerResponse::Snapshot(Some(response))) if done => return Ok(response),
                Ok(PeerResponse::Snapshot(None)) if !done => {}
                other => return Err(self.failure(RPCTypes::InstallSnapshot, SNAPSHOT_CHUNK_TIMEOUT, other).into()),
            }
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerLink {
    type SnapshotData = SnapshotFile;

    /// One AppendEntries, as a stream of one (the receiving side has one path for appends).
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let last = rpc.entries.last().map(|entry| entry.log_id).or(rpc.prev_log_id);
        let mut answers = self.stream_append(futures_util::stream::iter([rpc]), option).await?;
        match answers.next().await {
            Some(Ok(Ok(_))) => Ok(AppendEntriesResponse::Success),
            Some(Ok(Err(StreamAppendError::Conflict(_)))) => Ok(AppendEntriesResponse::Conflict),
            Some(Ok(Err(StreamAppendError::HigherVote(vote)))) => Ok(AppendEntriesResponse::HigherVote(vote)),
            Some(Err(error)) => Err(error),
            None => Err(RPCError::Network(NetworkError::from_string(format!(
                "the append stream ended without answering the append up to {last:?}"
            )))),
        }
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        Box::pin(async move {
            let timeout = option.soft_ttl();
            let in_flight_max = self.appends_in_flight;
            let pipeline = AppendPipeline::new(self, input, timeout, in_flight_max);
            let answers = futures_util::stream::unfold(pipeline, |mut pipeline| async move {
                pipeline.next_answer().await.map(|answer| (answer, pipeline))
            });
            Ok(Box::pin(answers) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.vote_rpc(PeerRequest::Vote(rpc), option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.vote_rpc(PeerRequest::PreVote(rpc), option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: RaftSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.send_snapshot(vote, snapshot) => result,
        }
    }
}
