//! Watches: every matching change delivered once, in revision order, as it was written.
//!
//! `GET /v1/watch?prefix=P&start_revision=N` streams one event per mutation of a key under `P`,
//! in revision order, none missing and none twice, from `N` on; a watcher that reconnects resumes
//! at the last revision it saw + 1, and a start older than the retained history is refused as
//! `revision_compacted`. Every ok write, ok cas and delete that deleted something takes the next
//! global revision (the first mutation is revision 1), so a watch on `""` sees every revision.
//!
//! The property, per watcher, over its lines in file order ([`WatchLine`]):
//! 1. **Once, in order.** Delivered revisions strictly increase, across reconnects too: an equal
//!    revision is a duplicate, a lower one is out of order.
//! 2. **From where it asked.** The first delivery after `resume(r)` has revision ≥ r.
//! 3. **No gaps.** Between two consecutive deliveries (on one connection, or across a resume that
//!    was not refused), and between a resume's start and its first delivery, nothing that matches
//!    was skipped. For prefix `""` that means consecutive revisions (a start of 0 counts as 1).
//!    For any other prefix a gap is an ok mutation (ok write, ok cas, delete with `value:true`)
//!    of a matching key whose revision lies in between. Only a `compacted` marker lets a watcher
//!    skip ahead: no gap is checked across it, and the chain restarts at the next resume.
//!    Watchers with a restricted token ([`crate::acl`]) are shown only what their policy allows,
//!    so gaps are expected there; the ACL checker judges what they were shown.
//! 4. **Within its prefix.** Every delivered key starts with the watcher's prefix.
//! 5. **Refused only when compacted.** A `compacted` marker whose retained history starts at or
//!    before the refused start (`value` ≤ `revision`) refused a resume it could have served.
//!
//! And over all watchers, against the client history:
//! 6. **As written.** A put of `v` at revision r needs a write or cas of that key with value `v`
//!    that did not fail; a delete at r needs a delete of that key that did not fail and did not
//!    report `value:false`. When the history knows revision r (an ok mutation carries it), the
//!    delivered change must be that mutation; otherwise a source whose revision is unknown (timed
//!    out, or ok without one) must exist. A source invoked after the delivery cannot explain it,
//!    and a value with a single writer of unknown revision cannot be delivered at two revisions.
//! 7. **Agreed.** Two watchers that deliver the same revision deliver the same change.
//!
//! Rules 1–5 are one pass per watcher with a binary search per delivery for rule 3; rules 6 and 7
//! are one pass over the deliveries with maps keyed by revision and by (key, value). O(n log n)
//! over operations and watcher lines, plus one filtered copy of the mutations per distinct
//! non-empty prefix. An out-of-order delivery also shows up as a gap where the stream jumped.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeBounds;

use super::{Verdict, Violation};
use crate::history::{Function, History, Operation, Outcome, WatchAction, WatchKind, WatchLine};

/// The most violations reported per pass (stream, history, agreement); the rest are counted.
const REPORTED_MAX: usize = 20;
/// At most this many of a watcher's lines are shown in one window.
const LINES_SHOWN_MAX: usize = 8;
/// At most this many skipped mutations are named for one gap.
const SKIPPED_SHOWN_MAX: usize = 3;

/// Checks every watcher; see the module documentation.
pub fn check(history: &History) -> (Verdict, String) {
    if history.watch_lines.is_empty() {
        return (Verdict::Valid, "0 watchers".to_owned());
    }
    let mutations = Mutations::new(history);
    let mut by_watcher: BTreeMap<u64, Vec<&WatchLine>> = BTreeMap::new();
    for line in &history.watch_lines {
        by_watcher.entry(line.event.watcher).or_default().push(line);
    }
    let mut matching: HashMap<&str, Vec<(u64, &Operation)>> = HashMap::new();
    let mut streams = Found::default();
    for lines in by_watcher.values() {
        let prefix = prefix_of(lines);
        let matching = matching.entry(prefix).or_insert_with(|| mutations.matching(prefix));
        let filtered = crate::acl::is_restricted_watcher(lines[0].event.watcher);
        let mut stream =
            Stream { lines, prefix, matching, mutations: &mutations, filtered, from: None, last: None, resume: None };
        for position in 0..lines.len() {
            stream.step(position, &mut streams);
        }
    }
    let deliveries: Vec<Delivery> = history.watch_lines.iter().filter_map(Delivery::of).collect();
    let sources = check_sources(&deliveries, &mutations);
    let agreement = check_agreement(&deliveries, &mutations);
    let resumes = history.watch_lines.iter().filter(|line| matches!(line.event.kind, WatchKind::Resume { .. })).count();
    let refused =
        history.watch_lines.iter().filter(|line| matches!(line.event.kind, WatchKind::Compacted { .. })).count();
    let found = streams.found + sources.found + agreement.found;
    let summary = format!(
        "{} watchers, {} deliveries, {resumes} resumes ({refused} refused as compacted), {found} violations",
        by_watcher.len(),
        deliveries.len()
    );
    let violations: Vec<Violation> =
        [streams, sources, agreement].into_iter().flat_map(|found| found.violations).collect();
    let verdict = if violations.is_empty() { Verdict::Valid } else { Verdict::Violation(violations) };
    (verdict, summary)
}

