//! Hand-made histories that are and are not linearizable, including the classic Jepsen cases.

use std::time::{Duration, Instant};

use super::*;
use crate::generate::{Workload, generate};
use crate::testing::history;

fn check_script(script: &str) -> Verdict {
    check(&history(script), &CheckOptions::default()).0
}

fn assert_valid(script: &str) {
    let verdict = check_script(script);
    assert_eq!(verdict, Verdict::Valid, "expected linearizable:\n{script}");
}

/// Asserts a violation and returns the culprit's invoke line and where the prefix ends.
fn assert_violation(script: &str) -> (usize, Option<u64>) {
    let Verdict::Violation(violations) = check_script(script) else {
        panic!("expected a violation:\n{script}");
    };
    let violation = &violations[0];
    let culprit = violation.window.iter().find(|op| op.id == violation.culprits[0]).unwrap();
    (culprit.invoke_line, violation.prefix_end)
}

/// Goal: the simplest correct register history passes (through the zone test).
#[test]
fn sequential_writes_and_reads_are_linearizable() {
    assert_valid(
        "p0 invoke read x
         p0 ok read x null
         p0 invoke write x a
         p0 ok write x a
         p1 invoke read x
         p1 ok read x a",
    );
}

/// Goal: a read that returns a value overwritten by a write that completed before the read
/// began is caught, and blamed on that read. Jepsen's "stale read".
#[test]
fn stale_read_after_completed_write_is_a_violation() {
    let (line, prefix_end) = assert_violation(
        "p0 invoke write x a
         p0 ok write x a
         p0 invoke write x b
         p0 ok write x b
         p1 invoke read x
         p1 ok read x a",
    );
    assert_eq!((line, prefix_end), (5, Some(5)));
}

/// Goal: concurrent writes may be read in either order.
#[test]
fn concurrent_writes_may_linearize_in_either_order() {
    assert_valid(
        "p0 invoke write x a
         p1 invoke write x b
         p0 ok write x a
         p1 ok write x b
         p2 invoke read x
         p2 ok read x a",
    );
}

/// Goal: a read of a value nobody wrote is a violation.
#[test]
fn read_of_never_written_value_is_a_violation() {
    let (line, _) = assert_violation(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke read x
         p1 ok read x ghost",
    );
    assert_eq!(line, 3);
}

/// Goal: two compare-and-sets from the same expected value cannot both succeed: the "lost CAS"
/// (lost update) anomaly.
#[test]
fn two_successful_cas_from_the_same_value_are_a_violation() {
    assert_violation(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke cas x a b
         p2 invoke cas x a c
         p1 ok cas x a b
         p2 ok cas x a c",
    );
}

/// Goal: a timed-out write must be modelled: reading its value is valid only because it may
/// have taken effect, and then it must have taken effect before the read returned.
#[test]
fn info_write_explains_a_read_of_its_value() {
    assert_valid(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke write x b
         p1 info write x b err=timeout
         p2 invoke read x
         p2 ok read x b
         p3 invoke read x
         p3 ok read x b",
    );
    // Once the info write is seen, the register cannot go back to the older value.
    assert_violation(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke write x b
         p1 info write x b err=timeout
         p2 invoke read x
         p2 ok read x b
         p3 invoke read x
         p3 ok read x a",
    );
}

/// Goal: a timed-out write may also never take effect.
#[test]
fn info_write_may_not_have_taken_effect() {
    assert_valid(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke write x b
         p1 info write x b
         p2 invoke read x
         p2 ok read x a",
    );
}

/// Goal: a value read before its timed-out writer was invoked is a violation (the deadline
/// precedes the invoke).
#[test]
fn read_of_an_info_write_invoked_later_is_a_violation() {
    assert_violation(
        "p2 invoke read x
         p2 ok read x b
         p1 invoke write x b
         p1 info write x b",
    );
}

/// Goal: an info cas whose new value is read must have succeeded, so the info write it
/// depended on must have taken effect before it: deadlines chain through both.
#[test]
fn info_operations_chain_through_observed_values() {
    assert_valid(
        "p0 invoke write x a
         p0 info write x a
         p1 invoke cas x a b
         p1 info cas x a b
         p2 invoke read x
         p2 ok read x b",
    );
    assert_violation(
        "p0 invoke write x a
         p0 info write x a
         p1 invoke cas x c b
         p1 info cas x c b
         p2 invoke read x
         p2 ok read x b",
    );
}

/// Goal: delete then recreate is linearizable, and a read of absent after the recreation
/// completed is not.
#[test]
fn delete_and_recreate() {
    let prefix = "p0 invoke write x a
         p0 ok write x a
         p0 invoke delete x
         p0 ok delete x true
         p1 invoke read x
         p1 ok read x null
         p0 invoke cas x null b
         p0 ok cas x null b
         p1 invoke read x";
    assert_valid(&format!("{prefix}\np1 ok read x b"));
    assert_violation(&format!("{prefix}\np1 ok read x null"));
}

