//! Mutators that plant one known anomaly into a valid history.
//!
//! Each mutator edits completion events in place (the watch mutators remove or insert one
//! watcher line) and describes what it changed, so a test can assert that a checker reports
//! exactly that. They rely on the revisions a generated history carries to know the order in
//! which the register really changed.

use std::collections::BTreeMap;

use crate::history::{
    ClientEvent, Consistency, Event, EventBody, Function, History, Operation, Outcome, Value, WatchKind, WatchLine,
};

use super::Rng;

/// An anomaly [`inject`] can plant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anomaly {
    /// A linearizable read returns a value that was overwritten before the read was invoked.
    StaleRead,
    /// A key's final read misses the last acknowledged write and returns the value before it.
    LostWrite,
    /// An overwritten value reappears later under a fresh revision, as if applied a second time.
    DuplicateApply,
    /// A linearizable read returns a value nobody wrote.
    InventedValue,
    /// A stale read returns a value nobody wrote.
    InventedStaleValue,
    /// An ok mutation carries a revision lower than one that completed before it was invoked.
    RevisionGoingBack,
    /// A stale read returns a lower revision than the previous one from the same process and node.
    StaleRevisionGoingBack,
    /// A watcher misses one change it should have delivered (a gap). Needs watchers.
    WatchDroppedEvent,
    /// A watcher delivers one change twice in a row. Needs watchers.
    WatchDuplicatedEvent,
}

/// Plants `anomaly` at a spot chosen by `seed`; returns a description of the change, or `None`
/// when the history has no suitable spot (or is itself malformed). Only the watch anomalies
/// change the number of events.
pub fn inject(events: &mut Vec<Event>, anomaly: Anomaly, seed: u64) -> Option<String> {
    let history = History::from_events(events.to_vec()).ok()?;
    let mut rng = Rng::new(seed);
    let start = rng.range(history.operations.len() as u64 / 3, history.operations.len() as u64);
    // Visit operations from a seeded point in the later two thirds, wrapping around.
    let order: Vec<&Operation> =
        history.operations[start as usize..].iter().chain(&history.operations[..start as usize]).collect();
    match anomaly {
        Anomaly::StaleRead => stale_read(events, &history, &order, None),
        Anomaly::DuplicateApply => {
            let fresh = history.operations.iter().filter_map(|op| op.revision).max()? + 1;
            stale_read(events, &history, &order, Some(fresh))
        }
        Anomaly::LostWrite => lost_write(events, &history),
        Anomaly::InventedValue => invent(events, &order, false, seed),
        Anomaly::InventedStaleValue => invent(events, &order, true, seed),
        Anomaly::RevisionGoingBack => revision_going_back(events, &history, &order),
        Anomaly::StaleRevisionGoingBack => stale_revision_going_back(events, &history),
        Anomaly::WatchDroppedEvent => drop_delivery(events, &history, &mut rng),
        Anomaly::WatchDuplicatedEvent => duplicate_delivery(events, &history, &mut rng),
    }
}

/// One version of a key: the revision, the value after it (`None`: deleted), and the mutation.
type Version<'h> = (u64, Option<&'h str>, &'h Operation);

/// Per key, the ok mutations that changed the register, in revision order.
fn versions(history: &History) -> BTreeMap<&str, Vec<Version<'_>>> {
    let mut versions: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for op in history.operations.iter().filter(|op| op.outcome == Outcome::Ok) {
        let (Some(revision), true) = (op.revision, op.is_mutation()) else { continue };
        if op.f == Function::Delete && op.deleted() != Some(true) {
            continue;
        }
        versions.entry(op.key.as_str()).or_default().push((revision, op.written_value(), op));
    }
    for list in versions.values_mut() {
        list.sort_by_key(|(revision, _, _)| *revision);
    }
    versions
}

/// Edits the completion event of `op`.
fn edit(events: &mut [Event], op: &Operation, change: impl FnOnce(&mut ClientEvent)) {
    let line = op.complete_line.expect("only completed operations are edited");
    let EventBody::Client(client) = &mut events[line - 1].body else {
        unreachable!("an operation's completion is a client event")
    };
    change(client);
}