/// The prefix a watcher watches, from its first line (the builder guarantees a resume there).
fn prefix_of<'h>(lines: &[&'h WatchLine]) -> &'h str {
    match &lines[0].event.kind {
        WatchKind::Resume { prefix } => prefix,
        _ => unreachable!("a validated watcher starts with a resume"),
    }
}

/// Violations of one pass: the first [`REPORTED_MAX`] kept, all counted.
#[derive(Default)]
struct Found {
    found: usize,
    violations: Vec<Violation>,
}

impl Found {
    fn push(&mut self, violation: Violation) {
        self.found += 1;
        if self.violations.len() < REPORTED_MAX {
            self.violations.push(violation);
        }
    }
}

/// A violation blaming watcher line `culprit`, showing `lines` and the operations `ops`.
fn violation(
    key: Option<&str>,
    summary: String,
    lines: Vec<&WatchLine>,
    culprit: usize,
    ops: &[&Operation],
) -> Violation {
    let mut window: Vec<Operation> = ops.iter().map(|op| (*op).clone()).collect();
    window.sort_by_key(|op| op.id);
    window.dedup_by_key(|op| op.id);
    let mut watch_window: Vec<_> = lines.into_iter().cloned().collect();
    watch_window.sort_by_key(|line| line.line);
    watch_window.dedup_by_key(|line| line.line);
    Violation {
        key: key.map(str::to_owned),
        summary,
        window,
        culprits: Vec::new(),
        prefix_end: None,
        watch_window,
        watch_culprits: vec![culprit],
    }
}

/// The mutations of the client history, indexed for the checks.
struct Mutations<'h> {
    /// Ok mutations whose revision is known, by revision (several only if revisions are broken,
    /// which the revisions checker reports).
    by_revision: BTreeMap<u64, Vec<&'h Operation>>,
    /// Per key and value put (`None`: a delete), the mutations that may have made that change.
    sources: HashMap<(&'h str, Option<&'h str>), Sources<'h>>,
}

/// The mutations that may have produced one change.
#[derive(Default)]
struct Sources<'h> {
    /// Ok, with a known revision.
    known: Vec<&'h Operation>,
    /// Not failed, with no known revision (timed out, pending, or ok without a revision), in
    /// invoke order.
    unknown: Vec<&'h Operation>,
}

/// The revision `op` created, when the history says: ok writes and cas with a revision, and ok
/// deletes that reported deleting something.
fn created_revision(op: &Operation) -> Option<u64> {
    match op.f {
        Function::Read => None,
        Function::Delete if op.deleted() != Some(true) => None,
        _ if op.outcome == Outcome::Ok => op.revision,
        _ => None,
    }
}

impl<'h> Mutations<'h> {
    fn new(history: &'h History) -> Mutations<'h> {
        let mut by_revision: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
        let mut sources: HashMap<_, Sources> = HashMap::new();
        for op in history.operations.iter().filter(|op| op.is_mutation() && op.outcome != Outcome::Fail) {
            if op.f == Function::Delete && op.deleted() == Some(false) {
                continue;
            }
            let change = sources.entry((op.key.as_str(), op.written_value())).or_default();
            match created_revision(op) {
                Some(revision) => {
                    by_revision.entry(revision).or_default().push(op);
                    change.known.push(op);
                }
                None => change.unknown.push(op),
            }
        }
        Mutations { by_revision, sources }
    }

    /// The ok mutations of keys under a non-empty `prefix`, by revision (empty for `""`, whose
    /// gaps are counted in revisions).
    fn matching(&self, prefix: &str) -> Vec<(u64, &'h Operation)> {
        if prefix.is_empty() {
            return Vec::new();
        }
        let all = self.by_revision.iter().flat_map(|(revision, ops)| ops.iter().map(|op| (*revision, *op)));
        all.filter(|(_, op)| op.key.starts_with(prefix)).collect()
    }

    /// The ok mutations known to have created revisions in `revisions`, at most `limit`.
    fn at(&self, revisions: impl RangeBounds<u64>, limit: usize) -> Vec<&'h Operation> {
        self.by_revision.range(revisions).flat_map(|(_, ops)| ops.iter().copied()).take(limit).collect()
    }
}