/// Goal: a delete that reports it deleted nothing is an observation of absence.
#[test]
fn delete_reporting_nothing_deleted_must_see_absence() {
    assert_violation(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke delete x
         p1 ok delete x false",
    );
    assert_valid(
        "p1 invoke delete x
         p1 ok delete x false
         p0 invoke write x a
         p0 ok write x a",
    );
}

/// Goal: a cas that failed with revision_mismatch observed a different value: fine when a
/// concurrent write explains it, a violation when the key surely held the expected value.
#[test]
fn mismatch_failures_are_observations() {
    assert_violation(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke cas x a b
         p1 fail cas x a b err=revision_mismatch",
    );
    assert_valid(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke cas x a b
         p2 invoke write x c
         p1 fail cas x a b err=revision_mismatch
         p2 ok write x c
         p3 invoke read x
         p3 ok read x c",
    );
    // Any other failure means "not applied" and says nothing about the value.
    assert_valid(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke cas x a b
         p1 fail cas x a b err=no_leader
         p2 invoke read x
         p2 ok read x a",
    );
}

/// Goal: a timed-out delete may explain a read of absence, and timed-out writes of values
/// nobody reads may explain a mismatch.
#[test]
fn pooled_info_operations_explain_observations() {
    assert_valid(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke delete x
         p1 info delete x
         p2 invoke read x
         p2 ok read x null",
    );
    assert_valid(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke write x junk
         p1 info write x junk
         p2 invoke cas x a b
         p2 fail cas x a b err=revision_mismatch",
    );
}

/// Goal: stale reads are not linearizability-checked (the stale checker owns them).
#[test]
fn stale_reads_are_ignored() {
    assert_valid(
        "p0 invoke write x a
         p0 ok write x a
         p0 invoke write x b
         p0 ok write x b
         p1 invoke read x cons=stale
         p1 ok read x a cons=stale",
    );
}

/// Goal: keys are checked independently (P-compositionality) and the violation names the key.
#[test]
fn each_key_is_checked_on_its_own() {
    let Verdict::Violation(violations) = check_script(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke write y a
         p1 ok write y a
         p0 invoke write x b
         p0 ok write x b
         p1 invoke read x
         p1 ok read x a
         p2 invoke read y
         p2 ok read y a",
    ) else {
        panic!("expected a violation")
    };
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].key.as_deref(), Some("x"));
}

/// Goal: a budget that runs out yields Unknown, never a pass.
#[test]
fn exhausted_budget_is_unknown_not_valid() {
    let mut workload = Workload::new(7);
    (workload.keys, workload.clients, workload.operations) = (1, 8, 400);
    let history = History::from_events(generate(&workload)).unwrap();
    let options = CheckOptions { budget: Duration::from_nanos(1), ..CheckOptions::default() };
    let (verdict, _) = check(&history, &options);
    assert!(matches!(verdict, Verdict::Unknown { .. }), "{verdict:?}");
}

/// Goal: the zone test and the search agree. Method: generated histories of completed writes
/// and reads only, checked by both, valid as generated and after planting a stale read.
#[test]
fn zone_test_agrees_with_search() {
    for seed in 0..30 {
        let mut workload = Workload::new(seed);
        (workload.keys, workload.clients, workload.operations) = (1, 4, 60);
        (workload.mix, workload.timeouts_percent, workload.failures_percent) = ([50, 50, 0, 0], 0, 0);
        workload.stale_reads_percent = 0;
        let mut events = generate(&workload);
        if seed % 2 == 1 {
            crate::generate::inject(&mut events, crate::generate::Anomaly::StaleRead, seed);
        }
        let history = History::from_events(events).unwrap();
        let ops: Vec<&Operation> = history.operations.iter().collect();
        let model = model::build(&ops);
        assert!(zones::applies(&model));
        let limits = Limits {
            deadline: Instant::now() + Duration::from_secs(10),
            configurations_max: 1_000_000,
            prune_future: true,
        };
        let searched = search::search(&model, limits).outcome == SearchOutcome::Linearizable;
        assert_eq!(zones::check(&model).is_ok(), searched, "seed {seed}");
    }
}

/// Goal: on a violation found by looking ahead, the exact end of the longest linearizable
/// prefix is still reported. Method: a read of `a` long after `a` was overwritten, preceded by
/// reads that force the overwrite; the culprit must be that late read, not an earlier one.
#[test]
fn reported_prefix_ends_at_the_read_that_cannot_be_explained() {
    let (line, prefix_end) = assert_violation(
        "p0 invoke write x a
         p0 ok write x a
         p1 invoke cas x a b
         p1 ok cas x a b
         p2 invoke read x
         p2 ok read x b
         p3 invoke read x
         p3 ok read x a",
    );
    assert_eq!((line, prefix_end), (7, Some(7)));
}

