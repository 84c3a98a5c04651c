//! TLS with real `cairn serve` processes and certificates from `cairn tls init`: an HTTPS-only
//! cluster with mutual TLS between peers formed through `--join`, a peer of another CA refused,
//! client certificate authentication, and a certificate renewed without a restart.

#![cfg(not(madsim))]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{CairnClient, ClientError, ClientOptions, Route};
use cairn_node::api::Consistency;
use cairn_node::storage::FsDisk;
use cairn_node::tls::ClientTls;
use support::{Process, eventually};

/// Runs `cairn tls init DIR --nodes N`; returns DIR.
fn tls_init(root: &Path, name: &str, nodes: u32) -> PathBuf {
    let dir = root.join(name);
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["tls", "init", "--nodes", &nodes.to_string()])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("cairn runs");
    assert!(output.status.success(), "tls init: {}", String::from_utf8_lossy(&output.stderr));
    dir
}

/// `--cert-file`, `--key-file` and `--trusted-ca-file` for node `id` from `certs`, and the
/// same files for the peer port from `peer_certs`.
fn tls_flags_with_peers(certs: &Path, peer_certs: &Path, id: u64) -> Vec<String> {
    let path = |dir: &Path, name: String| dir.join(name).to_str().expect("a UTF-8 path").to_string();
    let mut flags = Vec::new();
    for (prefix, dir) in [("", certs), ("peer-", peer_certs)] {
        flags.extend([
            format!("--{prefix}cert-file"),
            path(dir, format!("node-{id}.crt")),
            format!("--{prefix}key-file"),
            path(dir, format!("node-{id}.key")),
            format!("--{prefix}trusted-ca-file"),
            path(dir, "ca.crt".to_string()),
        ]);
    }
    flags
}

fn tls_flags(certs: &Path, id: u64) -> Vec<String> {
    tls_flags_with_peers(certs, certs, id)
}

fn https_client(endpoints: Vec<String>, certs: &Path, identity: Option<&str>) -> CairnClient {
    let identity = identity.map(|name| (certs.join(format!("{name}.crt")), certs.join(format!("{name}.key"))));
    let identity = identity.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
    let tls = ClientTls::from_files(&FsDisk::new(), &certs.join("ca.crt"), identity).expect("the client's TLS loads");
    let options = ClientOptions { attempt_timeout: Duration::from_secs(3), call_timeout: Duration::from_secs(6) };
    CairnClient::with_tls(endpoints, options, Some(tls))
}

fn plain_client(endpoints: Vec<String>) -> CairnClient {
    let options = ClientOptions { attempt_timeout: Duration::from_secs(3), call_timeout: Duration::from_secs(6) };
    CairnClient::new(endpoints, options)
}

async fn wait_for_voters(cluster: &CairnClient, count: usize) {
    eventually(Duration::from_secs(30), &format!("{count} voters"), || async {
        let members = cluster.members(Route::Any).await.ok()?;
        (members.iter().filter(|m| m.voter).count() == count).then_some(())
    })
    .await;
}

/// Goal: a newcomer's three commands give a working HTTPS cluster. Method: `cairn tls init`,
/// node 1 alone, node 2 joining through node 1's HTTPS port (the join presents node 2's
/// certificate); a write and a linearizable read through an HTTPS client; a plain HTTP client
/// and one that trusts another CA get nothing and never hang; the CLI reads over HTTPS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_from_cairn_tls_init_speaks_only_https() {
    let root = tempfile::tempdir().unwrap();
    let certs = tls_init(root.path(), "certs", 2);
    let first = Process::start(root.path(), 1, &tls_flags(&certs, 1));
    let mut joiner_flags = tls_flags(&certs, 2);
    joiner_flags.extend(["--join".to_string(), first.http.clone()]);
    let second = Process::start(root.path(), 2, &joiner_flags);
    let endpoints = vec![first.http.clone(), second.http.clone()];
    let cluster = https_client(endpoints.clone(), &certs, None);
    wait_for_voters(&cluster, 2).await;
    cluster.put(Route::Any, "greeting", Bytes::from("hello"), None).await.expect("a write over HTTPS");
    let read = cluster.get(Route::Only(1), "greeting", Consistency::Linearizable).await.expect("a read over HTTPS");
    assert_eq!(read.value.map(|record| record.value), Some("hello".to_string()));

    let plain = plain_client(endpoints.clone()).get(Route::Any, "greeting", Consistency::Stale).await;
    assert!(matches!(plain, Err(ClientError::Unavailable { .. })), "{plain:?}");
    let stranger = tls_init(root.path(), "stranger", 1);
    let untrusting =
        https_client(endpoints.clone(), &stranger, None).get(Route::Any, "greeting", Consistency::Stale).await;
    assert!(
        matches!(&untrusting, Err(ClientError::Unavailable { reason }) if reason.contains("TLS")),
        "{untrusting:?}"
    );

    let cli = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["get", "greeting", "--endpoints", &format!("https://{}", first.http), "--cacert"])
        .arg(certs.join("ca.crt"))
        .output()
        .expect("cairn runs");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(String::from_utf8_lossy(&cli.stdout).trim(), "hello");
}

