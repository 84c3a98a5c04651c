//! Three real `cairn serve` processes on loopback, formed with `--join`, through a leader kill,
//! a restart, and a full stop and restart of every node.

#![cfg(not(madsim))]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{ClientError, Exchanger, Method, Outgoing, Route};
use cairn_node::api::{Consistency, MemberKind};
use cairn_node::raft::Member;
use support::{Process, client, eventually, leader_index, wait_for_voters};

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

    wait_for_voters(&cluster, 3).await;

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
    let nodes = support::start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let cluster = client(endpoints.clone());
    leader_index(&endpoints).await;
    cluster.put(Route::Only(0), "greeting", Bytes::from("hello"), None).await.expect("a write");
    let read = cluster.get(Route::Only(2), "greeting", Consistency::Linearizable).await.expect("a read");
    assert_eq!(read.value.map(|r| r.value), Some("hello".to_string()));
    let members = cluster.members(Route::Any).await.expect("members");
    assert_eq!(members.iter().filter(|m| m.voter).count(), 3);
}

/// Goal: a node that fell behind the purged log catches up from a snapshot, `?redirect` points
/// at the leader, and a removed node stops serving while its id can never be used again.
/// Method: a static three-node cluster snapshotting every 20 entries; one follower is killed
/// while 200 keys are written, then restarted; a write with `?redirect` goes to a follower;
/// finally the follower is removed and asked to rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_catches_up_by_snapshot_and_a_removed_node_stops_serving() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut nodes = support::start_static_cluster(root.path(), &["--snapshot-every", "20"]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let cluster = client(endpoints.clone());
    let leader = leader_index(&endpoints).await;
    let lagging = (leader + 1) % 3;

    nodes[lagging].kill();
    for i in 0..200 {
        cluster
            .put(Route::Only(leader), &format!("key-{i}"), Bytes::from(format!("value-{i}")), None)
            .await
            .expect("a write");
    }
    // Snapshots and purges run behind the writes; the node must come back behind a purge.
    eventually(Duration::from_secs(30), "the leader to purge the log a snapshot covers", || async {
        let status = cluster.status(Route::Only(leader)).await.ok()?;
        (status.value.purged_index >= 100).then_some(())
    })
    .await;
    nodes[lagging].restart();
    eventually(Duration::from_secs(30), "the lagging node to catch up", || async {
        let read = cluster.get(Route::Only(lagging), "key-199", Consistency::Stale).await.ok()?;
        (read.value?.value == "value-199").then_some(())
    })
    .await;
    // The node logs the installation after the state machine holds it, so the line may trail the read.
    eventually(Duration::from_secs(30), "the lagging node to log that it caught up from a snapshot", || async {
        nodes[lagging].log().contains("installed a snapshot").then_some(())
    })
    .await;

    let api = Exchanger::default();
    let put = Outgoing {
        method: Method::PUT,
        path_and_query: "/v1/kv/redirected?redirect",
        headers: Vec::new(),
        body: Bytes::from("x"),
    };
    let redirect = api.send(&endpoints[lagging], put, Duration::from_secs(5)).await.expect("the follower answers");
    assert_eq!(redirect.status, 307);
    assert_eq!(
        redirect.header("location"),
        Some(format!("http://{}/v1/kv/redirected?redirect", endpoints[leader]).as_str())
    );

    let removed_id = nodes[lagging].id;
    let members = cluster.remove_member(Route::Only(leader), removed_id).await.expect("the removal succeeds");
    assert!(members.iter().all(|member| member.id != removed_id));
    eventually(Duration::from_secs(10), "the removed node to refuse requests", || async {
        let get =
            Outgoing { method: Method::GET, path_and_query: "/v1/kv/key-1", headers: Vec::new(), body: Bytes::new() };
        let reply = api.send(&endpoints[lagging], get, Duration::from_secs(5)).await.ok()?;
        (reply.status == 410 && String::from_utf8_lossy(&reply.body).contains("node_removed")).then_some(())
    })
    .await;
    // The node refuses requests first and then logs why, so the line may trail the refusal.
    eventually(Duration::from_secs(10), "the removed node to say so in its log", || async {
        nodes[lagging].log().contains("removed from the cluster").then_some(())
    })
    .await;
    let member = Member { peer: nodes[lagging].peer.clone(), http: nodes[lagging].http.clone() };
    let rejoin = cluster.add_member(Route::Only(leader), removed_id, &member, MemberKind::Voter).await;
    assert!(matches!(&rejoin, Err(ClientError::Rejected { code, .. }) if code == "member_id_retired"), "{rejoin:?}");
    cluster
        .put(Route::Only(leader), "after-removal", Bytes::from("ok"), None)
        .await
        .expect("two voters still make progress");
}
