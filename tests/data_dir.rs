//! A data directory belongs to one node of one cluster, with real `cairn serve` processes: a
//! second process on a directory, a directory started under another id, joined to another
//! cluster or given a disagreeing `--initial-cluster` are each refused with their message and
//! leave the directory as it was; a node killed while holding the lock restarts.

#![cfg(not(madsim))]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{CairnClient, Route};
use cairn_node::api::Consistency;
use support::{Process, client, free_address, leader_index};

/// Runs `cairn serve` with `flags` expecting it to refuse to start; returns its stderr.
fn refused_start(flags: &[String]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("serve")
        .args(flags)
        .env("CAIRN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("cairn runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "cairn serve {flags:?} started; stderr: {stderr}");
    stderr
}

/// Flags for node `id` on fresh addresses with data in `data`.
fn serve_flags(id: u64, data: &Path) -> Vec<String> {
    let data = data.to_str().expect("a UTF-8 path").to_string();
    ["--id", &id.to_string(), "--http", &free_address(), "--peer", &free_address(), "--data", &data]
        .map(String::from)
        .to_vec()
}

/// Every file under `dir` with its bytes, except the lock file, whose content is the pid of the
/// last process that took the lock.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("the directory lists") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name() != Some("LOCK".as_ref()) {
                files
                    .insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).expect("a file reads"));
            }
        }
    }
    files
}

async fn write_keys(cluster: &CairnClient, range: std::ops::Range<u32>) {
    for i in range {
        let written = cluster.put(Route::Any, &format!("key-{i}"), Bytes::from(format!("value-{i}")), None).await;
        assert!(written.is_ok(), "write {i}: {written:?}");
    }
}

async fn assert_keys(cluster: &CairnClient, range: std::ops::Range<u32>) {
    for i in range {
        let read = cluster.get(Route::Any, &format!("key-{i}"), Consistency::Linearizable).await.expect("a read");
        assert_eq!(read.value.map(|record| record.value), Some(format!("value-{i}")), "key-{i}");
    }
}

/// A single node that has written keys 0..10 and was then killed, leaving its directory.
async fn stopped_node(root: &Path) -> Process {
    let mut node = Process::start(root, 1, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    write_keys(&client(vec![node.http.clone()]), 0..10).await;
    node.kill();
    node
}

/// Goal: two processes never serve one directory (issue 18: that corrupted the WAL). Method: a
/// node serves and takes writes; a second `cairn serve` on its directory (other ports) must exit
/// with an error naming the directory and the first process's pid; the first keeps serving and
/// every write is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_data_directory_is_refused_and_the_first_keeps_serving() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let cluster = client(vec![node.http.clone()]);
    write_keys(&cluster, 0..10).await;

    let stderr = refused_start(&serve_flags(1, &node.data));
    let expected = format!("data directory {} is in use (held by process ", node.data.display());
    assert!(stderr.contains(&expected), "{stderr}");

    write_keys(&cluster, 10..20).await;
    assert_keys(&cluster, 0..20).await;
}

/// Goal: a directory is never served under another node's id (it holds that node's vote).
/// Method: node 1 writes and is killed; `--id 2` on its directory is refused with a message
/// naming both ids and the fix, and the directory's files are byte for byte unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_started_under_another_id_is_refused_and_left_unchanged() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = stopped_node(root.path()).await;
    let before = contents(&node.data);

    let stderr = refused_start(&serve_flags(2, &node.data));
    assert!(stderr.contains("belongs to node 1, not node 2: start it with --id 1"), "{stderr}");
    assert_eq!(contents(&node.data), before, "the refused start changed the directory");
}

/// Goal: `--initial-cluster` is not silently ignored on a directory that already holds a
/// cluster it disagrees with. Method: a single-node cluster's directory restarted with an
/// initial cluster that also lists a node 2 is refused, and the directory is unchanged; the
/// same node restarts normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disagreeing_initial_cluster_is_refused_and_the_directory_left_unchanged() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut node = stopped_node(root.path()).await;
    let before = contents(&node.data);

    let list = format!("1={}@{},2={}@{}", node.peer, node.http, free_address(), free_address());
    let data = node.data.to_str().unwrap().to_string();
    let flags = ["--id", "1", "--http", &node.http, "--peer", &node.peer, "--data", &data, "--initial-cluster", &list];
    let stderr = refused_start(&flags.map(String::from));
    assert!(
        stderr
            .contains("--initial-cluster disagrees with (node 2 is listed but is not a member and was never removed)"),
        "{stderr}"
    );
    assert_eq!(contents(&node.data), before, "the refused start changed the directory");

    node.restart();
    leader_index(std::slice::from_ref(&node.http)).await;
    assert_keys(&client(vec![node.http.clone()]), 0..10).await;
}

/// Goal: a crash never needs manual cleanup of the lock. Method: a node is SIGKILLed while
/// serving (holding the lock) and started again at once; it starts, serves every write it
/// acknowledged, and takes new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_holding_the_lock_restarts() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut node = stopped_node(root.path()).await;
    assert!(node.data.join("LOCK").exists(), "the lock file stays behind a killed process");
    node.restart();
    leader_index(std::slice::from_ref(&node.http)).await;
    let cluster = client(vec![node.http.clone()]);
    assert_keys(&cluster, 0..10).await;
    write_keys(&cluster, 10..12).await;
    assert!(node.is_running(), "{}", node.log());
}

