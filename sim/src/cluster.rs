//! Building and addressing a simulated cluster. Nodes live in slots: a slot has a madsim node
//! with a fixed IP (so its addresses never change) and a current incarnation (node id, config,
//! disk) that the node's init closure reads at every (re)start, so a slot can be given a fresh
//! node with a new id and an empty disk.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cairn_http::client::{CairnClient, ClientOptions, Route};
use cairn_node::api::Role;
use cairn_node::bugs::InjectedBugs;
use cairn_node::command::NodeId;
use cairn_node::config::{Bootstrap, NodeConfig};
use cairn_node::gossip::{GossipConfig, GossipTimings, derived_address};
use cairn_node::metrics::Metrics;
use cairn_node::node::AutopilotConfig;
use cairn_node::raft::Member;
use cairn_node::rt::Duration;
use cairn_node::storage::{Disk, SimDisk};
use cairn_node::store::events::HistoryLimits;
use cairn_node::tls::{ClientTls, DevCa, Identity, TlsFiles};
use madsim::runtime::{Handle, NodeHandle};

const HTTP_PORT: u16 = 7700;
const PEER_PORT: u16 = 7701;
/// Simulated fsync latency: data written but not yet synced is exposed to a crash this long.
/// Slower than a network hop, as on real machines, so that an acknowledgement sent before the
/// fsync it depends on reaches the client while the data can still be lost.
const SYNC_LATENCY: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(12));
/// One-way packet delay on a healthy network: a datacenter's, not madsim's default 1–10 ms.
pub(crate) const NETWORK_LATENCY: std::ops::Range<Duration> = Duration::from_micros(200)..Duration::from_millis(2);

/// AppendEntries in flight per follower, by node id: a deep pipeline that the simulated disks'
/// slow syncs fill, a short one, and stop-and-wait (production's default), so that which one
/// replicates depends on which node the seed makes leader.
fn appends_in_flight(id: NodeId) -> usize {
    const CHOICES: [usize; 3] = [64, 4, 1];
    CHOICES[(id as usize - 1) % CHOICES.len()]
}

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub bugs: InjectedBugs,
    /// Server-side request timeout; shorter than in production so chaos runs move quickly.
    pub request_timeout: Duration,
    pub snapshot_every: u64,
    /// How much event history watches can resume from.
    pub history: HistoryLimits,
    /// Gossip on every node (at the peer port plus one) with these timings; off when none.
    pub gossip: Option<GossipTimings>,
    /// Autopilot on every node (needs gossip); off when none.
    pub autopilot: Option<AutopilotConfig>,
    /// HTTPS only, with client certificates required, and mutual TLS between peers, on every
    /// node: certificates from a CA made inside the simulation, so they replay with the seed.
    pub tls: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            bugs: InjectedBugs::default(),
            request_timeout: Duration::from_secs(2),
            snapshot_every: 200,
            history: HistoryLimits::default(),
            gossip: None,
            autopilot: None,
            tls: false,
        }
    }
}

/// What a slot runs now: replaced by a fresh incarnation when its member is replaced.
#[derive(Clone)]
pub(crate) struct Incarnation {
    pub(crate) config: NodeConfig,
    /// Owned by the harness, so it outlives restarts of the node.
    pub(crate) disk: Arc<SimDisk>,
    /// Owned by the harness too, and handed from one incarnation of the slot to the next: the
    /// counters of every node started in the slot add up, as Prometheus' `increase()` adds them
    /// across the restarts of a target (here without the increments a real scraper loses
    /// between its last scrape and a crash).
    pub(crate) metrics: Arc<Metrics>,
}

/// One node position.
pub struct SimNode {
    pub ip: IpAddr,
    pub handle: NodeHandle,
    pub(crate) incarnation: Arc<Mutex<Incarnation>>,
}

