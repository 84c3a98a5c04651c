//! `cairn check`: the verdict is the exit code (0 valid, 1 violation, 2 unknown, 3 malformed),
//! a violation writes the HTML report, a malformed file names its line.

#![cfg(not(madsim))]

use std::path::Path;
use std::process::Command;

use cairn_chaos::generate::{Anomaly, Workload, generate, inject};
use cairn_chaos::history::write_event;

fn write_history(path: &Path, events: &[cairn_chaos::history::Event]) {
    let mut bytes = Vec::new();
    for event in events {
        write_event(&mut bytes, event).expect("events serialize");
    }
    std::fs::write(path, bytes).expect("the history is written");
}

fn check(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cairn")).arg("check").args(args).output().expect("cairn runs");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8 output");
    (output.status.code().expect("an exit code"), text(output.stdout), text(output.stderr))
}

/// Goal: each verdict maps to its exit code. Method: a generated valid history, the same with a
/// planted stale read, a tiny budget on a dense history, and a file with a broken line.
#[test]
fn the_exit_code_is_the_verdict_and_a_violation_writes_a_report() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let valid = dir.path().join("valid.jsonl");
    let mut events = generate(&Workload::new(3));
    write_history(&valid, &events);
    let (code, stdout, _) = check(&[valid.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");

    inject(&mut events, Anomaly::StaleRead, 3).expect("a stale read can be planted");
    let broken = dir.path().join("stale.jsonl");
    write_history(&broken, &events);
    let report = dir.path().join("report");
    let (code, stdout, _) = check(&[broken.to_str().unwrap(), "--report", report.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("the report is written");
    assert!(html.contains("<svg") || html.contains("<html"), "a self-contained HTML report");

    let dense = dir.path().join("dense.jsonl");
    write_history(&dense, &generate(&Workload::dense(5)));
    let (code, stdout, _) = check(&[dense.to_str().unwrap(), "--budget", "1ms"]);
    assert_eq!(code, 2, "an exhausted budget is unknown, never a pass: {stdout}");

    let malformed = dir.path().join("malformed.jsonl");
    std::fs::write(
        &malformed,
        "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\"}\nnot json\n",
    )
    .expect("written");
    let (code, _, stderr) = check(&[malformed.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(stderr.contains("line 2"), "the malformed line is named: {stderr}");
}
