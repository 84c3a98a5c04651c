//! Backups of real `cairn serve` processes: `cairn snapshot save` under a write load, `status`,
//! and `restore` into a new three-node cluster that must hold exactly the saved state; and the
//! refusals (a corrupted file, a non-empty directory, a caller without the management token).

#![cfg(not(madsim))]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{CairnClient, Exchanger, Method, Outgoing, Route, WatchItem};
use cairn_http::wire::RecordBody;
use cairn_node::api::Consistency;
use serde_json::Value;
use support::{Process, client, eventually, free_address, leader_index, start_static_cluster};

/// What a key's record says, without the revision its answer was produced at.
type Held = (String, u64, u64, u64, BTreeMap<String, String>);

fn held(record: &RecordBody) -> Held {
    (record.value.clone(), record.create_revision, record.mod_revision, record.version, record.labels.clone())
}

fn by_key(records: &[RecordBody]) -> BTreeMap<String, Held> {
    records.iter().map(|record| (record.key.clone(), held(record))).collect()
}

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn")).args(args).output().expect("the cairn binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Puts and deletes on 64 labelled keys from four writers until told to stop; `acknowledged`
/// keeps the highest revision a write was acknowledged at.
fn start_load(
    cluster: &Arc<CairnClient>,
    stop: &Arc<AtomicBool>,
    acknowledged: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..4u64)
        .map(|writer| {
            let (cluster, stop, acknowledged) = (cluster.clone(), stop.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("app/key-{:02}", (writer * 17 + done) % 64);
                    let written = if done % 9 == 8 {
                        cluster.delete(Route::Any, &key, None).await.map(|answer| answer.value.revision)
                    } else {
                        let labels = BTreeMap::from([("writer".to_string(), writer.to_string())]);
                        let value = Bytes::from(format!("value {done} of writer {writer}"));
                        let put = cluster.put_labelled(Route::Any, &key, value, labels, None).await;
                        put.map(|answer| answer.value.mod_revision)
                    };
                    if let Ok(revision) = written {
                        acknowledged.fetch_max(revision, Ordering::SeqCst);
                        done += 1;
                    }
                }
                done
            })
        })
        .collect()
}

/// The rule a backup keeps beyond consistency: it holds every write acknowledged before it was
/// asked for. Says how it was broken, if it was.
fn misses_acknowledged_writes(saved_revision: u64, acknowledged_before: u64) -> Option<String> {
    (saved_revision < acknowledged_before).then(|| {
        format!(
            "the backup is at revision {saved_revision}, but revision {acknowledged_before} was acknowledged before it"
        )
    })
}

/// Runs `cairn snapshot save FILE --json` against `endpoints` and returns what it printed.
fn save(file: &Path, endpoints: &[String], extra: &[&str]) -> Value {
    let args = ["snapshot", "save", file.to_str().unwrap(), "--json", "--endpoints", &endpoints.join(",")];
    let saved = cairn(&[&args[..], extra].concat());
    assert!(saved.status.success(), "save failed: {}", stderr(&saved));
    serde_json::from_slice(&saved.stdout).expect("save prints JSON")
}

/// Every key's record at `revision`, folded from the event history of the node at `endpoint`.
async fn state_at(cluster: &CairnClient, endpoint: usize, revision: u64) -> BTreeMap<String, Held> {
    let mut stream = cluster.watch(Route::Only(endpoint), "", &[], Some(1)).await.expect("a watch from revision 1");
    let mut state = BTreeMap::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the history arrives")
            .expect("the watch streams")
            .expect("the watch stays open");
        let event = match item {
            WatchItem::Event(event) => event,
            WatchItem::Progress(seen) if seen >= revision => return state,
            WatchItem::Progress(_) => continue,
            other => panic!("unexpected watch item {other:?}"),
        };
        if event.revision > revision {
            return state;
        }
        match event.record {
            Some(record) => state.insert(event.key.clone(), held(&record)),
            None => state.remove(&event.key),
        };
        if event.revision == revision {
            return state;
        }
    }
}

/// Every key's record on the cluster, read linearizably.
async fn state_now(cluster: &CairnClient) -> (u64, BTreeMap<String, Held>) {
    let listed = cluster.list(Route::Any, "", &[], 10_000, None, Consistency::Linearizable).await.expect("a list");
    assert!(listed.value.continuation.is_none(), "one page holds every key");
    (listed.value.revision, by_key(&listed.value.data))
}

fn initial_cluster(addresses: &[(String, String)]) -> String {
    let entries: Vec<String> =
        addresses.iter().enumerate().map(|(i, (peer, http))| format!("{}={peer}@{http}", i + 1)).collect();
    entries.join(",")
}