fn is_checked_read(op: &Operation) -> bool {
    op.f == Function::Read
        && op.outcome == Outcome::Ok
        && !op.is_final
        && matches!(op.consistency, Some(Consistency::Linearizable | Consistency::Lease))
}

/// A read now returns a value whose successor completed before the read was invoked; with
/// `fresh`, the value also carries that new mod_revision (a re-application).
fn stale_read(events: &mut [Event], history: &History, order: &[&Operation], fresh: Option<u64>) -> Option<String> {
    let versions = versions(history);
    for read in order.iter().filter(|op| is_checked_read(op)) {
        let Some(list) = versions.get(read.key.as_str()) else { continue };
        let current = read.read_value()?;
        // The writer must precede its successor in real time, or a linearization could order
        // them the other way round and the read would be fine.
        let overwritten = list.windows(2).rev().find(|pair| {
            let ((_, value, writer), (_, _, successor)) = (pair[0], pair[1]);
            value.is_some() && value != current && writer.precedes(successor) && successor.precedes(read)
        });
        let Some(pair) = overwritten else { continue };
        let ((revision, value, _), (_, _, successor)) = (pair[0], pair[1]);
        let value = value.expect("filtered on Some").to_owned();
        let mod_revision = fresh.unwrap_or(revision);
        edit(events, read, |event| {
            event.value = Value::Str(value.clone());
            event.mod_revision = Some(mod_revision);
        });
        let what = if fresh.is_some() { "duplicate apply" } else { "stale read" };
        return Some(format!(
            "{what}: the read on line {} now returns {value:?} (mod_revision {mod_revision}), overwritten by line {}",
            read.complete_line?, successor.complete_line?
        ));
    }
    None
}

/// A final read now misses its key's last version and returns the one before. Keys without
/// timed-out mutations are preferred: there nothing could have superseded the lost write, so
/// the durability checker sees it too (elsewhere only the linearizability checker can).
fn lost_write(events: &mut [Event], history: &History) -> Option<String> {
    let versions = versions(history);
    let uncertain = |key: &str| {
        history.operations.iter().any(|op| op.key == key && op.is_mutation() && op.outcome == Outcome::Info)
    };
    let mut candidates: Vec<&Operation> =
        history.operations.iter().filter(|op| op.is_final && op.outcome == Outcome::Ok).collect();
    candidates.sort_by_key(|read| uncertain(&read.key));
    for read in candidates {
        let Some(list) = versions.get(read.key.as_str()) else { continue };
        let [.., (_, Some(before), previous), (_, Some(last), writer)] = list.as_slice() else { continue };
        if read.read_value() != Some(Some(*last)) || !previous.precedes(writer) {
            continue;
        }
        let (before, mod_revision) = ((*before).to_owned(), previous.revision);
        edit(events, read, |event| {
            event.mod_revision = mod_revision;
            event.value = Value::Str(before.clone());
        });
        return Some(format!(
            "lost write: the final read on line {} no longer sees the write on line {}",
            read.complete_line?, writer.complete_line?
        ));
    }
    None
}

fn invent(events: &mut [Event], order: &[&Operation], stale: bool, seed: u64) -> Option<String> {
    let read = order.iter().find(|op| {
        let wanted = if stale { op.consistency == Some(Consistency::Stale) } else { is_checked_read(op) };
        wanted && op.f == Function::Read && op.outcome == Outcome::Ok
    })?;
    let value = format!("invented-{seed}");
    edit(events, read, |event| event.value = Value::Str(value.clone()));
    Some(format!("invented value: the read on line {} now returns {value:?}", read.complete_line?))
}