impl SimNode {
    pub(crate) fn incarnation(&self) -> Incarnation {
        self.incarnation.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The id of the node currently in this slot.
    pub fn id(&self) -> NodeId {
        self.incarnation().config.id
    }

    pub fn disk(&self) -> Arc<SimDisk> {
        self.incarnation().disk
    }
}

/// A running simulated cluster.
pub struct SimCluster {
    pub(crate) runtime: Handle,
    pub(crate) slots: Vec<SimNode>,
    /// The madsim node client tasks run on, outside the cluster's subnet.
    pub(crate) clients: NodeHandle,
    pub(crate) options: ClusterOptions,
    next_id: AtomicU64,
    /// Intruders started on another node's data directory so far; each gets a spare machine.
    pub(crate) intruders: AtomicU8,
    pki: Option<Arc<SimPki>>,
}

/// Where a simulated node finds its TLS files on its disk.
const TLS_CERT: &str = "/tls/node.crt";
const TLS_KEY: &str = "/tls/node.key";
const TLS_CA: &str = "/tls/ca.crt";

/// The certificates of a cluster with TLS on.
struct SimPki {
    ca_pem: Vec<u8>,
    /// By slot: each valid for its slot's IP address, whichever node runs there.
    nodes: Vec<Identity>,
    client: ClientTls,
}

impl SimPki {
    fn new(slots: usize) -> SimPki {
        let ca = DevCa::new("simulated CA").expect("a CA is made");
        let nodes = (0..slots)
            .map(|slot| {
                ca.node(&format!("slot-{}", slot + 1), &[slot_ip(slot).to_string()]).expect("a node certificate")
            })
            .collect();
        let client_identity = ca.client("simulated client").expect("a client certificate");
        let client = ClientTls::from_pem(ca.cert_pem().as_bytes(), Some(&client_identity), std::path::Path::new("sim"))
            .expect("the client's TLS");
        SimPki { ca_pem: ca.cert_pem().as_bytes().to_vec(), nodes, client }
    }

    /// Puts `slot`'s files on `disk`, durably: a node reads them at every start.
    fn install(&self, slot: usize, disk: &SimDisk) {
        let identity = &self.nodes[slot];
        for (path, bytes) in [(TLS_CERT, &identity.cert_pem), (TLS_KEY, &identity.key_pem), (TLS_CA, &self.ca_pem)] {
            let path = std::path::Path::new(path);
            let written = disk
                .create_dir_all(path.parent().expect("a file in a directory"))
                .and_then(|()| disk.set_len(path, 0).or_else(|_| disk.write_at(path, 0, b"")))
                .and_then(|()| disk.write_at(path, 0, bytes))
                .and_then(|()| disk.sync(path))
                .and_then(|()| disk.sync_dir(path.parent().expect("a file in a directory")));
            written.expect("a simulated disk takes the TLS files");
        }
    }
}

pub(crate) fn slot_ip(slot: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, u8::try_from(slot + 1).expect("at most 254 slots")))
}

