//! Linearizability of linearizable and lease reads, writes, compare-and-sets and deletes.
//!
//! A history of a key-value store is linearizable iff each key's sub-history is (locality,
//! Herlihy & Wing 1990; P-compositionality, Horn & Kroening 2015), so every key is checked on
//! its own. Per key:
//! 1. The operations are read-mapped into register steps ([`model`]); timed-out operations are
//!    modelled, never dropped: they may take effect at any point after their invoke, or never.
//! 2. A key with only completed writes and reads is decided by the zone test in O(n log n)
//!    ([`zones`], Gibbons & Korach 1997).
//! 3. Any other key goes through the just-in-time breadth-first search ([`search`], Wing & Gong
//!    1993 with Lowe 2017), which also finds, on failure, the exact event where the longest
//!    linearizable prefix ends.
//!
//! Stale reads are not linearizability-checked (see [`super::stale`]); reads with no
//! `consistency` field are treated as linearizable.

mod model;
mod search;
#[cfg(test)]
mod tests;
mod zones;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{CheckOptions, Verdict, Violation, at_event};
use crate::history::{Consistency, Function, History, Operation, Outcome};

use model::{KeyModel, Pre};
use search::{Limits, SearchOutcome};

/// Whether a read is subject to linearizability.
pub(crate) fn is_checked_read(op: &Operation) -> bool {
    op.f == Function::Read && op.consistency != Some(Consistency::Stale)
}

/// Work done, for the summary line.
#[derive(Default)]
struct Tally {
    by_zones: usize,
    searched: usize,
    configurations: u64,
    frontier_max: usize,
}

