//! A running node: wires the raft, store and storage actors and the peer transport together,
//! and offers clients (the HTTP actor, peers forwarding to the leader) one typed API.
//!
//! Writes and non-stale reads are served by the leader; a follower forwards them over the
//! peer transport. Every client write carries a [`ClientTag`], so the node can retry it after
//! a leader change without ever applying it twice.

mod autopilot;
mod cluster_id;
mod export;
mod health;
mod leader;
mod membership;
mod metrics;
mod observe;
mod peer_handler;
mod read;
mod snapshot_receiver;
mod write;

pub use export::ExportedSnapshot;
pub use health::Check;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use thiserror::Error;
use tokio::net::{TcpListener, UdpSocket};

use crate::api::{MemberView, NodeError, Role, Status};
use crate::command::{ClientTag, NodeId};
use crate::config::{Bootstrap, ConfigError, NodeConfig};
use crate::data_dir::{self, ClusterId, DataDir, DataDirError};
use crate::gossip::{self, GossipConfig, GossipHandle, GossipIdentity, next_generation};
use crate::metrics::Metrics;
use crate::raft::contact::{ContactClock, LeaseWitness};
use crate::raft::log_store::{CommitDurability, LogStore};
use crate::raft::network::{Network, Peers};
use crate::raft::state_machine::StateMachine;
use crate::raft::{Member, RaftMetrics, TypeConfig};
use crate::rt::{self, Duration, watch};
use crate::storage::Disk;
use crate::store::snapshot::SnapshotFiles;
use crate::store::{StoreHandle, StoreProgress};
use crate::tls::{PeerTls, TlsError};
use crate::transport::{self, PeerAuth};

use self::peer_handler::NodePeerHandler;
use self::snapshot_receiver::SnapshotReceiver;

pub use self::autopilot::AutopilotConfig;

pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// How often a removed node re-checks whether the configuration without it has reached it.
const REMOVAL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A cairn node. Cheap to clone; all clones drive the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    raft: Raft,
    store: StoreHandle,
    peers: Arc<Peers>,
    durability: CommitDurability,
    /// Set once this node learns it was removed (from its applied state, or from a peer that
    /// has applied it); it then refuses every request.
    removed: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    /// The gossip actor, set once right after start when gossip is configured.
    gossip: OnceLock<GossipHandle>,
    /// Proven contact with a leader, for the staleness of stale reads.
    contact: ContactClock,
    /// The locked data directory and its identity stamp; the lock lives as long as the node.
    data_dir: Arc<DataDir>,
    /// The peer port's TLS, when peers speak it (for a reload on demand).
    peer_tls: Option<Arc<PeerTls>>,
    /// The snapshot directory, where backups are written before they are streamed.
    snapshots: Arc<SnapshotFiles>,
    /// One backup at a time: each holds a snapshot file on disk while it streams.
    exports: Arc<tokio::sync::Semaphore>,
    metrics: Arc<Metrics>,
}

/// Why a node could not start. Nothing keeps running after this error.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("storage in {dir}: {source}")]
    Storage { dir: PathBuf, source: std::io::Error },
    #[error("cannot listen for peers on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("peer TLS: {0}")]
    PeerTls(#[from] TlsError),
}

/// Reads the gossip generation and binds the gossip socket, before anything else starts.
async fn prepare_gossip(
    config: &NodeConfig,
    disk: &dyn Disk,
) -> Result<Option<(GossipConfig, GossipIdentity, UdpSocket)>, StartError> {
    let Some(gossip) = &config.gossip else { return Ok(None) };
    let generation = next_generation(disk, &config.data_dir)
        .map_err(|source| StartError::Storage { dir: config.data_dir.clone(), source })?;
    let socket = UdpSocket::bind(gossip.address)
        .await
        .map_err(|source| StartError::Listen { address: gossip.address.to_string(), source })?;
    let identity = GossipIdentity {
        id: config.id,
        peer: config.member.peer.clone(),
        http: config.member.http.clone(),
        gossip: gossip.address,
        generation,
        renewal: 0,
    };
    Ok(Some((gossip.clone(), identity, socket)))
}