/// Goal: a backup taken while the cluster takes writes restores into a new cluster holding
/// exactly the state at the backup's revision: every key, value, revision, version and label,
/// and the watch history, under a new cluster id and the listed members. Method: three nodes
/// (snapshotting every 200 entries, so raft's snapshots turn over beside the backup) under four
/// writers; `cairn snapshot save`, `status`; the original's history folded up to the saved
/// revision is compared with a fresh three-node cluster restored from the file, which then
/// takes writes after that revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_a_new_cluster_with_exactly_the_saved_state() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let original = start_static_cluster(root.path(), &["--snapshot-every", "200"]);
    let endpoints: Vec<String> = original.iter().map(|node| node.http.clone()).collect();
    leader_index(&endpoints).await;
    let cluster = Arc::new(client(endpoints.clone()));
    let (stop, acknowledged) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writers = start_load(&cluster, &stop, &acknowledged);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let file = root.path().join("backup.snap");
    let file_arg = file.to_str().unwrap();
    let acknowledged_before = acknowledged.load(Ordering::SeqCst);
    let summary = save(&file, &endpoints, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut writes = 0;
    for writer in writers {
        writes += writer.await.expect("a writer ends");
    }
    let revision = summary["revision"].as_u64().expect("a revision");
    assert_eq!(misses_acknowledged_writes(revision, acknowledged_before), None);
    assert!(writes > 50 && revision > 20, "the load ran ({writes} writes) and the backup caught part of it: {summary}");
    let (now, _) = state_now(&cluster).await;
    assert!(now > revision, "writes went on after the backup ({now} > {revision})");
    assert!(!file.with_extension("snap.part").exists(), "the partial download was renamed into place");

    let status = cairn(&["snapshot", "status", file_arg, "--json"]);
    assert!(status.status.success(), "status failed: {}", stderr(&status));
    let described: Value = serde_json::from_slice(&status.stdout).expect("status prints JSON");
    assert_eq!(described, summary, "status describes what save saved");
    assert_eq!(described["members"].as_object().map(|m| m.len()), Some(3));

    let addresses: Vec<(String, String)> = (0..3).map(|_| (free_address(), free_address())).collect();
    let list = initial_cluster(&addresses);
    let restored_root = root.path().join("restored");
    let mut restored_ids = Vec::new();
    for (i, _) in addresses.iter().enumerate() {
        let data = restored_root.join(format!("node-{}", i + 1));
        let id = (i + 1).to_string();
        let args = ["snapshot", "restore", file_arg, "--data", data.to_str().unwrap(), "--id", &id];
        let restored = cairn(&[&args[..], &["--initial-cluster", &list, "--json"]].concat());
        assert!(restored.status.success(), "restore failed: {}", stderr(&restored));
        let answer: Value = serde_json::from_slice(&restored.stdout).expect("restore prints JSON");
        restored_ids.push(answer["cluster_id"].as_str().expect("a cluster id").to_string());
    }
    assert!(restored_ids.iter().all(|id| *id == restored_ids[0]), "every node restores into one cluster");
    assert_ne!(Some(restored_ids[0].as_str()), summary["cluster_id"].as_str(), "the restored cluster is a new one");

    let flags = vec!["--initial-cluster".to_string(), list];
    let fresh: Vec<Process> = addresses
        .iter()
        .enumerate()
        .map(|(i, (peer, http))| Process::start_at(&restored_root, i as u64 + 1, http, peer, &flags))
        .collect();
    let fresh_endpoints: Vec<String> = fresh.iter().map(|node| node.http.clone()).collect();
    leader_index(&fresh_endpoints).await;
    let restored = client(fresh_endpoints.clone());

    let expected = state_at(&cluster, 0, revision).await;
    let (restored_revision, actual) = eventually(Duration::from_secs(30), "the restored cluster serving", || async {
        let listed = restored.list(Route::Any, "", &[], 10_000, None, Consistency::Linearizable).await.ok()?;
        Some((listed.value.revision, by_key(&listed.value.data)))
    })
    .await;
    assert_eq!(restored_revision, revision, "the restored cluster resumes at the saved revision");
    assert_eq!(actual, expected, "the restored keys are the original's at revision {revision}");
    assert_eq!(actual.len() as u64, summary["keys"].as_u64().unwrap());
    for node in 0..3 {
        assert_eq!(state_at(&restored, node, revision).await, expected, "node {node}'s history replays to it");
    }
    let members = restored.members(Route::Any).await.expect("members");
    let restored_members: Vec<(u64, String)> = members.iter().map(|m| (m.id, m.http.clone())).collect();
    let listed_members: Vec<(u64, String)> = (1..=3).zip(fresh_endpoints.iter().cloned()).collect();
    assert_eq!(restored_members, listed_members, "the membership is the one restore was given");
    let written =
        restored.put(Route::Any, "after/restore", Bytes::from("new"), None).await.expect("the new cluster writes");
    assert_eq!(written.value.mod_revision, revision + 1, "writes continue from the saved revision");
    let original_keys = state_now(&cluster).await.1;
    assert!(!original_keys.contains_key("after/restore"), "the clusters are separate");
    drop(original);
}