/// Where a watcher's next delivery must continue from.
#[derive(Clone, Copy)]
enum From {
    /// A resume, at this position in the watcher's lines: the next delivery is ≥ its revision.
    Start(usize),
    /// A delivery, at this position: the next one follows it without a gap.
    After(usize),
}

/// One watcher's lines, walked in order (rules 1–5).
struct Stream<'h, 'm> {
    lines: &'m [&'h WatchLine],
    prefix: &'h str,
    /// For a non-empty prefix, the ok mutations of matching keys by revision.
    matching: &'m [(u64, &'h Operation)],
    mutations: &'m Mutations<'h>,
    /// A restricted watcher's: its events are filtered by ACL, so gaps are not violations.
    filtered: bool,
    /// `None` before the first resume's chain starts and right after a compaction marker.
    from: Option<From>,
    /// Position of the delivery with the highest revision so far.
    last: Option<usize>,
    /// Position of the latest resume that has not delivered yet.
    resume: Option<usize>,
}

impl<'h> Stream<'h, '_> {
    fn step(&mut self, position: usize, found: &mut Found) {
        let line = self.lines[position];
        match &line.event.kind {
            WatchKind::Resume { .. } => {
                self.from = self.from.or(Some(From::Start(position)));
                self.resume = Some(position);
            }
            WatchKind::Compacted { compact_revision } => {
                if let Some(compact_revision) = *compact_revision
                    && compact_revision <= line.event.revision
                {
                    found.push(self.wrongly_refused(position, compact_revision));
                }
                self.from = None;
                self.resume = None;
            }
            WatchKind::Event { key, .. } => self.deliver(position, key, found),
        }
    }

    fn deliver(&mut self, position: usize, key: &str, found: &mut Found) {
        let line = self.lines[position];
        let revision = line.event.revision;
        if !key.starts_with(self.prefix) {
            let summary = format!(
                "watcher {} on prefix {:?} delivered key {key:?} on line {}",
                line.event.watcher, self.prefix, line.line
            );
            found.push(violation(Some(key), summary, vec![self.lines[0], line], line.line, &[]));
        }
        if let Some(last) = self.last
            && revision <= self.lines[last].event.revision
        {
            found.push(self.not_increasing(last, position));
            self.resume = None;
            return;
        }
        match self.resume.take() {
            Some(resume) if revision < self.lines[resume].event.revision => {
                found.push(self.before_start(resume, position));
            }
            _ if self.filtered => {}
            _ => {
                if let Some(gap) = self.gap(position) {
                    found.push(gap);
                }
            }
        }
        self.last = Some(position);
        self.from = Some(From::After(position));
    }

    /// This watcher's lines from `first` to `last`, at most [`LINES_SHOWN_MAX`]: the first ones
    /// and the ones just before `last`.
    fn lines_between(&self, first: usize, last: usize) -> Vec<&'h WatchLine> {
        let all = &self.lines[first..=last];
        if all.len() <= LINES_SHOWN_MAX {
            return all.to_vec();
        }
        let head = &all[..LINES_SHOWN_MAX / 2];
        head.iter().chain(&all[all.len() - LINES_SHOWN_MAX / 2..]).copied().collect()
    }

    /// Rule 1: `position` delivers a revision at or below the one delivered at `last`.
    fn not_increasing(&self, last: usize, position: usize) -> Violation {
        let (before, line) = (self.lines[last], self.lines[position]);
        let revision = line.event.revision;
        let what = if revision == before.event.revision { "again (duplicate)" } else { "out of order" };
        let summary = format!(
            "watcher {} delivered revision {revision} on line {} {what}: revision {} was already delivered on line {}",
            line.event.watcher, line.line, before.event.revision, before.line
        );
        let ops = self.mutations.at(revision..=revision, SKIPPED_SHOWN_MAX);
        violation(key_of(line), summary, self.lines_between(last, position), line.line, &ops)
    }

    /// Rule 2: the first delivery after the resume at `resume` is older than it asked for.
    fn before_start(&self, resume: usize, position: usize) -> Violation {
        let (start, line) = (self.lines[resume], self.lines[position]);
        let summary = format!(
            "watcher {} resumed from revision {} on line {} but was then delivered the older revision {} on line {}",
            line.event.watcher, start.event.revision, start.line, line.event.revision, line.line
        );
        let revision = line.event.revision;
        let ops = self.mutations.at(revision..=revision, SKIPPED_SHOWN_MAX);
        violation(key_of(line), summary, self.lines_between(resume, position), line.line, &ops)
    }

    /// Rule 3: what the delivery at `position` skipped since the chain it continues.
    fn gap(&self, position: usize) -> Option<Violation> {
        let line = self.lines[position];
        let revision = line.event.revision;
        let (low, first, since) = match self.from? {
            From::After(first) => {
                let before = self.lines[first];
                (
                    before.event.revision.saturating_add(1),
                    first,
                    format!("after revision {} (line {})", before.event.revision, before.line),
                )
            }
            From::Start(first) => {
                let start = self.lines[first];
                let since = format!("since its resume from revision {} (line {})", start.event.revision, start.line);
                (start.event.revision.max(1), first, since)
            }
        };
        let watcher = line.event.watcher;
        let (skipped, what) = if self.prefix.is_empty() {
            if low >= revision {
                return None;
            }
            let skipped = self.mutations.at(low..revision, SKIPPED_SHOWN_MAX);
            (skipped, format!("revisions {low}..={} were never delivered", revision - 1))
        } else {
            let from = self.matching.partition_point(|(matching, _)| *matching < low);
            let skipped: Vec<(u64, &Operation)> =
                self.matching[from..].iter().take_while(|(matching, _)| *matching < revision).copied().collect();
            let (skipped_revision, op) = *skipped.first()?;
            let what = format!(
                "the {} of {:?} on line {} (revision {skipped_revision}) and {} more were never delivered",
                op.f,
                op.key,
                op.complete_line.unwrap_or(op.invoke_line),
                skipped.len() - 1
            );
            (skipped.iter().map(|(_, op)| *op).take(SKIPPED_SHOWN_MAX).collect(), what)
        };
        let summary = format!(
            "gap: watcher {watcher} on prefix {:?} delivered revision {revision} on line {} {since}; {what}",
            self.prefix, line.line
        );
        let key = skipped.first().map(|op| op.key.as_str());
        Some(violation(key, summary, self.lines_between(first, position), line.line, &skipped))
    }

    /// Rule 5: the compaction marker at `position` refused a start the node still had.
    fn wrongly_refused(&self, position: usize, compact_revision: u64) -> Violation {
        let line = self.lines[position];
        let summary = format!(
            "watcher {}'s resume from revision {} was refused as compacted on line {}, but history from revision {compact_revision} was kept",
            line.event.watcher, line.event.revision, line.line
        );
        let first = self.resume.unwrap_or(position);
        violation(None, summary, self.lines_between(first, position), line.line, &[])
    }
}