/// A plain Wing & Gong search with none of the reductions, for cross-checking on small
/// histories: linearize any operation no unlinearized completed operation precedes, memoized on
/// (linearized set, value); timed-out operations are optional.
fn brute_force(history: &History) -> bool {
    let ops: Vec<&Operation> = history.operations.iter().filter(|op| constrains(op)).collect();
    assert!(ops.len() <= 64);
    let required: u64 = ops.iter().enumerate().filter(|(_, op)| op.outcome != Outcome::Info).map(|(i, _)| 1 << i).sum();
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<(u64, Option<&str>)> = vec![(0, None)];
    while let Some((done, state)) = stack.pop() {
        if done & required == required {
            return true;
        }
        if !seen.insert((done, state)) {
            continue;
        }
        for (i, op) in ops.iter().enumerate() {
            let blocked = ops.iter().enumerate().any(|(j, other)| {
                done & (1 << j) == 0 && required & (1 << j) != 0 && other.end_index() < op.invoke_index
            });
            if done & (1 << i) != 0 || blocked {
                continue;
            }
            if let Some(next) = step(op, state) {
                stack.push((done | 1 << i, next));
            }
        }
    }
    false
}

/// The register semantics of one operation: the value after it, or `None` if it cannot apply.
fn step<'h>(op: &'h Operation, state: Option<&'h str>) -> Option<Option<&'h str>> {
    match op.f {
        Function::Read => (op.read_value()? == state).then_some(state),
        Function::Cas if op.is_mismatch() => (op.cas_expected()? != state).then_some(state),
        Function::Cas => (op.cas_expected()? == state).then_some(op.written_value()),
        Function::Write => Some(op.written_value()),
        Function::Delete => match op.deleted() {
            Some(true) => state.map(|_| None),
            Some(false) => state.is_none().then_some(None),
            None => Some(None),
        },
    }
}

/// Goal: the reductions (eager observations, junk, hiding, pools, deadlines, expiry, pruning)
/// never change a verdict. Method: small random histories, many with a random read result,
/// cas outcome or delete result changed, decided by the full checker and by a plain search.
#[test]
fn search_agrees_with_plain_wing_gong_search() {
    let mut rng = crate::generate::Rng::new(5);
    let (mut valid, mut invalid) = (0, 0);
    for seed in 0..3000 {
        let mut workload = Workload::new(seed);
        (workload.keys, workload.clients, workload.operations) = (1, 2 + seed as usize % 5, 16);
        (workload.timeouts_percent, workload.failures_percent, workload.stale_reads_percent) = (30, 5, 0);
        workload.mix = [30, 20, 30, 20];
        workload.latency_ns = (100_000, 3_000_000);
        workload.final_reads = false;
        let mut events = generate(&workload);
        if seed % 3 != 0 {
            perturb(&mut events, &mut rng);
        }
        let history = History::from_events(events).unwrap();
        let expected = brute_force(&history);
        let (verdict, _) = check(&history, &CheckOptions::default());
        assert_eq!(verdict == Verdict::Valid, expected, "seed {seed}: {verdict:?}\n{history:#?}");
        if expected { valid += 1 } else { invalid += 1 }
    }
    assert!(valid > 300 && invalid > 300, "{valid} valid, {invalid} invalid");
}

/// Changes one completion at random: a read's value, a cas outcome, or a delete's result.
fn perturb(events: &mut [crate::history::Event], rng: &mut crate::generate::Rng) {
    use crate::history::{EventBody, EventType, Value};
    let values: Vec<String> = (1..12).map(|n| format!("v{n}")).collect();
    for _ in 0..8 {
        let position = rng.range(0, events.len() as u64 - 1) as usize;
        let EventBody::Client(event) = &mut events[position].body else { continue };
        match (event.f, event.event_type) {
            (Function::Read, EventType::Ok) => {
                let pick = rng.range(0, values.len() as u64) as usize;
                event.value = values.get(pick).map_or(Value::Null, |value| Value::Str(value.clone()));
                return;
            }
            (Function::Cas, EventType::Ok) => {
                event.event_type = EventType::Fail;
                event.error = Some(crate::history::REVISION_MISMATCH.to_owned());
                return;
            }
            (Function::Cas, EventType::Fail) => {
                (event.event_type, event.error) = (EventType::Ok, None);
                return;
            }
            (Function::Delete, EventType::Ok) => {
                event.value = Value::Deleted(!matches!(event.value, Value::Deleted(true)));
                return;
            }
            _ => {}
        }
    }
}
