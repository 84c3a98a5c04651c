//! openraft's network interface over the peer transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};

use crate::command::NodeId;
use crate::metrics::Metrics;
use crate::raft::contact::{ContactStamp, LeaseWitness};
use crate::raft::state_machine::RaftSnapshot;
use crate::raft::{LogId, Member, TypeConfig, Vote};
use crate::rt::{self, Duration};
use crate::store::snapshot::{SnapshotFile, SnapshotFiles};
use crate::transport::{PeerAuth, PeerClient, PeerRequest, PeerResponse, RpcError, SnapshotChunk};

/// Encoded bytes of entries one AppendEntries carries at most; a longer batch is cut and
/// reported to openraft as a partial success, which sends the rest next. Well under the frame
/// limit, and it holds at least one entry of the largest value a node accepts
/// (`config::VALUE_BYTES_MAX_LIMIT`).
pub const APPEND_ENTRY_BYTES_MAX: usize = 16 * 1024 * 1024;
const _: () = assert!(APPEND_ENTRY_BYTES_MAX < crate::transport::FRAME_BYTES_MAX / 2);
const _: () = assert!(crate::config::VALUE_BYTES_MAX_LIMIT * 2 <= APPEND_ENTRY_BYTES_MAX);

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
}

impl Network {
    /// `removed` is set when a peer answers that this node's id is retired.
    pub fn new(
        peers: Arc<Peers>,
        snapshots: Arc<SnapshotFiles>,
        witness: Arc<LeaseWitness>,
        removed: Arc<AtomicBool>,
    ) -> Network {
        Network { peers, snapshots, witness, removed }
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

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.soft_ttl();
        let (rpc, cut_after) = fit_to_frame(rpc);
        let lease = self.witness.proof(&rpc.vote, self.echo);
        match self.client.call(PeerRequest::Append { rpc, lease }, timeout).await {
            Ok(PeerResponse::Append { response, stamp }) => {
                self.echo = Some(stamp);
                Ok(match (response, cut_after) {
                    (AppendEntriesResponse::Success, Some(last_sent)) => {
                        AppendEntriesResponse::PartialSuccess(Some(last_sent))
                    }
                    (response, _) => response,
                })
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

/// Cuts `rpc` to the longest prefix of its entries that encodes within
/// [`APPEND_ENTRY_BYTES_MAX`] (never fewer than one), returning the last entry's id when it cut.
fn fit_to_frame(mut rpc: AppendEntriesRequest<TypeConfig>) -> (AppendEntriesRequest<TypeConfig>, Option<LogId>) {
    let mut bytes = 0;
    let keep = rpc
        .entries
        .iter()
        .position(|entry| {
            bytes += encoded_len(entry);
            bytes > APPEND_ENTRY_BYTES_MAX
        })
        .map_or(rpc.entries.len(), |first_over| first_over.max(1));
    if keep == rpc.entries.len() {
        return (rpc, None);
    }
    rpc.entries.truncate(keep);
    let last_sent = rpc.entries.last().map(|entry| entry.log_id);
    debug_assert!(last_sent.is_some(), "a cut batch keeps at least one entry");
    (rpc, last_sent)
}

/// The bytes `value` takes in a frame, counted without encoding it into a buffer.
fn encoded_len(value: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl bincode::enc::write::Writer for Counter {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0 += bytes.len();
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Counting cannot fail; an entry that could not encode would fail the send itself.
    let _ = bincode::serde::encode_into_writer(value, &mut counter, bincode::config::standard());
    counter.0
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::entry::RaftEntry;

    use super::*;
    use crate::command::{Command, Precondition, Request};
    use crate::raft::Entry;

    fn entry(index: u64, value_bytes: usize) -> Entry {
        let command = Command::Put {
            key: "k".into(),
            value: Bytes::from(vec![7; value_bytes]),
            labels: None,
            expect: Precondition::Always,
        };
        let request = Request { tag: None, proposed_at_ms: 0, command };
        let leader = openraft::vote::leader_id_adv::CommittedLeaderId { term: 1, node_id: 1 };
        Entry::new_normal(openraft::LogId::new(leader, index), request)
    }

    fn request(entries: Vec<Entry>) -> AppendEntriesRequest<TypeConfig> {
        let vote = openraft::Vote::new(1, 1);
        AppendEntriesRequest { vote, prev_log_id: None, entries, leader_commit: None }
    }

    #[test]
    fn a_batch_of_large_values_is_cut_to_fit_a_frame() {
        let mib = 1024 * 1024;
        let entries: Vec<_> = (1..=40).map(|index| entry(index, mib)).collect();
        let (cut, last_sent) = fit_to_frame(request(entries));
        assert_eq!(cut.entries.len(), 15, "15 one-MiB values fit 16 MiB with their headers");
        assert_eq!(last_sent.map(|id| id.index), Some(15));
        assert!(cut.entries.iter().map(encoded_len).sum::<usize>() <= APPEND_ENTRY_BYTES_MAX);
    }

    #[test]
    fn a_batch_that_fits_is_sent_whole_and_one_entry_is_always_sent() {
        let (whole, last_sent) = fit_to_frame(request((1..=3).map(|index| entry(index, 10)).collect()));
        assert_eq!((whole.entries.len(), last_sent), (3, None));
        let (single, last_sent) = fit_to_frame(request(vec![entry(1, APPEND_ENTRY_BYTES_MAX + 1), entry(2, 1)]));
        assert_eq!(single.entries.len(), 1);
        assert_eq!(last_sent.map(|id| id.index), Some(1));
    }
}