/// The cluster id in a data directory's stamp, once the node has stamped it.
fn stamped_cluster_id(data: &Path) -> Option<String> {
    let stamp = std::fs::read_to_string(data.join("IDENTITY")).ok()?;
    stamp.lines().find_map(|line| line.strip_prefix("cluster_id: ")).map(str::to_string)
}

/// Goal: the cluster id is drawn once at bootstrap and carried to joiners, and a directory of
/// one cluster is never joined to another. Method: cluster A (node 1, node 2 joined through
/// it) stamps both directories with one id, which `GET /v1/status` reports; an unrelated
/// single-node cluster B has another id. Node 2, killed and started with `--join` to B, is
/// refused with both ids in the message, and its directory is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_joined_to_another_cluster_is_refused_and_left_unchanged() {
    let (root_a, root_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Process::start(root_a.path(), 1, &[]);
    leader_index(std::slice::from_ref(&first.http)).await;
    let mut joiner = Process::start(root_a.path(), 2, &["--join".to_string(), first.http.clone()]);
    let cluster_a = client(vec![first.http.clone(), joiner.http.clone()]);
    support::wait_for_voters(&cluster_a, 2).await;
    write_keys(&cluster_a, 0..5).await;
    let cluster_id = support::eventually(Duration::from_secs(10), "both stamps", || async {
        let first_id = stamped_cluster_id(&first.data)?;
        (stamped_cluster_id(&joiner.data)? == first_id).then_some(first_id)
    })
    .await;
    let status = cluster_a.status(Route::Only(1)).await.expect("the joiner's status");
    assert_eq!(status.value.cluster_id.map(|id| id.to_string()), Some(cluster_id.clone()));

    let other = Process::start(root_b.path(), 1, &[]);
    leader_index(std::slice::from_ref(&other.http)).await;
    let other_id =
        support::eventually(Duration::from_secs(10), "B's stamp", || async { stamped_cluster_id(&other.data) }).await;
    assert_ne!(other_id, cluster_id, "two bootstraps draw two cluster ids");

    joiner.kill();
    let before = contents(&joiner.data);
    let mut flags = serve_flags(2, &joiner.data);
    flags.extend(["--join".to_string(), other.http.clone()]);
    let stderr = refused_start(&flags);
    let expected = format!("belongs to cluster {cluster_id}, but the member at {} is cluster {other_id}", other.http);
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(contents(&joiner.data), before, "the refused start changed the directory");
}

/// Goal: peers exchange their cluster ids in the handshake, so a node of another cluster that
/// turns up at a member's address (the wrong process restarted on a host) is refused by both
/// sides before any raft message passes, and neither cluster's data is touched. Method:
/// cluster A is nodes 1 and 2; node 2 is killed and a new single-node cluster B whose node is
/// also id 2 starts on node 2's addresses. Node 1 keeps calling node 2's peer address: both
/// logs name the other cluster, B holds none of A's keys and keeps its own id, and node 1
/// still holds A's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_at_a_members_address_is_refused_by_both_sides() {
    let (root_a, root_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Process::start(root_a.path(), 1, &[]);
    leader_index(std::slice::from_ref(&first.http)).await;
    let mut second = Process::start(root_a.path(), 2, &["--join".to_string(), first.http.clone()]);
    let cluster_a = client(vec![first.http.clone(), second.http.clone()]);
    support::wait_for_voters(&cluster_a, 2).await;
    write_keys(&cluster_a, 0..5).await;
    let cluster_id = support::eventually(Duration::from_secs(10), "both stamps", || async {
        let first_id = stamped_cluster_id(&first.data)?;
        (stamped_cluster_id(&second.data)? == first_id).then_some(first_id)
    })
    .await;
    second.kill();

    let stranger = Process::start_at(root_b.path(), 2, &second.http, &second.peer, &[]);
    let other_id =
        support::eventually(Duration::from_secs(10), "B's stamp", || async { stamped_cluster_id(&stranger.data) })
            .await;
    assert_ne!(other_id, cluster_id);
    support::eventually(Duration::from_secs(15), "both sides refuse each other", || async {
        let (a_log, b_log) = (first.log(), stranger.log());
        (a_log.contains(&format!("belongs to cluster {other_id}"))
            && b_log.contains(&format!("belongs to cluster {cluster_id}")))
        .then_some(())
    })
    .await;

    let b = client(vec![stranger.http.clone()]);
    leader_index(std::slice::from_ref(&stranger.http)).await;
    let status = b.status(Route::Only(0)).await.expect("B's status");
    assert_eq!(status.value.cluster_id.map(|id| id.to_string()), Some(other_id));
    let read = b.get(Route::Only(0), "key-0", Consistency::Linearizable).await.expect("a read on B");
    assert!(read.value.is_none(), "B holds A's key: {read:?}\n{}", stranger.log());
    let a = client(vec![first.http.clone()]);
    for key in (0..5).map(|i| format!("key-{i}")) {
        let read = a.get(Route::Only(0), &key, Consistency::Stale).await.expect("a stale read on A");
        assert!(read.value.is_some(), "A lost {key}\n{}", first.log());
    }
}
