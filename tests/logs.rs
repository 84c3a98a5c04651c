//! The server's log format: JSON lines when stderr is not a terminal (as under a log collector),
//! text on request.

#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Process, eventually, leader_index};

/// The log's JSON lines (stdout's banner shares the file and is skipped).
fn json_lines(node: &Process) -> Vec<Value> {
    node.log()
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Goal: a node whose stderr is a file logs JSON lines that carry timestamp, level, target,
/// its id, its raft term and the message. Method: a single node, elected, then a SIGHUP, whose
/// log line comes after the election and so carries the term.
#[tokio::test]
async fn a_node_logs_json_lines_with_its_id_and_term_when_stderr_is_not_a_terminal() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 7, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let lines = json_lines(&node);
    assert!(!lines.is_empty(), "no JSON lines:\n{}", node.log());
    for line in &lines {
        for field in ["timestamp", "level", "target", "node", "term"] {
            assert!(!line[field].is_null(), "no {field} in {line}");
        }
        assert_eq!(line["node"], 7, "{line}");
    }
    assert!(lines.iter().any(|line| line["message"] == "node started"), "{}", node.log());
    node.signal("HUP");
    let line = eventually(Duration::from_secs(10), "the SIGHUP line", || async {
        json_lines(&node).into_iter().find(|line| line["message"].as_str().is_some_and(|m| m.starts_with("SIGHUP")))
    })
    .await;
    assert!(line["term"].as_u64().is_some_and(|term| term >= 1), "the term after the election: {line}");
}

/// Goal: `--log-format text` keeps the human format whatever stderr is.
#[tokio::test]
async fn log_format_text_writes_plain_lines() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &["--log-format".to_string(), "text".to_string()]);
    leader_index(std::slice::from_ref(&node.http)).await;
    assert!(json_lines(&node).is_empty(), "{}", node.log());
    assert!(node.log().contains("node started"), "{}", node.log());
}
