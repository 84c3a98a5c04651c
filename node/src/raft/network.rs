//! openraft's network interface over the peer transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};

use crate::command::NodeId;
use crate::raft::contact::{ContactStamp, LeaseWitness};
use crate::raft::state_machine::RaftSnapshot;
use crate::raft::{Member, TypeConfig, Vote};
use crate::rt::{self, Duration};
use crate::store::snapshot::{SnapshotFile, SnapshotFiles};
use crate::transport::{PeerClient, PeerRequest, PeerResponse, RpcError, SnapshotChunk};

/// Bytes of a snapshot per chunk RPC.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Deadline for one snapshot chunk: sending a chunk is slower than a heartbeat.
const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(10);

/// One client per peer, shared by raft replication and request forwarding.
pub struct Peers {
    from: NodeId,
    /// A std mutex: lookups and inserts only.
    clients: Mutex<BTreeMap<NodeId, Arc<PeerClient>>>,
}

impl Peers {
    pub fn new(from: NodeId) -> Peers {
        Peers { from, clients: Mutex::new(BTreeMap::new()) }
    }

    /// The client for `id` at `address`, replacing one that points elsewhere.
    pub fn client(&self, id: NodeId, address: &str) -> Arc<PeerClient> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        match clients.get(&id) {
            Some(client) if client.address() == address => client.clone(),
            _ => {
                let client = Arc::new(PeerClient::new(self.from, address.to_string()));
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
}

impl Network {
    pub fn new(peers: Arc<Peers>, snapshots: Arc<SnapshotFiles>, witness: Arc<LeaseWitness>) -> Network {
        Network { peers, snapshots, witness }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerLink {
        PeerLink {
            from: self.peers.from,
            target,
            client: self.peers.client(target, &node.peer),
            snapshots: self.snapshots.clone(),
            witness: self.witness.clone(),
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
    /// The peer's stamp from its latest answer on this link, echoed in the next request's lease
    /// proof. The proof's applied index is read when that request is sent, after the stamp
    /// arrived, so it covers every write acknowledged before the stamp.
    echo: Option<ContactStamp>,
}

impl PeerLink {
    fn failure(
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

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.soft_ttl();
        let lease = self.witness.proof(&rpc.vote, self.echo);
        match self.client.call(PeerRequest::Append { rpc, lease }, timeout).await {
            Ok(PeerResponse::Append { response, stamp }) => {
                self.echo = Some(stamp);
                Ok(response)
            }
            other => Err(self.failure(RPCTypes::AppendEntries, timeout, other)),
        }
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
