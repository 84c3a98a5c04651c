//! Building and addressing a simulated cluster.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use cairn_http::client::{CairnClient, ClientOptions, Route};
use cairn_node::api::Role;
use cairn_node::bugs::InjectedBugs;
use cairn_node::command::NodeId;
use cairn_node::config::{Bootstrap, NodeConfig, RaftTimings};
use cairn_node::raft::Member;
use cairn_node::rt::Duration;
use cairn_node::storage::SimDisk;
use madsim::runtime::{Handle, NodeHandle};

const HTTP_PORT: u16 = 7700;
const PEER_PORT: u16 = 7701;

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: u64,
    pub bugs: InjectedBugs,
    /// Server-side request timeout; shorter than in production so chaos runs move quickly.
    pub request_timeout: Duration,
    pub snapshot_every: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            bugs: InjectedBugs::default(),
            request_timeout: Duration::from_secs(2),
            snapshot_every: 200,
        }
    }
}

/// One simulated node: its madsim handle, its disk (which outlives restarts) and its config.
pub struct SimNode {
    pub id: NodeId,
    pub ip: IpAddr,
    pub handle: NodeHandle,
    pub disk: Arc<SimDisk>,
    pub config: NodeConfig,
}

/// A running simulated cluster.
pub struct SimCluster {
    pub(crate) runtime: Handle,
    pub(crate) nodes: BTreeMap<NodeId, SimNode>,
    next_client: u8,
}

/// The IP of node `id`; client nodes live in another subnet.
fn node_ip(id: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, u8::try_from(id).expect("at most 255 nodes")))
}

impl SimCluster {
    /// Starts `options.nodes` nodes that form a cluster from a static initial membership.
    pub async fn start(options: ClusterOptions) -> SimCluster {
        let runtime = Handle::current();
        let members: BTreeMap<NodeId, Member> = (1..=options.nodes)
            .map(|id| {
                let ip = node_ip(id);
                (id, Member { peer: format!("{ip}:{PEER_PORT}"), http: format!("{ip}:{HTTP_PORT}") })
            })
            .collect();
        let mut cluster = SimCluster { runtime, nodes: BTreeMap::new(), next_client: 1 };
        for (&id, member) in &members {
            let mut config = NodeConfig::new(id, member.clone(), PathBuf::from(format!("/data/{id}")));
            config.bootstrap = Bootstrap::InitialCluster(members.clone());
            config.timings = RaftTimings::default();
            config.request_timeout = options.request_timeout;
            config.snapshot_every = options.snapshot_every;
            config.bugs = options.bugs;
            cluster.add_node(config);
        }
        cluster
    }

    /// Creates a madsim node running `config` on a fresh simulated disk.
    pub fn add_node(&mut self, config: NodeConfig) -> NodeId {
        let id = config.id;
        let ip = node_ip(id);
        let disk = Arc::new(SimDisk::new(madsim::rand::random()));
        let (init_config, init_disk) = (config.clone(), disk.clone());
        let handle = self
            .runtime
            .create_node()
            .name(format!("node-{id}"))
            .ip(ip)
            .init(move || {
                let (config, disk) = (init_config.clone(), init_disk.clone());
                async move {
                    let launched = cairn_http::launch(config, disk).await.expect("a simulated node starts");
                    std::future::pending::<()>().await;
                    drop(launched);
                }
            })
            .build();
        self.nodes.insert(id, SimNode { id, ip, handle, disk, config });
        id
    }

    /// A new madsim node for client tasks, outside the cluster's subnet.
    pub fn client_node(&mut self) -> NodeHandle {
        let index = self.next_client;
        self.next_client += 1;
        self.runtime
            .create_node()
            .name(format!("client-{index}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, index)))
            .build()
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn node(&self, id: NodeId) -> &SimNode {
        &self.nodes[&id]
    }

    /// Every node's HTTP address, in id order.
    pub fn http_endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|node| node.config.member.http.clone()).collect()
    }

    /// A client over every node; call it from a client node's task.
    pub fn client(&self, options: ClientOptions) -> CairnClient {
        CairnClient::new(self.http_endpoints(), options)
    }

    /// The node that says it is the leader, asking each node over HTTP. `None` if none does.
    pub async fn leader(&self, client: &CairnClient) -> Option<NodeId> {
        for (index, id) in self.ids().into_iter().enumerate() {
            if let Ok(status) = client.status(Route::Only(index)).await
                && status.value.role == Role::Leader
            {
                return Some(id);
            }
        }
        None
    }

    /// Waits until some node is leader and every live node agrees on it.
    pub async fn await_leader(&self, client: &CairnClient, timeout: Duration) -> Option<NodeId> {
        let deadline = cairn_node::rt::Instant::now() + timeout;
        while cairn_node::rt::Instant::now() < deadline {
            if let Some(leader) = self.leader(client).await {
                return Some(leader);
            }
            cairn_node::rt::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}
