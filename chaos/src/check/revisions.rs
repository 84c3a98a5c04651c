//! Revisions of acknowledged mutations: unique, and increasing in real-time order.
//!
//! Every ok write, ok compare-and-set and ok delete that deleted something created one revision
//! of the store. Two such mutations never share a revision, and if A completed before B was
//! invoked then rev(A) < rev(B): revisions are a linearization order, and that order must extend
//! real-time order (Herlihy & Wing 1990). A delete that deleted nothing carries the store's
//! current revision, and timed-out mutations carry none, so neither is checked.
//!
//! Both checks are O(n log n): uniqueness by sorting on revision; real-time order by a sweep over
//! events that keeps the highest revision among mutations completed so far.

use super::{Verdict, Violation};
use crate::history::{Function, History, Operation, Outcome};

/// Checks both properties; see the module documentation.
pub fn check(history: &History) -> (Verdict, String) {
    let mutations: Vec<(&Operation, u64)> = history
        .operations
        .iter()
        .filter(|op| op.outcome == Outcome::Ok && op.is_mutation())
        .filter(|op| op.f != Function::Delete || op.deleted() != Some(false))
        .filter_map(|op| Some((op, op.revision?)))
        .collect();
    let unrevisioned = history
        .operations
        .iter()
        .filter(|op| op.outcome == Outcome::Ok && op.is_mutation() && op.revision.is_none())
        .count();
    let mut violations: Vec<Violation> = duplicate(&mutations).into_iter().chain(going_back(&mutations)).collect();
    violations.sort_by_key(|violation| violation.culprits.clone());
    let summary = format!("{} revisioned mutations, {unrevisioned} ok mutations without a revision", mutations.len());
    let verdict = if violations.is_empty() { Verdict::Valid } else { Verdict::Violation(violations) };
    (verdict, summary)
}

fn violation(summary: String, first: &Operation, second: &Operation) -> Violation {
    Violation {
        key: (first.key == second.key).then(|| first.key.clone()),
        summary,
        window: vec![first.clone(), second.clone()],
        culprits: vec![second.id],
        prefix_end: None,
        watch_window: Vec::new(),
        watch_culprits: Vec::new(),
    }
}

/// The first pair of mutations sharing a revision.
fn duplicate(mutations: &[(&Operation, u64)]) -> Option<Violation> {
    let mut by_revision: Vec<&(&Operation, u64)> = mutations.iter().collect();
    by_revision.sort_by_key(|(op, revision)| (*revision, op.id));
    let pair = by_revision.windows(2).find(|pair| pair[0].1 == pair[1].1)?;
    let ((first, revision), (second, _)) = (pair[0], pair[1]);
    let summary = format!(
        "revision {revision} was given to two mutations: line {} and line {}",
        first.complete_line.unwrap_or(first.invoke_line),
        second.complete_line.unwrap_or(second.invoke_line)
    );
    Some(violation(summary, first, second))
}

/// The first mutation whose revision is not above that of some mutation that completed before
/// it was invoked.
fn going_back(mutations: &[(&Operation, u64)]) -> Option<Violation> {
    let mut completions: Vec<(u64, &Operation, u64)> =
        mutations.iter().map(|(op, revision)| (op.end_index(), *op, *revision)).collect();
    completions.sort_by_key(|(end, _, _)| *end);
    let mut invokes: Vec<&(&Operation, u64)> = mutations.iter().collect();
    invokes.sort_by_key(|(op, _)| op.invoke_index);
    let mut completed = completions.iter().peekable();
    let mut highest: Option<(&Operation, u64)> = None;
    for (op, revision) in invokes {
        while let Some((_, done, done_revision)) = completed.next_if(|(end, _, _)| *end < op.invoke_index) {
            if highest.is_none_or(|(_, best)| *done_revision > best) {
                highest = Some((done, *done_revision));
            }
        }
        if let Some((earlier, earlier_revision)) = highest
            && earlier_revision >= *revision
        {
            let summary = format!(
                "revision {revision} of line {} is not above revision {earlier_revision} of line {}, which completed before it was invoked",
                op.complete_line.unwrap_or(op.invoke_line),
                earlier.complete_line.unwrap_or(earlier.invoke_line)
            );
            return Some(violation(summary, earlier, op));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    /// Goal: increasing, unique revisions pass, and concurrent mutations may be in either order.
    #[test]
    fn increasing_revisions_pass_and_concurrent_ones_may_swap() {
        let script = "p0 invoke write x a
            p1 invoke write y b
            p1 ok write y b rev=1
            p0 ok write x a rev=2
            p0 invoke delete x
            p0 ok delete x true rev=3
            p0 invoke delete x
            p0 ok delete x false rev=3";
        assert_eq!(check(&history(script)).0, Verdict::Valid);
    }

    /// Goal: two mutations with one revision are a violation.
    #[test]
    fn duplicate_revision_is_a_violation() {
        let script = "p0 invoke write x a
            p1 invoke write y b
            p0 ok write x a rev=4
            p1 ok write y b rev=4";
        assert!(matches!(check(&history(script)).0, Verdict::Violation(v) if v[0].summary.contains("two mutations")));
    }

    /// Goal: a mutation invoked after another completed must get a higher revision.
    #[test]
    fn revision_going_back_in_real_time_is_a_violation() {
        let script = "p0 invoke write x a
            p0 ok write x a rev=5
            p1 invoke cas y null b
            p1 ok cas y null b rev=3";
        assert!(matches!(check(&history(script)).0, Verdict::Violation(v) if v[0].summary.contains("not above")));
    }
}
