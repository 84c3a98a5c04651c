//! The run's directory and what goes in it besides the node logs: `history.jsonl`, the nemesis
//! timeline `nemesis.txt`, the verdict (`verdict.txt` for people, `verdict.json` for scripts) and
//! the HTML report `report.html`, the one `cairn check --report` writes.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_chaos::acl::AclCounts;
use cairn_chaos::check::{CheckReport, Verdict};
use cairn_chaos::history::History;
use serde_json::json;

use super::figures::Figures;

/// The output directory, absolute, so that nodes started in namespaces find it too.
pub(super) struct OutputDir {
    path: PathBuf,
}

impl OutputDir {
    /// Creates `path`, or takes it if it exists and is empty: node logs are appended to, so a
    /// directory of an earlier run would mix two runs.
    pub(super) fn create(path: &Path) -> Result<OutputDir, String> {
        let shown = path.display();
        match std::fs::read_dir(path).map(|mut entries| entries.next().is_some()) {
            Ok(true) => return Err(format!("--out {shown} is not empty; give each run a directory of its own")),
            Ok(false) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).map_err(|error| format!("--out {shown}: {error}"))?;
            }
            Err(error) => return Err(format!("--out {shown}: {error}")),
        }
        let path = path.canonicalize().map_err(|error| format!("--out {shown}: {error}"))?;
        Ok(OutputDir { path })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<(), String> {
        let path = self.path.join(name);
        std::fs::write(&path, contents).map_err(|error| format!("writing {}: {error}", path.display()))
    }
}

/// What was run, for the timeline and the verdict.
pub(super) struct Setup {
    pub(super) nodes: usize,
    pub(super) seed: u64,
    pub(super) time: Duration,
    /// The `--nemesis` names given.
    pub(super) nemeses: Vec<&'static str>,
    /// Where the nodes ran.
    pub(super) network: String,
    /// Why partitions were skipped, when they were asked for and skipped.
    pub(super) skipped: Option<String>,
    /// HTTPS with client certificates, and mutual TLS between peers.
    pub(super) tls: bool,
    /// ACLs bootstrapped, with restricted clients and policy changes.
    pub(super) acl: bool,
}

/// `nemesis.txt`: every fault with its start, stop and description; after each leader kill, how
/// long no write succeeded; then the problems the cluster had.
pub(super) fn timeline(setup: &Setup, history: &History, figures: &Figures, problems: &[String]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "cairn jepsen: {} nodes, seed {}, {}s of faults from: {}",
        setup.nodes,
        setup.seed,
        setup.time.as_secs(),
        setup.nemeses.join(", ")
    );
    let _ = writeln!(text, "network: {}", setup.network);
    let _ = writeln!(text, "tls: {}; acl: {}", on_off(setup.tls), on_off(setup.acl));
    if let Some(reason) = &setup.skipped {
        let _ = writeln!(text, "PARTITIONS SKIPPED: {reason}");
    }
    let _ = writeln!(text, "\n{:>10} {:>10}  {:<15} what", "start", "stop", "fault");
    let mut outages = figures.leader_kills.iter();
    for fault in &history.faults {
        let stop = fault.stop_time.map_or_else(|| "-".to_string(), seconds);
        let what = fault.value.as_deref().unwrap_or("");
        let _ = write!(text, "{:>10} {stop:>10}  {:<15} {what}", seconds(fault.start_time), fault.fault);
        if fault.fault == cairn_chaos::nemesis::FaultKind::KillLeader.name()
            && let Some(outage) = outages.next()
        {
            let _ = write!(text, "  (no write succeeded for {})", outage_length(outage));
        }
        text.push('\n');
    }
    if history.faults.is_empty() {
        text.push_str("(no faults: the run was too short for one)\n");
    }
    if !problems.is_empty() {
        let _ = writeln!(text, "\nproblems on the cluster's side:");
        problems.iter().for_each(|problem| {
            let _ = writeln!(text, "  {problem}");
        });
    }
    text
}

fn seconds(nanos: u64) -> String {
    format!("{:.3}s", nanos as f64 / 1e9)
}

/// `1.234s`, or `at least 1.234s (no write succeeded after it)`.
pub(super) fn outage_length(outage: &super::figures::Outage) -> String {
    let length = format!("{:.3}s", outage.length.as_secs_f64());
    if outage.ended { length } else { format!("at least {length} (to the end of the run)") }
}

/// Everything `verdict.json` says.
pub(super) struct Verdicts<'a> {
    pub(super) setup: &'a Setup,
    pub(super) report: &'a CheckReport,
    pub(super) figures: &'a Figures,
    /// Time from healing to a successful write and read, or why the cluster did not recover.
    pub(super) recovery: &'a Result<Duration, String>,
    pub(super) problems: &'a [String],
    /// What the ACL checker found, when ACLs were on.
    pub(super) acl: Option<&'a AclCounts>,
    pub(super) exit_code: u8,
}

pub(super) fn verdict_json(verdicts: &Verdicts<'_>) -> String {
    let Verdicts { setup, report, figures, recovery, problems, acl, exit_code } = verdicts;
    let mut checkers: serde_json::Map<String, serde_json::Value> = report
        .checkers
        .iter()
        .map(|checker| {
            let verdict = match &checker.verdict {
                Verdict::Valid => "valid",
                Verdict::Violation(_) => "violation",
                Verdict::Unknown { .. } => "unknown",
            };
            (checker.checker.to_string(), json!(verdict))
        })
        .collect();
    if let Some(acl) = acl {
        let verdict = if acl.violations.is_empty() { "valid" } else { "violation" };
        checkers.insert("acl".to_string(), json!(verdict));
    }
    let overall = match acl {
        Some(acl) if !acl.violations.is_empty() => "violation".to_string(),
        _ => format!("{:?}", report.overall()).to_lowercase(),
    };
    let longest = figures.longest_outage();
    let value = json!({
        "verdict": overall,
        "exit_code": exit_code,
        "checkers": checkers,
        "recovered": recovery.is_ok(),
        "recovery_seconds": recovery.as_ref().ok().map(Duration::as_secs_f64),
        "recovery_error": recovery.as_ref().err(),
        "problems": problems,
        "nodes": setup.nodes,
        "seed": setup.seed,
        "time_seconds": setup.time.as_secs_f64(),
        "nemesis": setup.nemeses,
        "network": setup.network,
        "partitions_skipped": setup.skipped,
        "tls": setup.tls,
        "acl": acl.map(|acl| json!({
            "policy_changes": acl.changes,
            "restricted_answers_checked": acl.checked,
            "refused": acl.refused,
            "restricted_watch_events_checked": acl.watched,
            "violations": acl.violations,
        })),
        "operations": figures.operations,
        "ok": figures.ok,
        "fail": figures.fail,
        "info": figures.info,
        "operations_per_second": figures.per_second(),
        "faults": report.faults,
        "leader_kills": figures.leader_kills.len(),
        "longest_unavailability_after_leader_kill_seconds": longest.map(|outage| outage.length.as_secs_f64()),
        "longest_unavailability_ended": longest.map(|outage| outage.ended),
    });
    serde_json::to_string_pretty(&value).expect("a JSON value serializes") + "\n"
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