/// Goal: what is not a valid backup never becomes a data directory, and only a manager may
/// take a backup once ACLs are on. Method: one node; a saved file with one flipped byte is
/// refused by `status` and `restore` (which leaves no directory behind); a good file is not
/// restored over a non-empty directory; after the ACL bootstrap, a backup without a token is
/// 401 and with the management token is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_files_and_callers_without_management_are_refused() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &[]);
    let endpoint = node.http.clone();
    let cluster = client(vec![endpoint.clone()]);
    eventually(Duration::from_secs(30), "the node writing", || async {
        cluster.put(Route::Any, "some/key", Bytes::from("value"), None).await.ok()
    })
    .await;

    let file = root.path().join("good.snap");
    let saved = cairn(&["snapshot", "save", file.to_str().unwrap(), "--endpoints", &endpoint]);
    assert!(saved.status.success(), "save failed: {}", stderr(&saved));
    assert!(String::from_utf8_lossy(&saved.stdout).contains("keys:          1"), "{saved:?}");

    let mut bytes = std::fs::read(&file).expect("the saved file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let corrupt = root.path().join("corrupt.snap");
    std::fs::write(&corrupt, &bytes).expect("the corrupted copy");
    let status = cairn(&["snapshot", "status", corrupt.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(1));
    assert!(stderr(&status).contains("is not a valid snapshot") && stderr(&status).contains("checksum mismatch"));
    let target = root.path().join("never");
    let restore = |from: &Path, data: &Path| {
        let member = format!("1={}@{}", free_address(), free_address());
        cairn(&[
            "snapshot",
            "restore",
            from.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--id",
            "1",
            "--initial-cluster",
            &member,
        ])
    };
    let refused = restore(&corrupt, &target);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("checksum mismatch"), "{}", stderr(&refused));
    assert!(!target.exists(), "a refused restore writes nothing");
    let occupied = restore(&file, &node.data);
    assert_eq!(occupied.status.code(), Some(1));
    assert!(stderr(&occupied).contains("is not empty"), "{}", stderr(&occupied));

    let management = cluster.acl_bootstrap(Route::Any).await.expect("ACLs bootstrap");
    let outgoing =
        Outgoing { method: Method::GET, path_and_query: "/v1/snapshot", headers: Vec::new(), body: Bytes::new() };
    let anonymous = Exchanger::default().send(&endpoint, outgoing, Duration::from_secs(5)).await.expect("an answer");
    let body: Value = serde_json::from_slice(&anonymous.body).expect("a JSON refusal");
    assert_eq!((anonymous.status.as_u16(), body["error"]["code"].as_str()), (401, Some("unauthenticated")));
    let managed = root.path().join("managed.snap");
    let args = ["snapshot", "save", managed.to_str().unwrap(), "--endpoints", &endpoint];
    let saved = cairn(&[&args[..], &["--token", &management.secret]].concat());
    assert!(saved.status.success(), "a manager's save failed: {}", stderr(&saved));
    assert!(String::from_utf8_lossy(&saved.stdout).contains("acl:           enforced"), "{saved:?}");
}

/// Goal: the acknowledged-before rule catches a backup that is consistent but old. Method: one
/// node with the injected bug `backup-from-raft-snapshot` (it backs up raft's newest snapshot
/// file, taken every 100 entries) and 250 writes; the saved revision falls short of the last
/// acknowledged write, which the rule reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_missing_acknowledged_writes_is_caught() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let bug = ["--inject-bugs", "backup-from-raft-snapshot", "--snapshot-every", "100"].map(String::from);
    let node = Process::start(root.path(), 1, &bug);
    let cluster = client(vec![node.http.clone()]);
    let mut acknowledged = 0;
    for i in 0..250 {
        let written = eventually(Duration::from_secs(30), "a write", || async {
            cluster.put(Route::Any, &format!("key-{i}"), Bytes::from("value"), None).await.ok()
        })
        .await;
        acknowledged = written.value.mod_revision;
    }
    let summary = save(&root.path().join("old.snap"), std::slice::from_ref(&node.http), &[]);
    let revision = summary["revision"].as_u64().expect("a revision");
    let caught = misses_acknowledged_writes(revision, acknowledged);
    assert!(caught.is_some(), "the stale backup (revision {revision}, acknowledged {acknowledged}) was not caught");
}
