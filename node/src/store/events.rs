//! The event history: one event per mutation, in revision order, kept in the replicated state
//! (so it is identical on every replica and survives restarts through snapshots) and bounded by
//! count and bytes. Watches and long polls read it; a revision older than what it retains is
//! "compacted", and the client must re-list.

use std::sync::Arc;

use imbl::Vector;
use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::store::filter::Filter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Put,
    Delete,
}

/// One mutation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: u64,
    pub action: Action,
    /// For a put, the new record; for a delete, the record as it was, without its value.
    pub record: Record,
}

impl Event {
    fn bytes(&self) -> usize {
        self.record.key.len() + self.record.value.len() + 64
    }
}

/// How much history to keep; the oldest events go first when either bound is exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLimits {
    pub events_max: usize,
    pub bytes_max: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits { events_max: 100_000, bytes_max: 64 * 1024 * 1024 }
    }
}

/// The requested revision is no longer retained; `oldest` is the first that is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    pub oldest: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    /// Persistent, so freezing the state for a snapshot does not copy the history.
    #[serde(deserialize_with = "super::cautious::vector")]
    events: Vector<Arc<Event>>,
    bytes: usize,
    /// The highest revision evicted; events up to it are gone.
    compacted_through: u64,
    limits: HistoryLimits,
}

impl EventLog {
    pub fn new(limits: HistoryLimits) -> EventLog {
        assert!(limits.events_max > 0, "the event history keeps at least one event");
        EventLog { events: Vector::new(), bytes: 0, compacted_through: 0, limits }
    }

    /// Appends the event of the mutation just applied.
    pub fn push(&mut self, event: Event) {
        if let Some(last) = self.events.back() {
            assert_eq!(event.revision, last.revision + 1, "events are consecutive revisions");
        }
        self.bytes += event.bytes();
        self.events.push_back(Arc::new(event));
        while self.events.len() > self.limits.events_max
            || (self.bytes > self.limits.bytes_max && self.events.len() > 1)
        {
            let evicted = self.events.pop_front().expect("over a limit means not empty");
            self.bytes -= evicted.bytes();
            self.compacted_through = evicted.revision;
        }
    }

    /// Why this history could not have been built by [`EventLog::push`] up to `revision`, if it
    /// could not: for a history decoded from a snapshot, whose later pushes assert what `push`
    /// keeps.
    pub fn inconsistency(&self, revision: u64) -> Option<&'static str> {
        if self.limits.events_max == 0 {
            return Some("an event history without room for an event");
        }
        let consecutive = self
            .events
            .iter()
            .zip(self.events.iter().skip(1))
            .all(|(earlier, later)| earlier.revision.checked_add(1) == Some(later.revision));
        let bounded = match (self.events.front(), self.events.back()) {
            (Some(first), Some(last)) => first.revision > self.compacted_through && last.revision == revision,
            _ => self.compacted_through <= revision,
        };
        if !consecutive || !bounded {
            return Some("the event history is not consecutive up to the store's revision");
        }
        let counted = self.events.iter().try_fold(0usize, |sum, event| sum.checked_add(event.bytes()));
        (counted != Some(self.bytes)).then_some("the event history miscounts its bytes")
    }

    /// The first revision still retained (events before it were compacted).
    pub fn oldest_available(&self) -> u64 {
        self.compacted_through + 1
    }

    /// Events with revision `>= from` that match `filter` and are `visible`, at most
    /// `max` of them.
    pub fn since(
        &self,
        from: u64,
        filter: &Filter,
        max: usize,
        visible: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<Vec<Arc<Event>>, Compacted> {
        if from <= self.compacted_through {
            return Err(Compacted { oldest: self.oldest_available() });
        }
        let start = self.events.binary_search_by(|event| event.revision.cmp(&from)).unwrap_or_else(|insert| insert);
        let shown = |event: &&Arc<Event>| filter.matches(&event.record) && visible(event);
        Ok(self.events.iter().skip(start).filter(shown).take(max).cloned().collect())
    }

    /// Whether anything matching `filter` changed after revision `after`; `None` when that is
    /// no longer known (compacted).
    pub fn changed_after(&self, after: u64, filter: &Filter, visible: &mut dyn FnMut(&Event) -> bool) -> Option<bool> {
        self.since(after.saturating_add(1), filter, 1, visible).ok().map(|events| !events.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn put(revision: u64, key: &str, value_bytes: usize) -> Event {
        let record = Record {
            key: key.into(),
            value: Bytes::from(vec![b'v'; value_bytes]),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            labels: Default::default(),
            create_time_ms: 0,
            update_time_ms: 0,
            kie: None,
        };
        Event { revision, action: Action::Put, record }
    }

    #[test]
    fn events_are_returned_from_a_revision_on_by_filter() {
        let mut log = EventLog::new(HistoryLimits::default());
        for revision in 1..=5 {
            log.push(put(revision, if revision % 2 == 0 { "a/x" } else { "b/x" }, 1));
        }
        let from_three: Vec<u64> =
            log.since(3, &Filter::default(), 10, &mut |_| true).unwrap().iter().map(|e| e.revision).collect();
        assert_eq!(from_three, [3, 4, 5]);
        let only_a: Vec<u64> =
            log.since(1, &Filter::prefix("a/"), 10, &mut |_| true).unwrap().iter().map(|e| e.revision).collect();
        assert_eq!(only_a, [2, 4]);
        assert_eq!(log.changed_after(4, &Filter::prefix("a/"), &mut |_| true), Some(false));
        assert_eq!(log.changed_after(3, &Filter::prefix("a/"), &mut |_| true), Some(true));
    }

    #[test]
    fn the_oldest_events_are_compacted_by_count_and_by_bytes() {
        let mut log = EventLog::new(HistoryLimits { events_max: 3, bytes_max: 10_000 });
        for revision in 1..=5 {
            log.push(put(revision, "k", 1));
        }
        assert_eq!(log.since(2, &Filter::default(), 10, &mut |_| true), Err(Compacted { oldest: 3 }));
        assert_eq!(log.since(3, &Filter::default(), 10, &mut |_| true).unwrap().len(), 3);
        assert_eq!(log.changed_after(1, &Filter::default(), &mut |_| true), None, "unknown once compacted");
        log.push(put(6, "k", 20_000));
        assert_eq!(log.oldest_available(), 6, "one large event pushes out the rest but is kept");
    }

    #[test]
    fn only_a_history_push_could_have_built_is_consistent() {
        let mut log = EventLog::new(HistoryLimits { events_max: 3, bytes_max: 1 << 20 });
        for revision in 1..=5 {
            log.push(put(revision, "k", 10));
        }
        assert_eq!(log.inconsistency(5), None);
        assert!(log.inconsistency(6).is_some(), "a history ending before the store's revision");
        let mut forged = log.clone();
        forged.events.remove(1);
        assert!(forged.inconsistency(5).is_some(), "a gap");
        let mut forged = log.clone();
        forged.bytes -= 1;
        assert!(forged.inconsistency(5).is_some(), "miscounted bytes");
        let mut forged = log.clone();
        forged.compacted_through = 3;
        assert!(forged.inconsistency(5).is_some(), "retained events reported compacted");
    }
}
