//! Long polls: a read that waited for news never answers with older data.
//!
//! `GET /v1/kv/{key}?wait=5s&revision=R` returns at once if the key changed after revision R and
//! otherwise waits (until a change or the timeout); either way it must never return data older
//! than revision R. The history records such a read with `"after":R`, and the property is:
//! an ok read with `after: R` has a completion `revision` ≥ R. A read that waited and timed out
//! is still served at the store's current revision, which is at least R, so equality is fine.
//!
//! This is its own checker rather than a third pass of [`super::stale`] because it applies to
//! long polls at every consistency level; what the read returned is judged as for any other read
//! (linearizability or staleness, by its `consistency`). Ok long polls without a `revision` are
//! counted and skipped. One pass, O(n).

use super::{Verdict, Violation};
use crate::history::{Function, History, Operation, Outcome};

/// The most violations reported; the rest are counted.
const REPORTED_MAX: usize = 20;

/// Checks every ok long-poll read; see the module documentation.
pub fn check(history: &History) -> (Verdict, String) {
    let polls: Vec<(&Operation, u64)> = history
        .operations
        .iter()
        .filter(|op| op.f == Function::Read && op.outcome == Outcome::Ok)
        .filter_map(|op| Some((op, op.after?)))
        .collect();
    let mut unrevisioned = 0;
    let mut found = 0;
    let mut violations = Vec::new();
    for (op, after) in &polls {
        let Some(revision) = op.revision else {
            unrevisioned += 1;
            continue;
        };
        if revision >= *after {
            continue;
        }
        found += 1;
        if violations.len() < REPORTED_MAX {
            violations.push(Violation {
                key: Some(op.key.clone()),
                summary: format!(
                    "long poll on line {} asked for data after revision {after} but was answered at revision {revision}",
                    op.complete_line.unwrap_or(op.invoke_line)
                ),
                window: vec![(*op).clone()],
                culprits: vec![op.id],
                prefix_end: None,
                watch_window: Vec::new(),
                watch_culprits: Vec::new(),
            });
        }
    }
    let summary =
        format!("{} ok long polls, {unrevisioned} without a revision (skipped), {found} violations", polls.len());
    let verdict = if violations.is_empty() { Verdict::Valid } else { Verdict::Violation(violations) };
    (verdict, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    /// Goal: a long poll answered at or after its `after` revision passes, whether the key
    /// changed (a newer mod_revision) or the wait timed out (the same data, at a revision ≥ R);
    /// failed long polls and ordinary reads are not judged. Method: one of each.
    #[test]
    fn long_polls_answered_at_or_after_their_revision_pass() {
        let script = "p0 invoke write x a
            p0 ok write x a rev=1
            p1 invoke read x after=1
            p0 invoke write x b
            p0 ok write x b rev=2
            p1 ok read x b rev=2 mod=2 after=1
            p1 invoke read x after=2
            p1 ok read x b rev=2 mod=2
            p1 invoke read x after=9
            p1 fail read x err=timeout
            p2 invoke read x
            p2 ok read x b rev=2 mod=2";
        let (verdict, summary) = check(&history(script));
        assert_eq!(verdict, Verdict::Valid, "{summary}");
        assert!(summary.starts_with("2 ok long polls"), "{summary}");
    }

    /// Goal: a long poll must never answer with data older than the revision it waited past.
    /// Method: a poll after revision 2 answered at revision 1 is reported, blaming the read.
    #[test]
    fn long_poll_answering_older_than_its_after_is_a_violation() {
        let script = "p0 invoke write x a
            p0 ok write x a rev=1
            p0 invoke write x b
            p0 ok write x b rev=2
            p1 invoke read x after=2 cons=stale
            p1 ok read x a rev=1 mod=1 node=2";
        let Verdict::Violation(violations) = check(&history(script)).0 else { panic!("expected a violation") };
        assert!(violations[0].summary.contains("after revision 2 but was answered at revision 1"));
        assert_eq!((violations[0].culprits.as_slice(), violations[0].window.len()), ([2].as_slice(), 1));
    }
}
