//! The probes of real `cairn serve` processes: `/livez` and `/readyz` (with `?verbose`) as a
//! cluster forms, loses its quorum and gets it back, open to callers without a token.

#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{Exchanger, Method, Outgoing};
use serde_json::Value;
use support::{client, eventually, leader_index, start_static_cluster};

/// A probe's status and JSON body.
async fn probe(endpoint: &str, path: &str) -> Option<(u16, Value)> {
    let outgoing = Outgoing { method: Method::GET, path_and_query: path, headers: Vec::new(), body: Bytes::new() };
    let reply = Exchanger::default().send(endpoint, outgoing, Duration::from_secs(5)).await.ok()?;
    let body = serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{path}: not JSON ({e})"));
    Some((reply.status.as_u16(), body))
}

async fn until_status(endpoint: &str, path: &str, status: u16) -> Value {
    eventually(Duration::from_secs(30), &format!("{path} on {endpoint} answering {status}"), || async {
        probe(endpoint, path).await.filter(|(answered, _)| *answered == status).map(|(_, body)| body)
    })
    .await
}

/// Goal: `/readyz` says whether a node can serve linearizable reads now, `/livez` whether its
/// process serves; both are open, and `?verbose` names every check. Method: a three-node
/// cluster with ACLs on; every node becomes ready; the leader and one follower are killed, and
/// the survivor turns not ready (no leader, no recent contact) while staying alive; restarted,
/// the cluster is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_quorum_and_liveness_the_process() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut nodes = start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let leader = leader_index(&endpoints).await;
    client(endpoints.clone()).acl_bootstrap(cairn_http::client::Route::Any).await.expect("ACLs bootstrap");
    for endpoint in &endpoints {
        assert_eq!(until_status(endpoint, "/readyz", 200).await, serde_json::json!({"status": "ok"}));
        let verbose = until_status(endpoint, "/readyz?verbose", 200).await;
        let names: Vec<&str> =
            verbose["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["member", "leader", "leader_contact", "disk"], "{verbose}");
        let live = until_status(endpoint, "/livez?verbose", 200).await;
        assert_eq!(live["checks"].as_array().map(Vec::len), Some(2), "{live}");
        let (status, refused) = probe(endpoint, "/readyz?surprise").await.expect("an answer");
        assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("unknown_parameter")));
    }

    let survivor = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    nodes[leader].kill();
    nodes[other].kill();
    let not_ready = until_status(&endpoints[survivor], "/readyz", 503).await;
    assert_eq!(not_ready["error"]["code"], "not_ready", "{not_ready}");
    let failed: Vec<&str> =
        not_ready["checks"].as_array().unwrap().iter().map(|check| check["name"].as_str().unwrap()).collect();
    assert!(failed.contains(&"leader_contact"), "a node cut off from its quorum has no recent contact: {not_ready}");
    assert_eq!(until_status(&endpoints[survivor], "/livez", 200).await["status"], "ok");
    assert!(nodes[survivor].is_running());

    nodes[leader].restart();
    nodes[other].restart();
    for endpoint in &endpoints {
        until_status(endpoint, "/readyz", 200).await;
    }
}
