//! Stale reads: old is allowed, invented or going backwards is not.
//!
//! A `stale` read may be served by any node from its local state machine, so it can miss recent
//! writes; it is not linearizability-checked. What it must still satisfy:
//! 1. **Never invented.** A non-null value was written by some write or compare-and-set on that
//!    key that did not fail, and that write was invoked before the read returned. When that write
//!    is ok with a revision and the read carries `mod_revision`, the two match.
//! 2. **Monotonic per node.** For one process reading from one node, the `revision` of
//!    successive stale reads never decreases: a node's state machine only moves forward, and a
//!    client reading from it never goes back.
//!
//! 3. **Within its bounds.** An answered read that asked for `max_lag = N` reports a lag of at
//!    most N. One that asked for `max_stale = D` reports a last contact of at most D, and was
//!    served at a revision at least that of every write, compare-and-set or delete acknowledged
//!    more than D before the read was invoked: "last contact D ago" promises that the node's state
//!    holds every write acknowledged before then, whichever leader acknowledged it. (The lag is
//!    checked as reported: it counts from the newest revision the node heard of, which only the
//!    node knows.)
//!
//! Each property is one pass over [`StaleRead`]s.

use std::collections::BTreeMap;

use super::{Verdict, Violation};
use crate::history::{Consistency, Function, History, Operation, Outcome};

/// The most violations reported per property; the rest are only counted.
const REPORTED_MAX: usize = 20;

/// A completed stale read and what it returned.
#[derive(Clone, Copy, Debug)]
pub struct StaleRead<'h> {
    /// The operation.
    pub op: &'h Operation,
    /// The value returned (`None`: absent).
    pub value: Option<&'h str>,
}

/// Checks both properties; see the module documentation.
pub fn check(history: &History) -> (Verdict, String) {
    let reads: Vec<StaleRead> = history
        .operations
        .iter()
        .filter(|op| op.f == Function::Read && op.consistency == Some(Consistency::Stale))
        .filter_map(|op| Some(StaleRead { op, value: op.read_value()? }))
        .collect();
    let mut writers: BTreeMap<(&str, &str), Vec<&Operation>> = BTreeMap::new();
    for op in history.operations.iter().filter(|op| op.outcome != Outcome::Fail) {
        if let Some(value) = op.written_value() {
            writers.entry((op.key.as_str(), value)).or_default().push(op);
        }
    }
    let mut violations = Vec::new();
    let mut found = 0;
    for read in &reads {
        if let Some(violation) = check_value(read, &writers) {
            found += 1;
            if violations.len() < REPORTED_MAX {
                violations.push(violation);
            }
        }
    }
    let (monotonic, unplaced) = check_monotonic(&reads);
    found += monotonic.len();
    violations.extend(monotonic.into_iter().take(REPORTED_MAX));
    let acknowledged = Acknowledged::new(history);
    let mut bounded = 0;
    for read in &reads {
        bounded += usize::from(read.op.max_stale_ms.is_some() || read.op.max_lag.is_some());
        if let Some(violation) = check_bounds(read, &acknowledged) {
            found += 1;
            if violations.len() < REPORTED_MAX * 3 {
                violations.push(violation);
            }
        }
    }
    let summary = format!(
        "{} stale reads ({bounded} bounded), {unplaced} without node or revision (not ordered), {found} violations",
        reads.len()
    );
    let verdict = if violations.is_empty() { Verdict::Valid } else { Verdict::Violation(violations) };
    (verdict, summary)
}

/// Property 1 for one read.
fn check_value(read: &StaleRead, writers: &BTreeMap<(&str, &str), Vec<&Operation>>) -> Option<Violation> {
    let value = read.value?;
    let op = read.op;
    let violation = |summary: String, writer: Option<&Operation>| {
        let mut window: Vec<Operation> = writer.into_iter().chain([op]).cloned().collect();
        window.sort_by_key(|op| op.id);
        Some(Violation {
            key: Some(op.key.clone()),
            summary,
            window,
            culprits: vec![op.id],
            prefix_end: None,
            watch_window: Vec::new(),
            watch_culprits: Vec::new(),
        })
    };
    let line = op.complete_line.unwrap_or(op.invoke_line);
    let Some(candidates) = writers.get(&(op.key.as_str(), value)) else {
        return violation(
            format!("stale read on line {line} returned {value:?}, which no write or cas on {:?} wrote", op.key),
            None,
        );
    };
    let Some(writer) = candidates.iter().find(|writer| writer.invoke_index < op.end_index()) else {
        let writer = candidates[0];
        return violation(
            format!(
                "stale read on line {line} returned {value:?} before its write on line {} was invoked",
                writer.invoke_line
            ),
            Some(writer),
        );
    };
    let (Some(read_revision), Some(write_revision)) = (op.mod_revision, writer.revision) else { return None };
    if read_revision == write_revision {
        return None;
    }
    violation(
        format!(
            "stale read on line {line} returned {value:?} with mod_revision {read_revision}, but the write on line {} has revision {write_revision}",
            writer.invoke_line
        ),
        Some(writer),
    )
}