/// The checks that need raft's recovered state, then the gossip preparation: a refused start
/// must not have bumped the gossip generation, so that it leaves the directory as it was.
async fn prepare(
    config: &NodeConfig,
    raft: &Raft,
    store: &StoreHandle,
    disk: &dyn Disk,
) -> Result<Option<(GossipConfig, GossipIdentity, UdpSocket)>, StartError> {
    if let Bootstrap::InitialCluster(listed) = &config.bootstrap {
        // openraft re-applied the committed log before `Raft::new` returned, so the store knows
        // which listed nodes were removed since.
        let held = raft
            .with_raft_state(|state| {
                let membership = state.membership_state.effective().membership();
                let nodes: BTreeMap<NodeId, Member> =
                    membership.nodes().map(|(id, member)| (*id, member.clone())).collect();
                nodes
            })
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !held.is_empty() {
            let mut retired = BTreeSet::new();
            for id in listed.keys().filter(|id| !held.contains_key(id)) {
                if store.is_retired(*id).await.map_err(|e| StartError::Raft(e.to_string()))? {
                    retired.insert(*id);
                }
            }
            data_dir::check_initial_cluster(&config.data_dir, listed, &held, &retired)?;
        }
    }
    prepare_gossip(config, disk).await
}

/// Stamps what a new node already knows of its cluster before it talks to any peer, so that the
/// handshake refuses another cluster's nodes from the first connection: a new single-node
/// cluster draws its id here (its first leadership proposes this id), and a joiner records the
/// id its seeds told. A node of a new `--initial-cluster` learns the id its first leader draws.
fn stamp_known_cluster(config: &NodeConfig, data_dir: &DataDir, initialized: bool) -> Result<(), StartError> {
    if initialized || data_dir.cluster_id().is_some() {
        return Ok(());
    }
    let known = match &config.bootstrap {
        Bootstrap::Single => Some((ClusterId(rt::random_u64()), "a new single-node cluster")),
        Bootstrap::Join { cluster_id, .. } => cluster_id.map(|id| (id, "the members named by --join")),
        Bootstrap::InitialCluster(_) => None,
    };
    if let Some((cluster_id, source)) = known {
        data_dir.record_cluster_id(cluster_id, source)?;
    }
    Ok(())
}

