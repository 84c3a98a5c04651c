//! The `cairn` client commands against real nodes: what they print, and the exit codes scripts
//! rely on (0 done, 1 refused, 3 not found, 4 compare-and-swap mismatch, 5 unreachable).

#![cfg(not(madsim))]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_http::client::{Route, StaleBounds};
use serde_json::Value;
use support::{Process, eventually, leader_index};

struct Cli {
    endpoint: String,
}

impl Cli {
    /// Runs `cairn ARGS --endpoints ENDPOINT`, feeding `stdin`; returns (exit code, stdout).
    fn run(&self, args: &[&str], stdin: &str) -> (i32, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .args(["--endpoints", &self.endpoint, "--timeout", "5s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cairn runs");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let output = child.wait_with_output().expect("cairn finishes");
        (output.status.code().expect("an exit code"), String::from_utf8(output.stdout).expect("utf-8"))
    }
}

/// Goal: every client command does what its help says, in human and JSON form, with the
/// documented exit codes. Method: a single node, one command per behaviour.
#[tokio::test]
async fn client_commands_print_results_and_exit_with_documented_codes() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let cli = Cli { endpoint: node.http.clone() };

    let (code, out) = cli.run(&["put", "app/timeout", "5s", "--label", "env=prod"], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK app/timeout"), "{out}");
    assert_eq!(cli.run(&["put", "app/notes"], "from stdin").0, 0);
    assert_eq!(cli.run(&["get", "app/notes"], ""), (0, "from stdin\n".to_string()));
    let (_, json) = cli.run(&["get", "app/timeout", "--json", "--consistency", "stale"], "");
    let record: Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(record["labels"]["env"], "prod");

    assert_eq!(cli.run(&["get", "app/missing"], "").0, 3, "not found");
    assert_eq!(cli.run(&["put", "app/timeout", "6s", "--prev-revision", "99"], "").0, 4, "mismatch");
    let revision = record["mod_revision"].as_u64().unwrap().to_string();
    assert_eq!(cli.run(&["put", "app/timeout", "6s", "--prev-revision", &revision], "").0, 0);

    let (code, listing) = cli.run(&["list", "--prefix", "app/", "--json"], "");
    let listing: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!((code, listing["total"].as_u64()), (0, Some(2)));
    let (_, table) = cli.run(&["list", "--label", "env=prod"], "");
    assert!(table.contains("app/timeout") && !table.contains("app/notes"), "{table}");

    assert_eq!(cli.run(&["del", "app/notes"], "").0, 0);
    let (_, members) = cli.run(&["members"], "");
    assert!(members.contains(&node.http), "{members}");
    let (_, status) = cli.run(&["status", "--json"], "");
    assert_eq!(serde_json::from_str::<Value>(&status).unwrap()["role"], "leader");
    assert_eq!(cli.run(&["member", "remove", "9"], "").0, 3, "no such member");
    assert_eq!(cli.run(&["put", ".kie/default/x", "v"], "").0, 1, "refused");

    let unreachable = Cli { endpoint: support::free_address() };
    assert_eq!(unreachable.run(&["get", "app/timeout"], "").0, 5, "no node reachable");
}

/// Goal: `cairn watch --from N` prints every change from N on. Method: three writes, then a watch
/// from revision 1 stopped after a second.
#[tokio::test]
async fn watch_prints_changes_from_a_revision() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let cli = Cli { endpoint: node.http.clone() };
    cli.run(&["put", "w/a", "1"], "");
    cli.run(&["put", "w/b", "2"], "");
    cli.run(&["del", "w/a"], "");
    let output = Command::new("timeout")
        .args(["2", env!("CARGO_BIN_EXE_cairn"), "watch", "--from", "1", "--json", "--endpoints", &node.http])
        .output()
        .expect("timeout and cairn run");
    let events: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let summary: Vec<(u64, &str, &str)> = events
        .iter()
        .map(|e| (e["revision"].as_u64().unwrap(), e["action"].as_str().unwrap(), e["key"].as_str().unwrap()))
        .collect();
    assert_eq!(summary, [(1, "put", "w/a"), (2, "put", "w/b"), (3, "delete", "w/a")]);
}

/// Goal: a node started with `--join --learner` joins as a learner that serves stale reads (within
/// a `max_stale` bound too) but does not vote, and `cairn member add` without `--learner` promotes it. Method: a single node,
/// a second one joining as a learner; the CLI lists it, reads from it and promotes it.
#[tokio::test]
async fn a_learner_joins_serves_stale_reads_and_member_add_promotes_it() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let first = Process::start(root.path(), 1, &[]);
    leader_index(std::slice::from_ref(&first.http)).await;
    let cli = Cli { endpoint: first.http.clone() };
    assert_eq!(cli.run(&["put", "app/mode", "blue"], "").0, 0);
    let join = ["--join".to_string(), first.http.clone(), "--learner".to_string()];
    let learner = Process::start(root.path(), 2, &join);
    let raft_role = |cli: &Cli| {
        let (_, out) = cli.run(&["members", "--json"], "");
        let view: Value = serde_json::from_str(&out).ok()?;
        let node = view["nodes"].as_array()?.iter().find(|node| node["id"] == 2)?.clone();
        node["raft"]["voter"].as_bool()
    };
    eventually(Duration::from_secs(30), "node 2 to join as a learner", || async {
        (raft_role(&cli) == Some(false)).then_some(())
    })
    .await;
    let on_learner = Cli { endpoint: learner.http.clone() };
    eventually(Duration::from_secs(30), "a stale read from the learner", || async {
        (on_learner.run(&["get", "app/mode", "--consistency", "stale"], "") == (0, "blue\n".to_string())).then_some(())
    })
    .await;
    assert_eq!(raft_role(&cli), Some(false), "a learner stays one until promoted");
    // The only voter holds its lease without a quorum, so even an idle cluster proves contact to
    // the learner.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bounds = StaleBounds { max_stale: Some(Duration::from_millis(500)), max_lag: None };
    let bounded = support::client(vec![learner.http.clone()]).get_stale(Route::Only(0), "app/mode", bounds).await;
    assert!(bounded.is_ok_and(|answer| answer.staleness.last_contact_ms.is_some_and(|ms| ms <= 500)));

    let (code, out) = cli.run(&["member", "add", "2", "--peer", &learner.peer, "--http", &learner.http], "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(raft_role(&cli), Some(true), "member add without --learner promotes");
}