/// Acknowledged mutations in completion-time order, with the highest revision up to each.
struct Acknowledged<'h> {
    /// (end time, the op with the highest revision among those ending at or before it).
    by_end: Vec<(u64, &'h Operation)>,
}

impl<'h> Acknowledged<'h> {
    fn new(history: &'h History) -> Acknowledged<'h> {
        let mut acked: Vec<&Operation> = history
            .operations
            .iter()
            .filter(|op| op.is_mutation() && op.outcome == Outcome::Ok && op.revision.is_some())
            .collect();
        acked.sort_by_key(|op| op.end_time);
        let mut by_end: Vec<(u64, &Operation)> = Vec::with_capacity(acked.len());
        for op in acked {
            let end = op.end_time.expect("ok operations have an end");
            let highest = match by_end.last() {
                Some(&(_, best)) if best.revision >= op.revision => best,
                _ => op,
            };
            by_end.push((end, highest));
        }
        Acknowledged { by_end }
    }

    /// The acknowledged mutation with the highest revision among those that ended before `time`.
    fn highest_before(&self, time: u64) -> Option<&'h Operation> {
        let count = self.by_end.partition_point(|&(end, _)| end < time);
        count.checked_sub(1).map(|last| self.by_end[last].1)
    }
}

/// Property 3 for one read.
fn check_bounds(read: &StaleRead, acknowledged: &Acknowledged) -> Option<Violation> {
    let op = read.op;
    let line = op.complete_line.unwrap_or(op.invoke_line);
    let violation = |summary: String, writer: Option<&Operation>| Violation {
        key: Some(op.key.clone()),
        summary,
        window: writer.into_iter().chain([op]).cloned().collect(),
        culprits: vec![op.id],
        prefix_end: None,
        watch_window: Vec::new(),
        watch_culprits: Vec::new(),
    };
    if let Some(max_lag) = op.max_lag
        && op.lag.is_none_or(|lag| lag > max_lag)
    {
        let lag = op.lag.map_or_else(|| "no lag".to_string(), |lag| format!("a lag of {lag}"));
        return Some(violation(
            format!("stale read on line {line} asked max_lag {max_lag} and was answered with {lag}"),
            None,
        ));
    }
    let max_stale_ms = op.max_stale_ms?;
    let Some(contact_ms) = op.last_contact_ms.filter(|contact| *contact <= max_stale_ms) else {
        let contact = op.last_contact_ms.map_or_else(|| "no contact".to_string(), |ms| format!("contact {ms} ms ago"));
        return Some(violation(
            format!("stale read on line {line} asked max_stale {max_stale_ms} ms and was answered with {contact}"),
            None,
        ));
    };
    let served = op.revision?;
    let cutoff = op.start_time.saturating_sub(max_stale_ms.saturating_mul(1_000_000));
    let writer = acknowledged.highest_before(cutoff)?;
    let written = writer.revision?;
    if served >= written {
        return None;
    }
    let before_ms = (op.start_time - writer.end_time.unwrap_or(0)) as f64 / 1e6;
    Some(violation(
        format!(
            "stale read on line {line} asked max_stale {max_stale_ms} ms and was answered at revision \
             {served} (contact {contact_ms} ms ago), but the {} on line {} at revision {written} was \
             acknowledged {before_ms:.1} ms before the read began",
            format!("{:?}", writer.f).to_lowercase(),
            writer.complete_line.unwrap_or(writer.invoke_line),
        ),
        Some(writer),
    ))
}

