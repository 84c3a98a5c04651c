//! `GET /metrics` of real `cairn serve` processes: the names and label shapes Prometheus reads,
//! and values that move with the requests made.

#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{Exchanger, Method, Outgoing, Route};
use serde_json::Value;
use support::{client, eventually, leader_index, start_static_cluster};

/// Every family `/metrics` must list, as its `# TYPE` line names it.
const FAMILIES: [(&str, &str); 23] = [
    ("cairn_server_has_leader", "gauge"),
    ("cairn_server_is_leader", "gauge"),
    ("cairn_server_leader_changes_seen", "counter"),
    ("cairn_server_proposals_committed", "counter"),
    ("cairn_server_proposals_applied", "counter"),
    ("cairn_server_proposals_pending", "gauge"),
    ("cairn_server_proposals_failed", "counter"),
    ("cairn_disk_wal_fsync_duration_seconds", "histogram"),
    ("cairn_disk_wal_write_bytes", "counter"),
    ("cairn_snapshot_save_duration_seconds", "histogram"),
    ("cairn_store_keys", "gauge"),
    ("cairn_store_revision", "gauge"),
    ("cairn_http_requests", "counter"),
    ("cairn_http_request_duration_seconds", "histogram"),
    ("cairn_watch_streams", "gauge"),
    ("cairn_long_polls", "gauge"),
    ("cairn_peer_sent_bytes", "counter"),
    ("cairn_peer_round_trip_seconds", "histogram"),
    ("cairn_gossip_packets_received", "counter"),
    ("cairn_gossip_restarts", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_cpu_seconds", "counter"),
];

/// A GET's status, content type and body.
async fn get(endpoint: &str, path: &str) -> (u16, String, String) {
    let outgoing = Outgoing { method: Method::GET, path_and_query: path, headers: Vec::new(), body: Bytes::new() };
    let reply = Exchanger::default().send(endpoint, outgoing, Duration::from_secs(5)).await.expect("an answer");
    let content_type = reply.header("content-type").unwrap_or_default().to_string();
    (reply.status.as_u16(), content_type, String::from_utf8(reply.body.to_vec()).expect("UTF-8"))
}

async fn scrape(endpoint: &str) -> String {
    let (status, content_type, text) = get(endpoint, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// The value of the sample written exactly `sample` (name and labels); 0 when absent, as a
/// family member not yet created.
fn value(text: &str, sample: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// Goal: `/metrics` lists every family with its type, counts what happened under route
/// templates, and is open and strict about parameters. Method: a three-node cluster; scrape the
/// leader, write 20 keys and read them through it, hit an unknown path, scrape again and compare;
/// then bootstrap ACLs and scrape without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_writes_and_replication() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let nodes = start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let leader = leader_index(&endpoints).await;
    let cluster = client(endpoints.clone());
    let before = scrape(&endpoints[leader]).await;
    for family in FAMILIES {
        assert!(before.contains(&format!("# TYPE {} {}\n", family.0, family.1)), "{family:?} missing:\n{before}");
    }

    let keys = 20;
    for key in 0..keys {
        cluster.put(Route::Only(leader), &format!("m{key}"), Bytes::from("v"), None).await.expect("a write");
        cluster.get(Route::Only(leader), &format!("m{key}"), cairn_node::api::Consistency::Linearizable).await.unwrap();
    }
    let (status, _, _) = get(&endpoints[leader], "/no/such/route/42").await;
    assert_eq!(status, 404);
    let (status, _, refused) = get(&endpoints[leader], "/metrics?format=json").await;
    let refused: Value = serde_json::from_str(&refused).expect("a JSON error");
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("unknown_parameter")));

    let after = scrape(&endpoints[leader]).await;
    let grew = |sample: &str| value(&after, sample) - value(&before, sample);
    assert!(grew("cairn_server_proposals_committed_total") >= f64::from(keys), "{after}");
    assert!(grew("cairn_server_proposals_applied_total") >= f64::from(keys), "{after}");
    assert_eq!(value(&after, "cairn_server_proposals_pending"), 0.0);
    assert_eq!(value(&after, "cairn_server_is_leader"), 1.0);
    assert_eq!(value(&after, "cairn_server_has_leader"), 1.0);
    assert!(value(&after, "cairn_server_leader_changes_seen_total") >= 1.0);
    assert_eq!(value(&after, "cairn_store_keys"), f64::from(keys));
    assert!(value(&after, "cairn_store_revision") >= f64::from(keys));
    assert!(grew("cairn_disk_wal_write_bytes_total") > 0.0);
    assert!(grew("cairn_disk_wal_fsync_duration_seconds_count") > 0.0);

    let key_route = r#"route="/v1/kv/{*key}""#;
    let puts = format!(r#"cairn_http_requests_total{{{key_route},method="PUT",code="200"}}"#);
    let gets = format!(r#"cairn_http_requests_total{{{key_route},method="GET",code="200"}}"#);
    assert_eq!(grew(&puts), f64::from(keys), "{after}");
    assert_eq!(grew(&gets), f64::from(keys), "{after}");
    assert!(grew(&format!("cairn_http_request_duration_seconds_count{{{key_route}}}")) >= f64::from(2 * keys));
    let unmatched = r#"cairn_http_requests_total{route="unmatched",method="GET",code="404"}"#;
    assert_eq!(value(&after, unmatched), 1.0, "{after}");
    let bad_scrape = r#"cairn_http_requests_total{route="/metrics",method="GET",code="400"}"#;
    assert_eq!(value(&after, bad_scrape), 1.0, "{after}");
    assert!(!after.contains("route=\"/v1/kv/m1\""), "a raw path became a label value:\n{after}");
    assert!(!after.contains("/no/such/route"), "a raw path became a label value:\n{after}");

    for (index, node) in nodes.iter().enumerate().filter(|(index, _)| *index != leader) {
        let to = format!(r#"{{to="{}"}}"#, node.id);
        assert!(value(&after, &format!("cairn_peer_sent_bytes_total{to}")) > 0.0, "to node {}: {after}", index + 1);
        assert!(value(&after, &format!("cairn_peer_round_trip_seconds_count{to}")) > 0.0, "{after}");
        let endpoint = &endpoints[index];
        let follower = eventually(Duration::from_secs(10), "a follower applying every write", || async {
            let text = scrape(endpoint).await;
            (value(&text, "cairn_store_keys") == f64::from(keys)).then_some(text)
        })
        .await;
        assert_eq!(value(&follower, "cairn_server_is_leader"), 0.0);
        assert_eq!(value(&follower, "cairn_server_has_leader"), 1.0);
    }
    assert!(value(&after, "process_resident_memory_bytes") > 0.0);
    assert!(value(&after, "process_open_fds") > 0.0);

    cluster.acl_bootstrap(Route::Any).await.expect("ACLs bootstrap");
    let (status, _, denied) = get(&endpoints[leader], "/v1/kv/m1").await;
    assert_eq!(status, 401, "ACLs are on: {denied}");
    scrape(&endpoints[leader]).await;
}
