//! Gossip between three real `cairn serve` processes on loopback (tokio mode), each on its
//! default gossip address (the peer port plus one): `GET /v1/cluster` shows all alive, a
//! SIGKILLed node is shown down within the bound measured in the simulator, and comes back alive
//! with a new generation after a restart. Stale reads carry their staleness headers, keep
//! working without a leader, and are refused beyond `max_stale`.

#![cfg(not(madsim))]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_http::client::{Exchanger, Method, Outgoing, Reply, Route};
use cairn_node::api::ClusterView;
use cairn_node::gossip::{PeerState, derived_address};
use support::{Process, client, eventually, wait_for_voters};

/// The simulator's bound for showing a dead node down (tests/sim_gossip.rs), plus slack for a
/// loaded machine.
const DOWN_WITHIN: Duration = Duration::from_secs(12);

async fn view(endpoint: &str) -> Option<ClusterView> {
    let cluster = client(vec![endpoint.to_string()]);
    cluster.cluster(Route::Only(0)).await.ok()
}

fn state_of(view: &ClusterView, id: u64) -> Option<(PeerState, u64)> {
    let node = view.nodes.iter().find(|node| node.id == id)?;
    node.gossip.as_ref().map(|gossip| (gossip.state, gossip.generation))
}

async fn get(endpoint: &str, path_and_query: &str) -> Reply {
    let request = Outgoing { method: Method::GET, path_and_query, headers: Vec::new(), body: Bytes::new() };
    Exchanger::default().send(endpoint, request, Duration::from_secs(5)).await.expect("the node answers")
}

/// Goal: gossip membership works between real processes, as documented. Method: start three
/// joined nodes (the third joins through node 1's gossip address); wait until node 1 shows all
/// alive, every one a raft member; SIGKILL node 3 and time until node 1 shows
/// it down; restart it and time until it is alive with generation 2. Foreign and malformed
/// datagrams are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_see_a_killed_node_down_and_a_restarted_one_alive() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut nodes = vec![Process::start(root.path(), 1, &[])];
    nodes.push(Process::start(root.path(), 2, &["--join".to_string(), nodes[0].http.clone()]));
    // Node 3 is given only node 1's gossip address: it learns where to send its join by gossip.
    let gossip_1 = derived_address(&nodes[0].peer).expect("a loopback peer address").to_string();
    nodes.push(Process::start(root.path(), 3, &["--join".to_string(), gossip_1]));
    let observer = nodes[0].http.clone();
    eventually(Duration::from_secs(30), "all three alive in node 1's view", || async {
        let view = view(&observer).await?;
        let alive = (1..=3).filter(|id| state_of(&view, *id).is_some_and(|(state, _)| state == PeerState::Alive));
        (alive.count() == 3 && view.nodes.iter().all(|node| node.raft.is_some())).then_some(())
    })
    .await;

    let gossip_address = view(&observer).await.unwrap().nodes[0].gossip_addr.clone().expect("a gossip address");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    socket.send_to(b"not gossip", &gossip_address).expect("a datagram is sent");
    let mut foreign = b"CG\x01\x00\x01\x02\x03\x04\x05\x06\x07".to_vec();
    foreign.extend_from_slice(&[0; 40]);
    socket.send_to(&foreign, &gossip_address).expect("a datagram is sent");
    eventually(Duration::from_secs(5), "the datagrams counted as dropped", || async {
        let counters = view(&observer).await?.gossip_counters?;
        (counters.malformed >= 1 && counters.foreign_cluster >= 1).then_some(())
    })
    .await;

    nodes[2].kill();
    let killed = Instant::now();
    eventually(DOWN_WITHIN, "node 3 shown down", || async {
        (state_of(&view(&observer).await?, 3)?.0 == PeerState::Down).then_some(())
    })
    .await;
    eprintln!("node 3 shown down {} ms after SIGKILL", killed.elapsed().as_millis());

    nodes[2].restart();
    let restarted = Instant::now();
    eventually(Duration::from_secs(15), "node 3 alive again with generation 2", || async {
        (state_of(&view(&observer).await?, 3)? == (PeerState::Alive, 2)).then_some(())
    })
    .await;
    eprintln!("node 3 shown alive {} ms after restart", restarted.elapsed().as_millis());
}

/// Goal: stale reads say how stale they are, work without a leader, and honour their bounds.
/// Method: write through a three-node cluster; a stale read on a follower carries the leader,
/// the last contact and lag 0; then two nodes are killed, and the survivor still answers stale
/// reads, but refuses `max_stale=1s` once it has not heard from a leader for longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_carry_staleness_and_honour_their_bounds() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut nodes = vec![Process::start(root.path(), 1, &[])];
    let join = vec!["--join".to_string(), nodes[0].http.clone()];
    nodes.push(Process::start(root.path(), 2, &join));
    nodes.push(Process::start(root.path(), 3, &join));
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let cluster = client(endpoints.clone());
    wait_for_voters(&cluster, 3).await;
    cluster.put(Route::Any, "k", Bytes::from("v"), None).await.expect("the write succeeds");

    let survivor = endpoints[2].clone();
    let fresh = eventually(Duration::from_secs(10), "a fresh stale read on node 3", || async {
        let reply = get(&survivor, "/v1/kv/k?consistency=stale&max_lag=0&max_stale=5s").await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    assert!(fresh.header("x-cairn-known-leader").is_some(), "{:?}", fresh.headers);
    assert!(fresh.header("x-cairn-last-contact").is_some(), "{:?}", fresh.headers);
    assert_eq!(fresh.header("x-cairn-lag"), Some("0"));
    let invalid = get(&survivor, "/v1/kv/k?consistency=stale&max_stale=soon").await;
    assert_eq!(invalid.status, 400);
    assert!(String::from_utf8_lossy(&invalid.body).contains("invalid_parameter"));

    nodes[0].kill();
    nodes[1].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unbounded = get(&survivor, "/v1/kv/k?consistency=stale").await;
    assert_eq!(unbounded.status, 200, "stale reads work without a leader");
    let contact: u64 = unbounded.header("x-cairn-last-contact").expect("a last contact").parse().unwrap();
    assert!(contact >= 1000, "last contact {contact} ms");
    let bounded = get(&survivor, "/v1/kv/k?consistency=stale&max_stale=1s").await;
    assert_eq!(bounded.status, 503);
    assert!(String::from_utf8_lossy(&bounded.body).contains("too_stale"));
}