/// Property 2: per (process, node), in completion order. Returns the violations and how many
/// reads lacked a node or revision.
fn check_monotonic(reads: &[StaleRead]) -> (Vec<Violation>, usize) {
    let mut ordered: Vec<&StaleRead> = reads.iter().collect();
    ordered.sort_by_key(|read| read.op.end_index());
    let mut last: BTreeMap<(u64, u64), &Operation> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut unplaced = 0;
    for read in ordered {
        let op = read.op;
        let (Some(node), Some(revision)) = (op.node, op.revision) else {
            unplaced += 1;
            continue;
        };
        if let Some(previous) = last.insert((op.process, node), op)
            && let Some(before) = previous.revision
            && revision < before
        {
            violations.push(Violation {
                key: Some(op.key.clone()),
                summary: format!(
                    "process {} reading from node {node} went back from revision {before} (line {}) to {revision} (line {})",
                    op.process,
                    previous.complete_line.unwrap_or(previous.invoke_line),
                    op.complete_line.unwrap_or(op.invoke_line)
                ),
                window: vec![previous.clone(), op.clone()],
                culprits: vec![op.id],
                prefix_end: None,
                watch_window: Vec::new(),
                watch_culprits: Vec::new(),
            });
        }
    }
    (violations, unplaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    const WRITES: &str = "p0 invoke write x a
        p0 ok write x a rev=1
        p0 invoke write x b
        p0 ok write x b rev=2";

    fn verdict(reads: &str) -> Verdict {
        check(&history(&format!("{WRITES}\n{reads}"))).0
    }

    /// Goal: an old value, or absence, is fine for a stale read.
    #[test]
    fn old_values_and_absence_are_allowed() {
        let reads = "p1 invoke read x cons=stale
            p1 ok read x a rev=1 mod=1 node=2
            p1 invoke read x cons=stale
            p1 ok read x null rev=1 node=3";
        assert_eq!(verdict(reads), Verdict::Valid);
    }

    /// Goal: a value no write produced is a violation.
    #[test]
    fn invented_value_is_a_violation() {
        let reads = "p1 invoke read x cons=stale\np1 ok read x zzz rev=2 node=1";
        assert!(matches!(verdict(reads), Verdict::Violation(v) if v[0].summary.contains("no write")));
    }

    /// Goal: a value whose only write failed was never written.
    #[test]
    fn value_of_a_failed_write_is_invented() {
        let script = "p0 invoke write x c
            p0 fail write x c err=no_leader
            p1 invoke read x cons=stale
            p1 ok read x c rev=2 node=1";
        assert!(matches!(check(&history(script)).0, Verdict::Violation(_)));
    }

    /// Goal: a value read before its write was even invoked is a violation.
    #[test]
    fn value_from_the_future_is_a_violation() {
        let script = "p1 invoke read x cons=stale
            p1 ok read x a node=1
            p0 invoke write x a
            p0 ok write x a rev=1";
        assert!(
            matches!(check(&history(script)).0, Verdict::Violation(v) if v[0].summary.contains("before its write"))
        );
    }

    /// Goal: a mod_revision that contradicts the write's revision is a violation.
    #[test]
    fn mod_revision_must_match_the_write() {
        let reads = "p1 invoke read x cons=stale\np1 ok read x a rev=2 mod=2 node=1";
        assert!(matches!(verdict(reads), Verdict::Violation(v) if v[0].summary.contains("mod_revision")));
    }

    /// Goal: a bounded read within its bounds is fine, however old its value.
    #[test]
    fn a_read_within_its_bounds_is_allowed() {
        let reads = "p1 invoke read x cons=stale max_stale=1 max_lag=0
            p1 ok read x b rev=2 mod=2 node=1 contact=1 lag=0
            p1 invoke read x cons=stale max_stale=1000
            p1 ok read x a rev=1 mod=1 node=2 contact=900";
        assert_eq!(verdict(reads), Verdict::Valid);
    }

    /// Goal: "last contact D ago" must hold every write acknowledged more than D before the read.
    #[test]
    fn missing_a_write_acknowledged_before_max_stale_is_a_violation() {
        // Lines are 1 ms apart: the write of b ended 1 ms before this read began.
        let reads = "p1 invoke read x cons=stale max_stale=0
            p1 ok read x a rev=1 mod=1 node=2 contact=0";
        let verdict = verdict(reads);
        assert!(
            matches!(&verdict, Verdict::Violation(v) if v[0].summary.contains("at revision 2 was acknowledged")),
            "{verdict:?}"
        );
    }

    /// Goal: the reported figures must be within the bounds asked for, and present.
    #[test]
    fn reported_staleness_beyond_the_bounds_is_a_violation() {
        for (read, expected) in [
            ("p1 ok read x b rev=2 mod=2 node=1 contact=5 lag=0", "contact 5 ms ago"),
            ("p1 ok read x b rev=2 mod=2 node=1 lag=0", "no contact"),
            ("p1 ok read x b rev=2 mod=2 node=1 contact=1 lag=1", "a lag of 1"),
            ("p1 ok read x b rev=2 mod=2 node=1 contact=1", "no lag"),
        ] {
            let verdict = verdict(&format!("p1 invoke read x cons=stale max_stale=1 max_lag=0\n{read}"));
            assert!(
                matches!(&verdict, Verdict::Violation(v) if v[0].summary.contains(expected)),
                "{read}: {verdict:?}"
            );
        }
    }

    /// Goal: per process and node, revisions never decrease; another node may be further behind.
    #[test]
    fn revisions_never_go_back_per_process_and_node() {
        let reads = "p1 invoke read x cons=stale
            p1 ok read x b rev=2 mod=2 node=1
            p1 invoke read x cons=stale
            p1 ok read x a rev=1 mod=1 node=2";
        assert_eq!(verdict(reads), Verdict::Valid);
        let reads = "p1 invoke read x cons=stale
            p1 ok read x b rev=2 mod=2 node=1
            p1 invoke read x cons=stale
            p1 ok read x a rev=1 mod=1 node=1";
        assert!(matches!(verdict(reads), Verdict::Violation(v) if v[0].summary.contains("went back")));
    }
}