/// Goal: a peer whose certificate does not chain to the cluster's CA is refused. Method: node 2
/// joins through node 1's HTTPS port with a good HTTP certificate but a peer certificate (and
/// peer CA) of another CA: node 1 adds it as a learner, but no entry reaches it, it is never
/// promoted, and node 1 says why in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_certificate_of_another_ca_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let certs = tls_init(root.path(), "certs", 2);
    let stranger = tls_init(root.path(), "stranger", 2);
    let first = Process::start(root.path(), 1, &tls_flags(&certs, 1));
    let cluster = https_client(vec![first.http.clone()], &certs, None);
    eventually(Duration::from_secs(30), "a first write", || async {
        cluster.put(Route::Any, "greeting", Bytes::from("hello"), None).await.ok()
    })
    .await;
    let mut flags = tls_flags_with_peers(&certs, &stranger, 2);
    flags.extend(["--join".to_string(), first.http.clone()]);
    let second = Process::start(root.path(), 2, &flags);
    eventually(Duration::from_secs(30), "node 2 added as a learner", || async {
        let members = cluster.members(Route::Any).await.ok()?;
        members.iter().any(|member| member.id == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let on_second = https_client(vec![second.http.clone()], &certs, None);
    let read = on_second.get(Route::Only(0), "greeting", Consistency::Stale).await;
    assert!(!matches!(&read, Ok(answer) if answer.value.is_some()), "an entry reached node 2: {read:?}");
    let members = cluster.members(Route::Any).await.expect("the members");
    assert!(members.iter().any(|member| member.id == 2 && !member.voter), "{members:?}");
    assert!(first.log().contains("invalid peer certificate"), "{}", first.log());
}

/// Goal: `--client-cert-auth` serves only clients with a certificate the trusted CA signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_auth_serves_only_clients_the_ca_signed() {
    let root = tempfile::tempdir().unwrap();
    let certs = tls_init(root.path(), "certs", 1);
    let mut flags = tls_flags(&certs, 1);
    flags.push("--client-cert-auth".to_string());
    let node = Process::start(root.path(), 1, &flags);
    let endpoints = vec![node.http.clone()];
    let signed = https_client(endpoints.clone(), &certs, Some("client"));
    eventually(Duration::from_secs(30), "a write with a client certificate", || async {
        signed.put(Route::Any, "k", Bytes::from("v"), None).await.ok()
    })
    .await;
    let anonymous = https_client(endpoints.clone(), &certs, None).get(Route::Any, "k", Consistency::Stale).await;
    assert!(matches!(anonymous, Err(ClientError::Unavailable { .. })), "{anonymous:?}");
    let stranger = tls_init(root.path(), "stranger", 1);
    std::fs::copy(certs.join("ca.crt"), stranger.join("ca.crt.trusted")).unwrap();
    std::fs::rename(stranger.join("ca.crt.trusted"), stranger.join("ca.crt")).unwrap();
    let foreign = https_client(endpoints, &stranger, Some("client")).get(Route::Any, "k", Consistency::Stale).await;
    assert!(matches!(foreign, Err(ClientError::Unavailable { .. })), "a certificate of another CA: {foreign:?}");
}

/// Goal: SIGHUP re-reads the TLS files of both ports at once and never stops the node (without
/// a handler, SIGHUP would kill it). Method: SIGHUP, then the log line of each port, then a
/// write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tls_files_and_keeps_the_node_serving() {
    let root = tempfile::tempdir().unwrap();
    let certs = tls_init(root.path(), "certs", 1);
    let mut node = Process::start(root.path(), 1, &tls_flags(&certs, 1));
    let client = https_client(vec![node.http.clone()], &certs, None);
    eventually(Duration::from_secs(30), "a first write", || async {
        client.put(Route::Any, "k", Bytes::from("v"), None).await.ok()
    })
    .await;
    node.signal("HUP");
    eventually(Duration::from_secs(10), "the SIGHUP log lines of both ports", || async {
        let log = node.log();
        let both = ["HTTP", "peer"]
            .iter()
            .all(|port| log.contains(&format!("SIGHUP: the {port} port's TLS files are unchanged")));
        both.then_some(())
    })
    .await;
    assert!(node.wait_for_exit(Duration::from_millis(300)).is_none(), "SIGHUP stopped the node:\n{}", node.log());
    client.put(Route::Any, "k", Bytes::from("w"), None).await.expect("the node serves after SIGHUP");
}

/// Goal: a renewal is not an outage. Method: a node serves with one CA's certificate; its files
/// are replaced by another CA's; without a restart, clients trusting the new CA are served and
/// clients trusting only the old one are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let live = tls_init(root.path(), "live", 1);
    let old = root.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::copy(live.join("ca.crt"), old.join("ca.crt")).unwrap();
    let node = Process::start(root.path(), 1, &tls_flags(&live, 1));
    let endpoints = vec![node.http.clone()];
    let before = https_client(endpoints.clone(), &old, None);
    eventually(Duration::from_secs(30), "a write before the renewal", || async {
        before.put(Route::Any, "k", Bytes::from("v"), None).await.ok()
    })
    .await;

    let renewed = tls_init(root.path(), "renewed", 1);
    for name in ["node-1.key", "node-1.crt", "ca.crt"] {
        let staged = live.join(format!("{name}.new"));
        std::fs::copy(renewed.join(name), &staged).unwrap();
        std::fs::rename(&staged, live.join(name)).unwrap();
    }
    let after = https_client(endpoints.clone(), &renewed, None);
    eventually(Duration::from_secs(10), "the renewed certificate in force", || async {
        after.get(Route::Any, "k", Consistency::Stale).await.ok()
    })
    .await;
    let stale_trust = https_client(endpoints, &old, None).get(Route::Any, "k", Consistency::Stale).await;
    assert!(matches!(stale_trust, Err(ClientError::Unavailable { .. })), "{stale_trust:?}");
    assert!(node.log().contains("TLS certificate files changed"), "{}", node.log());
}