/// Checks every key; see the module documentation.
pub fn check(history: &History, options: &CheckOptions) -> (Verdict, String) {
    let deadline = Instant::now() + options.budget;
    let limits = Limits { deadline, configurations_max: options.configurations_max, prune_future: true };
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &history.operations {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut tally = Tally::default();
    let mut violations = Vec::new();
    let mut unknown = Vec::new();
    for (key, ops) in &by_key {
        let model = model::build(ops);
        let zone_witness = if zones::applies(&model) {
            match zones::check(&model) {
                Ok(()) => {
                    tally.by_zones += 1;
                    continue;
                }
                Err(witness) => Some(witness),
            }
        } else {
            None
        };
        tally.searched += 1;
        let result = search::search(&model, limits);
        tally.configurations += result.configurations;
        tally.frontier_max = tally.frontier_max.max(result.frontier_max);
        match (result.outcome, zone_witness) {
            (SearchOutcome::Linearizable, None) => {}
            (SearchOutcome::Stuck(event), _) => {
                let refined = refine(&model, limits, options.prefix_budget);
                let (event, blamed, exact) = match refined {
                    Some(exact) => (exact, Vec::new(), true),
                    None => (event, result.blamed, false),
                };
                violations.push(stuck(history, key, ops, &model, Stuck { event, blamed, exact }));
            }
            (SearchOutcome::Linearizable | SearchOutcome::GaveUp(_), Some(witness)) => {
                violations.push(zone_violation(key, ops, &model, &witness));
            }
            (SearchOutcome::GaveUp(reason), None) => unknown.push(format!("key {key:?}: {reason}")),
        }
    }
    let summary = format!(
        "{} keys: {} by zone test, {} searched ({} configurations, largest frontier {})",
        by_key.len(),
        tally.by_zones,
        tally.searched,
        tally.configurations,
        tally.frontier_max
    );
    let verdict = if !violations.is_empty() {
        Verdict::Violation(violations)
    } else if !unknown.is_empty() {
        Verdict::Unknown { reason: unknown.join("; ") }
    } else {
        Verdict::Valid
    };
    (verdict, summary)
}

/// Whether an operation can constrain the register (and so belongs in a window).
fn constrains(op: &Operation) -> bool {
    match (op.f, op.outcome) {
        (Function::Read, Outcome::Ok) => is_checked_read(op),
        (Function::Read, _) => false,
        (_, Outcome::Fail) => op.is_mismatch(),
        _ => true,
    }
}

/// Re-runs a failed search without looking ahead, to find the exact end of the longest
/// linearizable prefix; `None` when that takes longer than `budget`.
fn refine(model: &KeyModel, limits: Limits, budget: Duration) -> Option<usize> {
    if budget.is_zero() {
        return None;
    }
    let deadline = limits.deadline.min(Instant::now() + budget);
    let honest = search::search(model, Limits { deadline, prune_future: false, ..limits });
    match honest.outcome {
        SearchOutcome::Stuck(event) => Some(event),
        SearchOutcome::Linearizable | SearchOutcome::GaveUp(_) => None,
    }
}

/// Where a search got stuck.
struct Stuck {
    /// Position in the model's events.
    event: usize,
    /// Later steps whose needs made the search give up on the last configurations.
    blamed: Vec<usize>,
    /// Whether `event` is exactly where the longest linearizable prefix ends.
    exact: bool,
}

/// The violation for a stuck search: the step that could not be linearized, the operations
/// concurrent with it, the writers of the values it mentions, the last mutation that completed
/// before it was invoked, and any later operations the search blamed.
fn stuck(history: &History, key: &str, ops: &[&Operation], model: &KeyModel, stuck: Stuck) -> Violation {
    let model::KeyEvent::Return(step) = model.events[stuck.event] else {
        unreachable!("only a return can leave the frontier empty")
    };
    let culprit = &history.operations[model.steps[step].op];
    let blamed: Vec<&Operation> = stuck.blamed.iter().map(|&step| &history.operations[model.steps[step].op]).collect();
    let prefix_end = model.event_indices[stuck.event];
    let overlapping = |op: &&&Operation| op.invoke_index < prefix_end && op.end_index() > culprit.invoke_index;
    // Timed-out operations never end, so only those invoked while something in the window was
    // running count as concurrent.
    let earliest = ops
        .iter()
        .filter(|op| constrains(op) && op.outcome != Outcome::Info && overlapping(op))
        .map(|op| op.invoke_index)
        .min()
        .unwrap_or(culprit.invoke_index);
    let concurrent = ops
        .iter()
        .filter(|op| constrains(op) && overlapping(op) && (op.outcome != Outcome::Info || op.invoke_index >= earliest));
    let wanted: Vec<&str> =
        [culprit].iter().chain(&blamed).filter_map(|op| op.read_value().or(op.cas_expected()).flatten()).collect();
    let writers = ops.iter().filter(|op| op.written_value().is_some_and(|value| wanted.contains(&value)));
    let before = ops
        .iter()
        .filter(|op| op.is_mutation() && op.outcome == Outcome::Ok && op.precedes(culprit))
        .max_by_key(|op| op.end_index());
    let named = [culprit].into_iter().chain(blamed.iter().copied());
    let mut window: Vec<Operation> = concurrent.chain(writers).chain(before).copied().chain(named).cloned().collect();
    window.sort_by_key(|op| op.id);
    window.dedup_by_key(|op| op.id);
    let deadline =
        if culprit.outcome == Outcome::Info { " in time for the operation that observed its value" } else { "" };
    let prefix = if stuck.exact {
        format!("the longest linearizable prefix of the key ends just before {}", at_event(history, prefix_end))
    } else {
        let lines: Vec<String> = blamed.iter().map(|op| op.invoke_line.to_string()).collect();
        format!(
            "no linearization that also fits line(s) {} survives {} (the exact prefix end was not computed within budget)",
            lines.join(", "),
            at_event(history, prefix_end)
        )
    };
    Violation {
        key: Some(key.to_owned()),
        summary: format!(
            "key {key:?}: no linearization explains line {} ({} {}){deadline}; {prefix}",
            culprit.invoke_line, culprit.f, culprit.outcome,
        ),
        window,
        culprits: [culprit.id].into_iter().chain(blamed.iter().map(|op| op.id)).collect(),
        prefix_end: Some(prefix_end),
        watch_window: Vec::new(),
        watch_culprits: Vec::new(),
    }
}

/// The violation when the zone test failed and the search could not refine it.
fn zone_violation(key: &str, ops: &[&Operation], model: &KeyModel, witness: &[usize]) -> Violation {
    let culprits: Vec<usize> = witness.iter().map(|&step| model.steps[step].op).collect();
    let mut window: Vec<Operation> =
        ops.iter().filter(|op| culprits.contains(&op.id)).map(|op| (*op).clone()).collect();
    window.sort_by_key(|op| op.id);
    let reads_unwritten = witness.len() == 1 && matches!(model.steps[witness[0]].pre, Pre::Eq(_));
    let why =
        if reads_unwritten { "a read returned a value nobody wrote" } else { "the zones of these values conflict" };
    let first = window.first().map_or(0, |op| op.invoke_line);
    Violation {
        key: Some(key.to_owned()),
        summary: format!("key {key:?}: not linearizable: {why} (Gibbons & Korach zone test; from line {first})"),
        window,
        culprits,
        prefix_end: None,
        watch_window: Vec::new(),
        watch_culprits: Vec::new(),
    }
}