/// An ok mutation now carries the revision just below one that completed before its invoke.
fn revision_going_back(events: &mut [Event], history: &History, order: &[&Operation]) -> Option<String> {
    let mutations: Vec<&Operation> = history
        .operations
        .iter()
        .filter(|op| op.outcome == Outcome::Ok && op.is_mutation() && op.revision.is_some())
        .collect();
    for later in order.iter().filter(|op| op.outcome == Outcome::Ok && op.is_mutation()) {
        let Some(earlier) = mutations.iter().rev().find(|op| op.precedes(later) && op.revision > Some(1)) else {
            continue;
        };
        let revision = earlier.revision? - 1;
        edit(events, later, |event| event.revision = Some(revision));
        return Some(format!(
            "revision going back: line {} now has revision {revision}, below line {}'s {}",
            later.complete_line?, earlier.complete_line?, earlier.revision?
        ));
    }
    None
}

/// The second of two successive stale reads from one process and node goes back in revision.
fn stale_revision_going_back(events: &mut [Event], history: &History) -> Option<String> {
    let mut last: BTreeMap<(u64, u64), &Operation> = BTreeMap::new();
    for read in history.operations.iter().filter(|op| op.consistency == Some(Consistency::Stale)) {
        let (Outcome::Ok, Some(node), Some(_)) = (read.outcome, read.node, read.revision) else { continue };
        if let Some(previous) = last.insert((read.process, node), read)
            && previous.revision > Some(0)
        {
            let revision = previous.revision? - 1;
            edit(events, read, |event| event.revision = Some(revision));
            return Some(format!(
                "stale revision going back: line {} now has revision {revision}, after line {}'s {}",
                read.complete_line?, previous.complete_line?, previous.revision?
            ));
        }
    }
    None
}

/// A delivery that a checker can see go missing, chosen by `rng`: one followed by another
/// delivery of the same watcher (no compaction marker between), on prefix `""` (where every
/// revision counts) or of an ok mutation with a known revision (which a prefix watcher must
/// deliver). Its position in `history.watch_lines`.
fn droppable(history: &History, rng: &mut super::Rng) -> Option<usize> {
    let known: std::collections::BTreeSet<u64> =
        versions(history).values().flat_map(|list| list.iter().map(|(revision, _, _)| *revision)).collect();
    let mut prefixes: BTreeMap<u64, &str> = BTreeMap::new();
    let mut followed: Vec<usize> = Vec::new();
    let mut last: BTreeMap<u64, usize> = BTreeMap::new();
    for (position, line) in history.watch_lines.iter().enumerate() {
        let watcher = line.event.watcher;
        match &line.event.kind {
            WatchKind::Resume { prefix } => {
                prefixes.entry(watcher).or_insert(prefix);
            }
            WatchKind::Event { .. } => {
                let Some(previous) = last.insert(watcher, position) else { continue };
                if prefixes[&watcher].is_empty() || known.contains(&history.watch_lines[previous].event.revision) {
                    followed.push(previous);
                }
            }
            WatchKind::Compacted { .. } => {
                last.remove(&watcher);
            }
        }
    }
    let pick = rng.range(0, followed.len().max(1) as u64 - 1) as usize;
    followed.get(pick).copied()
}

/// One watcher delivery disappears, as if the stream skipped it.
fn drop_delivery(events: &mut Vec<Event>, history: &History, rng: &mut super::Rng) -> Option<String> {
    let line: &WatchLine = &history.watch_lines[droppable(history, rng)?];
    events.remove(line.line - 1);
    Some(format!("dropped delivery: line {} ({line}) removed", line.line))
}

/// One watcher delivery is repeated right after itself; later indices shift up by one.
fn duplicate_delivery(events: &mut Vec<Event>, history: &History, rng: &mut super::Rng) -> Option<String> {
    let deliveries: Vec<&WatchLine> =
        history.watch_lines.iter().filter(|line| matches!(line.event.kind, WatchKind::Event { .. })).collect();
    let line = deliveries.get(rng.range(0, deliveries.len().max(1) as u64 - 1) as usize)?;
    let position = line.line - 1;
    let mut copy = events[position].clone();
    copy.index += 1;
    for event in &mut events[position + 1..] {
        event.index += 1;
    }
    events.insert(position + 1, copy);
    Some(format!("duplicated delivery: line {} ({line}) repeated on line {}", line.line, line.line + 1))
}