/// The delivered key of an event line.
fn key_of(line: &WatchLine) -> Option<&str> {
    match &line.event.kind {
        WatchKind::Event { key, .. } => Some(key),
        _ => None,
    }
}

/// A delivered change.
#[derive(Clone, Copy)]
struct Delivery<'h> {
    line: &'h WatchLine,
    key: &'h str,
    action: &'h WatchAction,
}

impl<'h> Delivery<'h> {
    fn of(line: &'h WatchLine) -> Option<Delivery<'h>> {
        match &line.event.kind {
            WatchKind::Event { key, action } => Some(Delivery { line, key, action }),
            _ => None,
        }
    }

    fn revision(&self) -> u64 {
        self.line.event.revision
    }

    /// `put "k1" "v7"` or `delete "k1"`.
    fn describe(&self) -> String {
        match self.action {
            WatchAction::Put(value) => format!("put {:?} {value:?}", self.key),
            WatchAction::Delete => format!("delete {:?}", self.key),
        }
    }

    /// Whether `op` makes this change (ignoring revisions).
    fn made_by(&self, op: &Operation) -> bool {
        op.key == self.key
            && match self.action {
                WatchAction::Put(value) => op.written_value() == Some(value.as_str()),
                WatchAction::Delete => op.f == Function::Delete,
            }
    }
}

/// Rule 6 for every delivery.
fn check_sources(deliveries: &[Delivery], mutations: &Mutations) -> Found {
    let mut found = Found::default();
    // Per change with a single source of unknown revision: the first delivery of it.
    let mut single: HashMap<(&str, &str), Delivery> = HashMap::new();
    for delivery in deliveries {
        if let Some(violation) = check_source(delivery, mutations) {
            found.push(violation);
            continue;
        }
        let WatchAction::Put(value) = delivery.action else { continue };
        let Some(sources) = mutations.sources.get(&(delivery.key, Some(value.as_str()))) else { continue };
        let [writer] = sources.unknown.as_slice() else { continue };
        if !sources.known.is_empty() {
            continue;
        }
        let first = *single.entry((delivery.key, value.as_str())).or_insert(*delivery);
        if first.revision() != delivery.revision() {
            let summary = format!(
                "{} was delivered at revision {} on line {} and at revision {} on line {}, but only the {} on line {} wrote it",
                delivery.describe(),
                first.revision(),
                first.line.line,
                delivery.revision(),
                delivery.line.line,
                writer.f,
                writer.invoke_line
            );
            found.push(violation(
                Some(delivery.key),
                summary,
                vec![first.line, delivery.line],
                delivery.line.line,
                &[writer],
            ));
        }
    }
    found
}

/// Rule 6 for one delivery: `None` when the history explains it.
fn check_source(delivery: &Delivery, mutations: &Mutations) -> Option<Violation> {
    let (line, revision) = (delivery.line, delivery.revision());
    let said = format!(
        "watcher {} delivered {} at revision {revision} on line {}",
        line.event.watcher,
        delivery.describe(),
        line.line
    );
    let blame =
        |summary: String, ops: &[&Operation]| Some(violation(Some(delivery.key), summary, vec![line], line.line, ops));
    if let Some(ops) = mutations.by_revision.get(&revision) {
        let Some(op) = ops.iter().find(|op| delivery.made_by(op)) else {
            let op = ops[0];
            let was = match op.written_value() {
                Some(value) => format!("the {} of {:?} {value:?}", op.f, op.key),
                None => format!("the {} of {:?}", op.f, op.key),
            };
            return blame(format!("{said}, but revision {revision} is {was} on line {}", op.invoke_line), ops);
        };
        if op.invoke_index > line.index {
            return blame(format!("{said}, before its {} on line {} was invoked", op.f, op.invoke_line), &[op]);
        }
        return None;
    }
    let sources = mutations.sources.get(&(delivery.key, delivery.action.value()));
    let Some(sources) = sources.filter(|sources| !sources.known.is_empty() || !sources.unknown.is_empty()) else {
        let what = match delivery.action {
            WatchAction::Put(_) => "no write or cas of that value that did not fail",
            WatchAction::Delete => "no delete of that key that did not fail and may have deleted something",
        };
        return blame(format!("{said}, but the history has {what}"), &[]);
    };
    if sources.unknown.first().is_some_and(|op| op.invoke_index < line.index) {
        return None;
    }
    if let Some(op) = sources.known.first() {
        let known = op.revision.unwrap_or_default();
        let summary = format!("{said}, but its {} on line {} has revision {known}", op.f, op.invoke_line);
        let ops: Vec<&Operation> = sources.known.iter().take(SKIPPED_SHOWN_MAX).copied().collect();
        return blame(summary, &ops);
    }
    let op = sources.unknown[0];
    blame(format!("{said}, before its {} on line {} was invoked", op.f, op.invoke_line), &[op])
}

/// Rule 7: every delivery of a revision agrees with the first one from another watcher.
fn check_agreement(deliveries: &[Delivery], mutations: &Mutations) -> Found {
    let mut found = Found::default();
    let mut first: HashMap<u64, Delivery> = HashMap::new();
    for delivery in deliveries {
        let earlier = *first.entry(delivery.revision()).or_insert(*delivery);
        let (this, that) = (delivery.line.event.watcher, earlier.line.event.watcher);
        if this == that || (earlier.key, earlier.action) == (delivery.key, delivery.action) {
            continue;
        }
        let revision = delivery.revision();
        let summary = format!(
            "watchers {that} and {this} disagree about revision {revision}: {} on line {}, {} on line {}",
            earlier.describe(),
            earlier.line.line,
            delivery.describe(),
            delivery.line.line
        );
        let ops = mutations.at(revision..=revision, SKIPPED_SHOWN_MAX);
        found.push(violation(Some(delivery.key), summary, vec![earlier.line, delivery.line], delivery.line.line, &ops));
    }
    found
}

#[cfg(test)]
mod tests;