impl Node {
    /// Opens the node's storage, starts its actors, listens for peers on `peer_listener`, and
    /// bootstraps a new cluster if the configuration asks for it and the log is empty.
    ///
    /// The node counts its events in `metrics`: a fresh [`Metrics`] for each process; the
    /// simulator hands one from each start of a node slot to the next.
    pub async fn start(
        config: NodeConfig,
        disk: Arc<dyn Disk>,
        metrics: Arc<Metrics>,
        peer_listener: TcpListener,
    ) -> Result<Node, StartError> {
        let config = config.validate()?;
        let data_dir = Arc::new(DataDir::open(disk.clone(), &config.data_dir, config.id)?);
        let storage_error = |source| StartError::Storage { dir: config.data_dir.clone(), source };
        let log_store = LogStore::open(disk.clone(), config.data_dir.join("raft"), config.bugs, metrics.wal.clone())
            .await
            .map_err(storage_error)?;
        let durability = log_store.durability();
        let snapshots =
            Arc::new(SnapshotFiles::open(disk.clone(), config.data_dir.join("snapshots")).map_err(storage_error)?);
        let store = StoreHandle::spawn(config.id, config.session_capacity, config.history, config.bugs);
        let stamped = data_dir.clone();
        let auth = PeerAuth::new(config.id, config.cluster_secret.as_deref(), Arc::new(move || stamped.cluster_id()));
        let peer_tls = config.peer_tls.clone().map(|files| PeerTls::load(disk.clone(), files)).transpose()?;
        let auth = Arc::new(match &peer_tls {
            Some(tls) => auth.with_tls(tls.clone()),
            None => auth,
        });
        if config.cluster_secret.is_none() {
            tracing::warn!(
                "no --cluster-secret: the peer port and gossip are unauthenticated; anyone who reaches them \
                 can act as a member (write, change membership, vote). Set a secret on every node."
            );
        }
        let peers = Arc::new(Peers::new(auth.clone(), metrics.clone()));
        let witness = Arc::new(LeaseWitness::new(config.timings.election_timeout_min / 2));
        let removed = Arc::new(AtomicBool::new(false));
        let network =
            Network::new(peers.clone(), snapshots.clone(), witness.clone(), removed.clone(), config.appends_in_flight);
        let state_machine = StateMachine::new(store.clone(), snapshots.clone(), metrics.clone());
        let raft_config = Arc::new(raft_config(&config)?);
        let raft = Raft::new(config.id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let initialized = raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))?;
        stamp_known_cluster(&config, &data_dir, initialized)?;
        let gossip = match prepare(&config, &raft, &store, disk.as_ref()).await {
            Ok(gossip) => gossip,
            Err(error) => {
                if let Err(stop) = raft.shutdown().await {
                    tracing::warn!(error = %stop, "stopping raft after a refused start");
                }
                return Err(error);
            }
        };
        witness.attach(raft.metrics(), store.clone());
        let (shutdown, shutdown_signal) = watch::channel(false);
        let node = Node {
            inner: Arc::new(Inner {
                config,
                raft,
                store,
                peers,
                durability,
                removed,
                shutdown,
                gossip: OnceLock::new(),
                contact: ContactClock::default(),
                data_dir,
                peer_tls: peer_tls.clone(),
                snapshots: snapshots.clone(),
                exports: Arc::new(tokio::sync::Semaphore::new(1)),
                metrics,
            }),
        };
        if let Some((gossip_config, identity, socket)) = gossip {
            let observed = node.clone();
            let local = Arc::new(move || observed.local_state());
            let handle = gossip::spawn(gossip_config, identity, socket, local, node.inner.shutdown.subscribe());
            node.inner.gossip.set(handle).expect("gossip starts once");
        }
        if let Some(autopilot) = node.inner.config.autopilot {
            rt::spawn(node.clone().run_autopilot(autopilot));
        }
        let handler = Arc::new(NodePeerHandler::new(node.clone(), SnapshotReceiver::new(snapshots)));
        if let Some(tls) = peer_tls {
            rt::spawn(tls.keep_reloading(shutdown_signal.clone()));
        }
        rt::spawn(transport::serve(peer_listener, auth, handler, shutdown_signal));
        node.bootstrap().await?;
        rt::spawn(node.clone().watch_removal());
        rt::spawn(node.clone().keep_cluster_id());
        rt::spawn(node.clone().finish_joint_configurations());
        rt::spawn(node.clone().count_leader_changes());
        tracing::info!(id = node.id(), peer = %node.inner.config.member.peer, "node started");
        Ok(node)
    }

    /// Reads the peer port's TLS files again now (they are also polled every second): whether
    /// they changed, or `None` when peers do not speak TLS.
    pub fn reload_peer_tls(&self) -> Option<Result<bool, TlsError>> {
        self.inner.peer_tls.as_ref().map(|tls| tls.reload())
    }

    async fn bootstrap(&self) -> Result<(), StartError> {
        let raft = &self.inner.raft;
        if raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))? {
            tracing::info!("existing raft state found; rejoining the cluster");
            return Ok(());
        }
        let members = match &self.inner.config.bootstrap {
            Bootstrap::Single => [(self.id(), self.inner.config.member.clone())].into_iter().collect(),
            Bootstrap::InitialCluster(members) => members.clone(),
            Bootstrap::Join { .. } => return Ok(()),
        };
        match raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                tracing::info!("another member initialized the cluster first");
                Ok(())
            }
            Err(error) => Err(StartError::Raft(error.to_string())),
        }
    }

    /// Watches for this node's retirement. A removed node refuses client requests at once, but
    /// its raft keeps running until it knows the configuration without it is committed: until
    /// then its acknowledgement may be needed to commit the joint configuration the change
    /// passes through, or (as the leader removing itself) to replicate the final one (a
    /// two-voter cluster removing either node would otherwise hang for good, restarts
    /// included). Should that commit never reach it, raft idles: the others no longer count it
    /// and refuse its votes.
    async fn watch_removal(self) {
        let mut progress = self.inner.store.watch_progress();
        if progress.wait_for(|p| p.self_retired).await.is_err() {
            return;
        }
        self.inner.removed.store(true, Ordering::Release);
        tracing::error!(id = self.id(), "this node was removed from the cluster; it no longer serves");
        let mut shutdown = self.inner.shutdown.subscribe();
        while self.is_in_committed_membership() {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = self.wait_for_change(REMOVAL_CHECK_INTERVAL) => {}
            }
        }
        tracing::info!(id = self.id(), "the configuration without this node is committed; stopping raft");
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::warn!(%error, "stopping raft after removal");
        }
    }

    pub fn id(&self) -> NodeId {
        self.inner.config.id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The cluster this node belongs to, once known: drawn when the cluster was bootstrapped,
    /// learned from the replicated state by a joiner, and stamped in the data directory. Peers
    /// can compare it to refuse a node of another cluster.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.inner.data_dir.cluster_id()
    }

    /// The store's revision right now (for `X-Cairn-Revision`).
    pub fn revision(&self) -> u64 {
        self.inner.store.progress().revision
    }

    pub fn store_progress(&self) -> watch::Receiver<StoreProgress> {
        self.inner.store.watch_progress()
    }

    fn metrics(&self) -> RaftMetrics {
        self.inner.raft.metrics().borrow_watched().clone()
    }

    /// The leader this node currently knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow_watched().current_leader
    }

    /// A member's addresses, as recorded in the membership.
    pub fn member(&self, id: NodeId) -> Option<Member> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.membership_config.membership().get_node(&id).cloned()
    }

    fn is_in_committed_membership(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.committed_membership_config.membership().get_node(&self.id()).is_some()
    }

    pub fn is_removed(&self) -> bool {
        self.inner.removed.load(Ordering::Acquire)
    }

    fn ensure_serving(&self) -> Result<(), NodeError> {
        if self.is_removed() {
            return Err(NodeError::NodeRemoved);
        }
        if *self.inner.shutdown.borrow() {
            return Err(NodeError::ShuttingDown);
        }
        Ok(())
    }

    pub fn status(&self) -> Status {
        let metrics = self.metrics();
        let progress = self.inner.store.progress();
        Status {
            id: self.id(),
            role: self.role(&metrics),
            term: metrics.current_term,
            leader: metrics.current_leader,
            commit_index: metrics.local_committed.as_ref().map_or(0, |id| id.index),
            applied_index: progress.applied_index,
            revision: progress.revision,
            snapshot_index: metrics.snapshot.as_ref().map_or(0, |id| id.index),
            purged_index: metrics.purged.as_ref().map_or(0, |id| id.index),
            cluster_id: self.cluster_id(),
        }
    }

    fn role(&self, metrics: &RaftMetrics) -> Role {
        if self.is_removed() {
            return Role::Removed;
        }
        let membership = metrics.membership_config.membership();
        if membership.get_node(&self.id()).is_none() {
            return Role::Detached;
        }
        match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Follower => Role::Follower,
            ServerState::Shutdown => Role::Shutdown,
        }
    }

    /// The membership as this node knows it, voters first, then learners, each by id.
    pub fn members(&self) -> Vec<MemberView> {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut members: Vec<MemberView> = membership
            .nodes()
            .map(|(id, member)| MemberView {
                id: *id,
                peer: member.peer.clone(),
                http: member.http.clone(),
                voter: voters.contains(id),
                leader: metrics.current_leader == Some(*id),
            })
            .collect();
        members.sort_by_key(|m| (!m.voter, m.id));
        members
    }

    /// A fresh identity for a request whose client gave none.
    pub fn fresh_tag() -> ClientTag {
        let client = (u128::from(rt::random_u64()) << 64) | u128::from(rt::random_u64());
        ClientTag { client, serial: 1 }
    }

    /// Stops serving: refuses new requests, stops raft and the peer listener, and closes the
    /// log cleanly.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_if_modified(|stop| !std::mem::replace(stop, true));
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::warn!(%error, "raft shutdown");
        }
        if let Err(error) = self.inner.durability.close().await {
            tracing::warn!(%error, "closing the log");
        }
    }

    /// Waits until this node's raft state changes, or `timeout` passes. Once raft has stopped
    /// nothing changes any more, so it sleeps the whole `timeout` rather than return at once.
    /// Calls `report` with the raft term now and after every change, until the node stops (for
    /// the log lines' `term`).
    pub async fn follow_term(&self, report: impl Fn(u64)) {
        let mut metrics = self.inner.raft.metrics();
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            report(metrics.borrow_and_update().current_term);
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn wait_for_change(&self, timeout: Duration) {
        let mut metrics = self.inner.raft.metrics();
        // openraft hands out clones of one receiver that never marked anything seen.
        drop(metrics.borrow_and_update());
        let deadline = rt::Instant::now() + timeout;
        if let Ok(Err(_closed)) = rt::timeout(timeout, metrics.changed()).await {
            rt::sleep_until(deadline).await;
        }
    }
}

fn raft_config(config: &NodeConfig) -> Result<openraft::Config, StartError> {
    let timings = config.timings;
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let raft_config = openraft::Config {
        cluster_name: "cairn".to_string(),
        heartbeat_interval: millis(timings.heartbeat),
        election_timeout_min: millis(timings.election_timeout_min),
        election_timeout_max: millis(timings.election_timeout_max),
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_every,
        replication_lag_threshold: config.snapshot_every * 2,
        enable_pre_vote: Some(true),
        // A leader restarted after a power loss must not resume without an election: its
        // persisted commit index may lag what it committed before, and a restored leader would
        // answer ReadIndex from it (found by the chaos suite, seed 4023). An election commits
        // a blank entry of the new term first, which re-establishes the commit index.
        enable_leader_restore: Some(false),
        ..openraft::Config::default()
    };
    raft_config.validate().map_err(|e| StartError::Raft(e.to_string()))
}
