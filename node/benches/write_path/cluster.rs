//! Three nodes in this process, talking over loopback TCP, each with its data directory on a
//! tmpfs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_node::Node;
use cairn_node::api::Role;
use cairn_node::command::NodeId;
use cairn_node::config::{Bootstrap, NodeConfig};
use cairn_node::metrics::Metrics;
use cairn_node::raft::Member;
use cairn_node::storage::FsDisk;
use tempfile::TempDir;
use tokio::net::TcpListener;

const NODES: NodeId = 3;

/// How long a new cluster may take to elect a leader that every node knows.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// The HTTP address each node advertises. No HTTP actor runs: the bench calls the node itself.
const NO_HTTP: &str = "127.0.0.1:0";

/// Beyond any run, so no snapshot is taken. A snapshot writes the whole state, the watch history
/// of 100,000 events included; at the default interval (100,000 entries) one falls in some runs
/// and not in others, inside a single sample, and the figure would follow where it falls.
const SNAPSHOT_EVERY: u64 = 100_000_000;

/// Set so that the peer handshake is the authenticated one a deployment uses.
const CLUSTER_SECRET: &[u8] = b"write-path bench";

pub struct Cluster {
    nodes: Vec<Node>,
    /// Removed when the bench ends; it must outlive the nodes.
    data: TempDir,
}

impl Cluster {
    /// Starts the nodes from a static membership; each listens on a free loopback port.
    pub async fn start() -> Cluster {
        let data = scratch_dir();
        let mut listeners = BTreeMap::new();
        for id in 1..=NODES {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free loopback port");
            listeners.insert(id, listener);
        }
        let members: BTreeMap<NodeId, Member> = listeners
            .iter()
            .map(|(id, listener)| {
                let peer = listener.local_addr().expect("a bound listener has an address").to_string();
                (*id, Member { peer, http: NO_HTTP.to_string() })
            })
            .collect();
        let mut nodes = Vec::new();
        for (id, listener) in listeners {
            let mut config = NodeConfig::new(id, members[&id].clone(), data.path().join(format!("node-{id}")));
            config.bootstrap = Bootstrap::InitialCluster(members.clone());
            config.cluster_secret = Some(CLUSTER_SECRET.to_vec());
            config.snapshot_every = SNAPSHOT_EVERY;
            let node = Node::start(config, Arc::new(FsDisk::new()), Arc::new(Metrics::new()), listener).await;
            nodes.push(node.expect("a node starts"));
        }
        Cluster { nodes, data }
    }

    /// The leader, once every node knows it.
    pub async fn leader(&self) -> Node {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if let Some(leader) = self.agreed_leader() {
                return leader;
            }
            assert!(Instant::now() < deadline, "no leader within {LEADER_WAIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn agreed_leader(&self) -> Option<Node> {
        let id = self.nodes[0].leader()?;
        let leader = self.nodes.iter().find(|node| node.id() == id)?;
        let agreed = self.nodes.iter().all(|node| node.leader() == Some(id)) && leader.status().role == Role::Leader;
        agreed.then(|| leader.clone())
    }

    pub async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
        drop(self.data);
    }
}

/// A directory on `/dev/shm`, where an fdatasync returns at once: the figures are then cairn's
/// own work (CPU, hand-offs between tasks, the transport), which the disk's latency and its
/// noise would otherwise dwarf.
fn scratch_dir() -> TempDir {
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix("cairn-write-path-");
        builder
    };
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        return builder.tempdir_in(shm).expect("a directory on /dev/shm");
    }
    let dir = builder.tempdir().expect("a temporary directory");
    eprintln!(
        "note: /dev/shm is missing; the WALs are in {} instead, so the disk's syncs are part of the figures",
        dir.path().display()
    );
    dir
}
