//! The watch checker on hand-made histories: one that passes every rule, and one that breaks
//! each rule on its own.

use super::*;
use crate::testing::history;

/// Five revisions: 1 put a=v1, 2 put b=v2, 3 delete a, 4 put a=v3 (timed out, so its revision is
/// unknown), 5 put b=v4 (a cas). Watcher lines come after it, so every source was invoked first.
const WRITES: &str = "p0 invoke write a v1
    p0 ok write a v1 rev=1
    p0 invoke write b v2
    p0 ok write b v2 rev=2
    p0 invoke delete a
    p0 ok delete a true rev=3
    p0 invoke write a v3
    p0 info write a v3 err=timeout
    p1 invoke cas b v2 v4
    p1 ok cas b v2 v4 rev=5";

fn verdict(watch: &str) -> Verdict {
    check(&history(&format!("{WRITES}\n{watch}"))).0
}

/// The violations of `watch` over [`WRITES`], asserting there are some.
fn violations(watch: &str) -> Vec<Violation> {
    match verdict(watch) {
        Verdict::Violation(violations) => violations,
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// Goal: a watcher on `""` that reconnects at last + 1 and sees every revision, and a watcher on
/// `b` that sees only b's changes, pass; a timed-out write explains the change at revision 4,
/// and both watchers agree on revisions 2 and 5. Method: the whole history, checked.
#[test]
fn complete_ordered_watches_pass() {
    let watch = "w1 resume 1 node=0
        w1 event put a v1 1 node=0
        w1 event put b v2 2 node=0
        w1 resume 3 node=1
        w1 event delete a 3 node=1
        w1 event put a v3 4 node=1
        w1 event put b v4 5 node=1
        w2 resume 0 prefix=b
        w2 event put b v2 2
        w2 resume 3 prefix=b
        w2 event put b v4 5";
    let (verdict, summary) = check(&history(&format!("{WRITES}\n{watch}")));
    assert_eq!(verdict, Verdict::Valid, "{summary}");
    assert_eq!(summary, "2 watchers, 7 deliveries, 4 resumes (0 refused as compacted), 0 violations");
}

/// Goal: on `""`, a skipped revision within one connection is a gap, blamed on the delivery
/// after it, with both deliveries and the skipped mutation in the window.
#[test]
fn skipped_revision_on_one_connection_is_a_gap() {
    let found = violations(
        "w1 resume 1
         w1 event put a v1 1
         w1 event delete a 3",
    );
    assert_eq!(found.len(), 1);
    let gap = &found[0];
    assert!(gap.summary.starts_with("gap: watcher 1 on prefix \"\" delivered revision 3"), "{}", gap.summary);
    assert!(gap.summary.contains("revisions 2..=2 were never delivered"), "{}", gap.summary);
    let lines: Vec<usize> = gap.watch_window.iter().map(|line| line.line).collect();
    assert_eq!((lines, gap.watch_culprits.clone()), (vec![12, 13], vec![13]));
    assert_eq!(gap.window.iter().map(|op| op.written_value()).collect::<Vec<_>>(), vec![Some("v2")]);
    assert_eq!(gap.key.as_deref(), Some("b"));
}

/// Goal: a resume that is not at last + 1 and was not refused does not excuse a gap, and neither
/// does a watcher whose first delivery is past its start. Method: both, on `""`.
#[test]
fn gaps_across_a_resume_and_after_the_start_are_reported() {
    let found = violations(
        "w1 resume 1
         w1 event put a v1 1
         w1 resume 3
         w1 event delete a 3",
    );
    assert!(found[0].summary.contains("after revision 1 (line 12)"), "{}", found[0].summary);
    assert_eq!(found[0].watch_window.len(), 3, "both deliveries and the resume between them");
    let found = violations("w1 resume 1\nw1 event put b v2 2");
    assert!(found[0].summary.contains("since its resume from revision 1"), "{}", found[0].summary);
}

/// Goal: on a prefix, a gap is a skipped ok mutation of a matching key; mutations of other keys
/// in between are not. Method: a watcher on `b` whose first delivery, from revision 0, is b=v4
/// at 5, skipping b=v2 at 2.
#[test]
fn skipped_matching_mutation_on_a_prefix_is_a_gap() {
    let found = violations("w2 resume 0 prefix=b\nw2 event put b v4 5");
    assert_eq!(found.len(), 1);
    assert!(found[0].summary.contains("the write of \"b\" on line 4 (revision 2)"), "{}", found[0].summary);
    assert_eq!(found[0].window[0].revision, Some(2));
}

/// Goal: a revision delivered twice is a duplicate, even across a reconnect.
#[test]
fn duplicate_delivery_is_a_violation() {
    let found = violations(
        "w1 resume 1
         w1 event put a v1 1
         w1 resume 1
         w1 event put a v1 1
         w1 event put b v2 2",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].summary.contains("delivered revision 1 on line 14 again (duplicate)"), "{}", found[0].summary);
    assert_eq!(found[0].watch_culprits, vec![14]);
}

/// Goal: a lower revision after a higher one is out of order (and the jump before it a gap).
#[test]
fn out_of_order_delivery_is_a_violation() {
    let found = violations(
        "w1 resume 1
         w1 event put a v1 1
         w1 event delete a 3
         w1 event put b v2 2",
    );
    assert!(found.iter().any(|v| v.summary.contains("revision 2 on line 14 out of order")), "{found:?}");
}

/// Goal: after `resume(r)` the first delivery is at least r.
#[test]
fn delivery_older_than_the_resume_is_a_violation() {
    let found = violations("w1 resume 3\nw1 event put b v2 2");
    assert!(found[0].summary.contains("resumed from revision 3 on line 11"), "{}", found[0].summary);
}

/// Goal: a delivered change nobody made is invented: a value never written, and a delete of a
/// key nobody deleted.
#[test]
fn change_without_a_matching_mutation_is_a_violation() {
    let found = violations("w1 resume 6\nw1 event put a zzz 6");
    assert!(found[0].summary.contains("no write or cas of that value"), "{}", found[0].summary);
    let found = violations("w1 resume 6\nw1 event delete b 6");
    assert!(found[0].summary.contains("no delete of that key"), "{}", found[0].summary);
}

/// Goal: a delivery must be the mutation the history has at that revision, and a write with a
/// known revision cannot be delivered at another one.
#[test]
fn change_differing_from_the_write_at_its_revision_is_a_violation() {
    let found = violations("w2 resume 2 prefix=b\nw2 event put b v9 2");
    assert!(found.iter().any(|v| v.summary.contains("revision 2 is the write of \"b\" \"v2\"")), "{found:?}");
    let found = violations("w1 resume 6\nw1 event put b v2 6");
    assert!(found[0].summary.contains("its write on line 3 has revision 2"), "{}", found[0].summary);
    assert_eq!(found[0].window.len(), 1);
}

/// Goal: a change delivered before its write was invoked is from the future.
#[test]
fn change_delivered_before_its_write_was_invoked_is_a_violation() {
    let script = "w1 resume 1
        w1 event put a v1 1
        p0 invoke write a v1
        p0 ok write a v1 rev=1";
    let Verdict::Violation(found) = check(&history(script)).0 else { panic!("expected a violation") };
    assert!(found[0].summary.contains("before its write on line 3 was invoked"), "{}", found[0].summary);
}

/// Goal: a timed-out write applies once, so its value cannot turn up at two revisions.
#[test]
fn single_unrevisioned_write_delivered_at_two_revisions_is_a_violation() {
    let found = violations(
        "w1 resume 4
         w1 event put a v3 4
         w2 resume 6 prefix=a
         w2 event put a v3 6",
    );
    assert!(found.iter().any(|v| v.summary.contains("at revision 4 on line 12 and at revision 6")), "{found:?}");
}

/// Goal: two watchers must agree on what happened at one revision. Method: the timed-out write
/// explains both a=v3 and… nothing else, so a second watcher calling revision 4 "delete a"
/// disagrees with the first (and has no source either).
#[test]
fn watchers_disagreeing_about_a_revision_is_a_violation() {
    let found = violations(
        "w1 resume 4
         w1 event put a v3 4
         w2 resume 4 prefix=a
         w2 event delete a 4",
    );
    let disagreement = found.iter().find(|v| v.summary.contains("watchers 1 and 2 disagree about revision 4"));
    let disagreement = disagreement.unwrap_or_else(|| panic!("{found:?}"));
    assert_eq!(disagreement.watch_window.len(), 2);
    assert_eq!(disagreement.watch_culprits, vec![14]);
}

/// Goal: a resume refused as compacted lets the watcher skip ahead without a gap; the same
/// skip without the marker is a gap. Method: both.
#[test]
fn gap_is_allowed_only_across_a_compaction_marker() {
    let skip = "w1 resume 1
        w1 event put a v1 1
        w1 resume 2
        w1 compacted 2 4
        w1 resume 4
        w1 event put a v3 4
        w1 event put b v4 5";
    assert_eq!(verdict(skip), Verdict::Valid);
    let (verdict, summary) = check(&history(&format!("{WRITES}\n{skip}")));
    assert!(summary.contains("3 resumes (1 refused as compacted)"), "{verdict:?} {summary}");
    let found = violations(&skip.replace("w1 compacted 2 4\n", ""));
    assert!(found[0].summary.starts_with("gap:"), "{}", found[0].summary);
}

/// Goal: a node refuses a resume as compacted only when the start is older than what it kept.
#[test]
fn refusing_a_start_the_node_still_has_is_a_violation() {
    let found = violations("w1 resume 4\nw1 compacted 4 3");
    assert!(found[0].summary.contains("history from revision 3 was kept"), "{}", found[0].summary);
}

/// Goal: a watcher only gets keys under its prefix.
#[test]
fn key_outside_the_prefix_is_a_violation() {
    let found = violations("w2 resume 1 prefix=b\nw2 event put a v1 1");
    assert!(found[0].summary.contains("on prefix \"b\" delivered key \"a\""), "{}", found[0].summary);
}
