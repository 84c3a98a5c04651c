//! Three real `cairn serve` processes on loopback, formed with `--join`, through a leader kill,
//! a restart, and a full stop and restart of every node.

#![cfg(not(madsim))]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::Route;
use cairn_node::api::Consistency;
use support::{Process, client, eventually, leader_index};

/// Goal: the seed-style three-node example from the README works as documented, and no
/// acknowledged write is ever lost. Method: node 1 bootstraps, node 2 joins through node 1 and
/// node 3 through node 2; writes go through a follower, reads to another node; then the leader
/// is SIGKILLed, the survivors elect a new one and keep accepting writes, the killed node
/// restarts and catches up, and finally all three are killed and restarted and every
/// acknowledged write is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_cluster_survives_leader_kill_restart_and_full_restart() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut nodes = vec![Process::start(root.path(), 1, &[])];
    let join_1 = vec!["--join".to_string(), nodes[0].http.clone()];
    nodes.push(Process::start(root.path(), 2, &join_1));
    let join_2 = vec!["--join".to_string(), nodes[1].http.clone()];
    nodes.push(Process::start(root.path(), 3, &join_2));
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let cluster = client(endpoints.clone());

    eventually(Duration::from_secs(30), "three voters", || async {
        let members = cluster.members(Route::Any).await.ok()?;
        (members.iter().filter(|m| m.voter).count() == 3).then_some(())
    })
    .await;

    let mut acknowledged = BTreeMap::new();
    let leader = leader_index(&endpoints).await;
    let follower = (leader + 1) % 3;
    for i in 0..20 {
        let (key, value) = (format!("key-{i}"), format!("value-{i}"));
        let written = cluster.put(Route::Only(follower), &key, Bytes::from(value.clone()), None).await;
        assert!(written.is_ok(), "a write through follower {follower} failed: {written:?}");
        acknowledged.insert(key, value);
    }
    let reader = (follower + 1) % 3;
    for (key, value) in &acknowledged {
        let read = cluster.get(Route::Only(reader), key, Consistency::Linearizable).await.expect("a linearizable read");
        assert_eq!(read.value.map(|r| r.value), Some(value.clone()), "node {reader} read {key}");
    }

    nodes[leader].kill();
    let survivors: Vec<String> =
        endpoints.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, e)| e.clone()).collect();
    let survivor_client = client(survivors.clone());
    leader_index(&survivors).await;
    for i in 20..40 {
        let (key, value) = (format!("key-{i}"), format!("value-{i}"));
        survivor_client
            .put(Route::Any, &key, Bytes::from(value.clone()), None)
            .await
            .expect("writes continue after the leader died");
        acknowledged.insert(key, value);
    }

    nodes[leader].restart();
    let last_key = "key-39";
    eventually(Duration::from_secs(30), "the restarted node catching up", || async {
        let read = cluster.get(Route::Only(leader), last_key, Consistency::Stale).await.ok()?;
        (read.value?.value == "value-39").then_some(())
    })
    .await;

    for node in &mut nodes {
        node.kill();
    }
    for node in &mut nodes {
        node.restart();
    }
    leader_index(&endpoints).await;
    for (key, value) in &acknowledged {
        let read = cluster.get(Route::Any, key, Consistency::Linearizable).await;
        let read = read.unwrap_or_else(|e| panic!("reading {key} after a full restart: {e}\n{}", nodes[0].log()));
        assert_eq!(read.value.map(|r| r.value), Some(value.clone()), "{key} after a full restart");
    }
}

/// Goal: `--initial-cluster` forms a cluster with no join calls, etcd style. Method: three
/// processes start with the same list; a write through one node is read from another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_initial_cluster_forms_without_joins() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let addresses: Vec<(String, String)> = (0..3).map(|_| (support::free_address(), support::free_address())).collect();
    let list = addresses
        .iter()
        .enumerate()
        .map(|(i, (peer, http))| format!("{}={peer}@{http}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let _nodes: Vec<Process> = addresses
        .iter()
        .enumerate()
        .map(|(i, (peer, http))| {
            Process::start_at(root.path(), i as u64 + 1, http, peer, &["--initial-cluster".to_string(), list.clone()])
        })
        .collect();
    let endpoints: Vec<String> = addresses.iter().map(|(_, http)| http.clone()).collect();
    let cluster = client(endpoints.clone());
    leader_index(&endpoints).await;
    cluster.put(Route::Only(0), "greeting", Bytes::from("hello"), None).await.expect("a write");
    let read = cluster.get(Route::Only(2), "greeting", Consistency::Linearizable).await.expect("a read");
    assert_eq!(read.value.map(|r| r.value), Some("hello".to_string()));
    let members = cluster.members(Route::Any).await.expect("members");
    assert_eq!(members.iter().filter(|m| m.voter).count(), 3);
}
