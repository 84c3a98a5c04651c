//! Durability: every acknowledged write survives into the final reads.
//!
//! After the nemesis stops and the cluster heals, the run makes one linearizable read per key
//! marked `final`. Every ok write or compare-and-set on that key must then be visible in the
//! final read, or superseded: some other mutation of the key may have taken effect after it.
//! "May have" is decided without the full search:
//! - an ok mutation with a higher revision supersedes it;
//! - an ok mutation without a revision, or a timed-out one, may supersede it unless it completed
//!   before the write was invoked (then it is ordered before, in real time).
//!
//! Keys without a final read are skipped and counted.

use std::collections::BTreeMap;

use super::{Verdict, Violation};
use crate::history::{Function, History, Operation, Outcome};

/// The most violations reported; the rest are counted.
const REPORTED_MAX: usize = 20;

/// Checks every key that has a final read; see the module documentation.
pub fn check(history: &History) -> (Verdict, String) {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &history.operations {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let (mut checked, mut skipped, mut writes, mut lost) = (0, 0, 0, 0);
    let mut violations = Vec::new();
    for (key, ops) in &by_key {
        let last_final = ops
            .iter()
            .filter(|op| op.is_final && op.outcome == Outcome::Ok && op.f == Function::Read)
            .max_by_key(|op| op.end_index());
        let Some(final_read) = last_final else {
            skipped += 1;
            continue;
        };
        checked += 1;
        let supersessions = Supersessions::new(final_read, ops);
        for write in ops.iter().filter(|op| op.outcome == Outcome::Ok && op.written_value().is_some()) {
            writes += 1;
            if final_read.read_value() == Some(write.written_value()) || supersessions.superseded(write) {
                continue;
            }
            lost += 1;
            if violations.len() < REPORTED_MAX {
                violations.push(Violation {
                    key: Some((*key).to_owned()),
                    summary: format!(
                        "acknowledged {} on line {} is neither in the final read on line {} nor superseded",
                        write.f,
                        write.complete_line.unwrap_or(write.invoke_line),
                        final_read.complete_line.unwrap_or(final_read.invoke_line)
                    ),
                    window: vec![(*write).clone(), (*final_read).clone()],
                    culprits: vec![write.id],
                    prefix_end: None,
                    watch_window: Vec::new(),
                    watch_culprits: Vec::new(),
                });
            }
        }
    }
    let summary = format!(
        "{checked} keys with a final read ({skipped} without, skipped), {writes} acknowledged writes, {lost} lost"
    );
    let verdict = if violations.is_empty() { Verdict::Valid } else { Verdict::Violation(violations) };
    (verdict, summary)
}

/// What may supersede a write on one key, summarised so each write is checked in O(1).
struct Supersessions {
    /// The highest revision among ok mutations that changed the key.
    revision_max: Option<u64>,
    /// The two latest completions (index, operation id) among mutations that carry no revision
    /// or timed out (`u64::MAX`): two, so that a write never counts as superseding itself.
    uncertain_ends: [(u64, usize); 2],
    /// The same over all mutations, for a write that itself carries no revision.
    any_ends: [(u64, usize); 2],
}

/// Keeps the two largest entries.
fn keep_two(top: &mut [(u64, usize); 2], entry: (u64, usize)) {
    if entry > top[0] {
        *top = [entry, top[0]];
    } else if entry > top[1] {
        top[1] = entry;
    }
}

/// The largest entry that is not operation `id`'s, or `None`.
fn largest_other(top: &[(u64, usize); 2], id: usize) -> Option<u64> {
    let (end, other) = if top[0].1 == id { top[1] } else { top[0] };
    (other != usize::MAX).then_some(end)
}

impl Supersessions {
    fn new(final_read: &Operation, ops: &[&Operation]) -> Supersessions {
        let none = [(0, usize::MAX); 2];
        let mut summary = Supersessions { revision_max: None, uncertain_ends: none, any_ends: none };
        for op in ops {
            let is_mutation = op.is_mutation() && op.outcome != Outcome::Fail && op.deleted() != Some(false);
            if !is_mutation || op.invoke_index > final_read.invoke_index {
                continue;
            }
            keep_two(&mut summary.any_ends, (op.end_index(), op.id));
            match (op.outcome, op.revision) {
                (Outcome::Ok, Some(revision)) => summary.revision_max = summary.revision_max.max(Some(revision)),
                _ => keep_two(&mut summary.uncertain_ends, (op.end_index(), op.id)),
            }
        }
        summary
    }

    /// Whether some other mutation may have taken effect after `write`: one with a higher
    /// revision, or one without a revision that did not complete before `write` was invoked.
    fn superseded(&self, write: &Operation) -> bool {
        let (by_revision, ends) = match write.revision {
            Some(ours) => (self.revision_max > Some(ours), &self.uncertain_ends),
            None => (false, &self.any_ends),
        };
        by_revision || largest_other(ends, write.id).is_some_and(|end| end > write.invoke_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    fn verdict(script: &str) -> (Verdict, String) {
        check(&history(script))
    }

    /// Goal: the last write visible in the final read, and earlier ones superseded, pass.
    #[test]
    fn visible_or_superseded_writes_pass() {
        let script = "p0 invoke write x a
            p0 ok write x a rev=1
            p0 invoke write x b
            p0 ok write x b rev=2
            p9 invoke read x final=true
            p9 ok read x b rev=2 final=true";
        assert_eq!(verdict(script).0, Verdict::Valid);
    }

    /// Goal: an acknowledged write missing from the final read, with nothing after it, is lost.
    #[test]
    fn lost_write_is_a_violation() {
        let script = "p0 invoke write x a
            p0 ok write x a rev=1
            p0 invoke write x b
            p0 ok write x b rev=2
            p9 invoke read x final=true
            p9 ok read x a rev=2 final=true";
        assert!(matches!(verdict(script).0, Verdict::Violation(v) if v[0].culprits == [1]));
    }

    /// Goal: a timed-out mutation may have superseded a write, so it is not counted as lost.
    #[test]
    fn info_mutation_may_supersede() {
        let script = "p0 invoke write x a
            p0 ok write x a rev=1
            p1 invoke delete x
            p1 info delete x
            p9 invoke read x final=true
            p9 ok read x null rev=2 final=true";
        assert_eq!(verdict(script).0, Verdict::Valid);
    }

    /// Goal: keys without a final read are skipped and counted, not failed.
    #[test]
    fn keys_without_final_read_are_skipped() {
        let (verdict, summary) = verdict("p0 invoke write x a\np0 ok write x a rev=1");
        assert_eq!(verdict, Verdict::Valid);
        assert!(summary.contains("1 without"), "{summary}");
    }
}