impl SimCluster {
    /// Starts `options.nodes` nodes (ids 1..=n) that form a cluster from a static membership.
    pub async fn start(options: ClusterOptions) -> SimCluster {
        let runtime = Handle::current();
        madsim::net::NetSim::current().update_config(|config| config.send_latency = NETWORK_LATENCY);
        let members: BTreeMap<NodeId, Member> =
            (0..options.nodes).map(|slot| (slot as NodeId + 1, member(slot))).collect();
        let clients = runtime.create_node().name("clients").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1))).build();
        let next_id = AtomicU64::new(options.nodes as u64 + 1);
        let pki = options.tls.then(|| Arc::new(SimPki::new(options.nodes)));
        let mut cluster =
            SimCluster { runtime, slots: Vec::new(), clients, options, next_id, intruders: AtomicU8::new(0), pki };
        for slot in 0..cluster.options.nodes {
            let config = cluster.config(slot as NodeId + 1, slot, Bootstrap::InitialCluster(members.clone()));
            let incarnation = Incarnation { config, disk: Arc::new(fresh_disk()), metrics: Arc::new(Metrics::new()) };
            let node = cluster.create_node(slot, incarnation);
            cluster.slots.push(node);
        }
        cluster
    }

    pub(crate) fn config(&self, id: NodeId, slot: usize, bootstrap: Bootstrap) -> NodeConfig {
        let mut config = NodeConfig::new(id, member(slot), PathBuf::from("/data"));
        config.bootstrap = bootstrap;
        config.request_timeout = self.options.request_timeout;
        config.snapshot_every = self.options.snapshot_every;
        config.appends_in_flight = appends_in_flight(id);
        config.bugs = self.options.bugs;
        config.history = self.options.history;
        config.gossip = self.options.gossip.map(|timings| {
            let address = derived_address(&config.member.peer).expect("simulated peer addresses have a port");
            GossipConfig { timings, ..GossipConfig::new(address) }
        });
        config.autopilot = self.options.autopilot;
        config.tls = self.pki.as_ref().map(|_| TlsFiles {
            cert: PathBuf::from(TLS_CERT),
            key: PathBuf::from(TLS_KEY),
            trusted_ca: Some(PathBuf::from(TLS_CA)),
            client_cert_auth: true,
        });
        config.peer_tls = config.tls.clone();
        config
    }

    /// How clients reach the nodes when they speak only HTTPS.
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.pki.as_ref().map(|pki| pki.client.clone())
    }

    /// The CA certificate (PEM) of a cluster with TLS on, for clients made outside the harness.
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.pki.as_ref().map(|pki| pki.ca_pem.clone())
    }

    pub(crate) fn fresh_id(&self) -> NodeId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn create_node(&self, slot: usize, incarnation: Incarnation) -> SimNode {
        let incarnation = Arc::new(Mutex::new(incarnation));
        let current = incarnation.clone();
        let pki = self.pki.clone();
        let handle = self
            .runtime
            .create_node()
            .name(format!("slot-{}", slot + 1))
            .ip(slot_ip(slot))
            .init(move || {
                let Incarnation { config, disk, metrics } =
                    current.lock().unwrap_or_else(PoisonError::into_inner).clone();
                if let Some(pki) = &pki {
                    pki.install(slot, &disk);
                }
                async move {
                    let launched = cairn_http::launch(config, disk, metrics).await.expect("a simulated node starts");
                    std::future::pending::<()>().await;
                    drop(launched);
                }
            })
            .build();
        SimNode { ip: slot_ip(slot), handle, incarnation }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn node(&self, slot: usize) -> &SimNode {
        &self.slots[slot]
    }

    /// Every slot's HTTP address, in slot order.
    pub fn http_endpoints(&self) -> Vec<String> {
        (0..self.slots.len()).map(|slot| member(slot).http).collect()
    }

    /// Runs `work` with a fresh client on the clients' node and returns its result.
    pub async fn with_client<T, F, Fut>(&self, options: ClientOptions, work: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(CairnClient) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let client = CairnClient::with_tls(self.http_endpoints(), options, self.client_tls());
        self.on_clients(work(client)).await
    }

    /// Runs `work` on the clients' node (outside the cluster's subnet) and returns its result.
    pub async fn on_clients<T, Fut>(&self, work: Fut) -> T
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        self.clients.spawn(work).await.expect("the client task completes")
    }

    /// Every slot's `GET /metrics`, in slot order, or why it could not be read.
    pub async fn scrape_metrics(&self) -> Vec<Result<String, String>> {
        let slots = self.slots.len();
        self.with_client(status_options(), move |client| async move {
            let mut scrapes = Vec::new();
            for slot in 0..slots {
                scrapes.push(client.metrics(Route::Only(slot)).await.map_err(|error| error.to_string()));
            }
            scrapes
        })
        .await
    }

    /// The slot whose node says it leads, asking each over HTTP.
    pub async fn leader(&self) -> Option<usize> {
        let slots = self.slots.len();
        self.with_client(status_options(), move |client| async move {
            for slot in 0..slots {
                if let Ok(status) = client.status(Route::Only(slot)).await
                    && status.value.role == Role::Leader
                {
                    return Some(slot);
                }
            }
            None
        })
        .await
    }

    /// Waits until some node leads.
    pub async fn await_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = cairn_node::rt::Instant::now() + timeout;
        while cairn_node::rt::Instant::now() < deadline {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            cairn_node::rt::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

pub(crate) fn member(slot: usize) -> Member {
    let ip = slot_ip(slot);
    Member { peer: format!("{ip}:{PEER_PORT}"), http: format!("{ip}:{HTTP_PORT}") }
}

pub(crate) fn fresh_disk() -> SimDisk {
    SimDisk::new(madsim::rand::random()).with_sync_latency(SYNC_LATENCY.0, SYNC_LATENCY.1)
}

pub(crate) fn status_options() -> ClientOptions {
    ClientOptions { attempt_timeout: Duration::from_millis(500), call_timeout: Duration::from_secs(1) }
}
