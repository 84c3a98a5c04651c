//! The replicated state: an ordered map of records and the global revision. Pure: applying the
//! same requests in the same order yields the same state on every replica.

use std::collections::BTreeSet;

use bytes::Bytes;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::bugs::InjectedBugs;
use crate::command::{Command, NodeId, Precondition, Request, Response};
use crate::record::{Key, Labels, Record};
use crate::store::sessions::{Outcome, Sessions, Verdict};

/// The key-value state every replica applies the log to.
///
/// The maps are persistent (`imbl`), so a snapshot is an O(1) clone that a background task can
/// serialize while the store keeps applying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    records: OrdMap<Key, Record>,
    /// Counts every mutation, as etcd's revision does; never decreases.
    revision: u64,
    sessions: Sessions,
    /// Node ids removed from the cluster; they are never admitted again.
    retired: BTreeSet<NodeId>,
}

impl KvState {
    pub fn new(session_capacity: usize) -> KvState {
        KvState {
            records: OrdMap::new(),
            revision: 0,
            sessions: Sessions::new(session_capacity),
            retired: BTreeSet::new(),
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn get(&self, key: &str) -> Option<&Record> {
        self.records.get(key)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn is_retired(&self, id: NodeId) -> bool {
        self.retired.contains(&id)
    }

    /// Every record in key order, starting at `from` (inclusive).
    pub fn range_from<'a>(&'a self, from: &str) -> impl Iterator<Item = &'a Record> + 'a {
        let from: Key = from.into();
        self.records.range(from..).map(|(_, record)| record)
    }

    /// Applies the request committed at log `index`.
    pub fn apply(&mut self, index: u64, request: &Request, bugs: InjectedBugs) -> Response {
        let Some(tag) = request.tag else {
            return self.execute(request);
        };
        if !bugs.skip_dedup() {
            match self.sessions.judge(tag) {
                Verdict::Fresh => {}
                Verdict::Duplicate(outcome) => return self.replay(request, outcome),
                Verdict::Superseded => return Response::Superseded { revision: self.revision },
            }
        }
        let response = self.execute(request);
        if let Some(outcome) = outcome_of(&response) {
            self.sessions.remember(tag, outcome, index);
        }
        response
    }

    fn execute(&mut self, request: &Request) -> Response {
        let revision_before = self.revision;
        let response = match &request.command {
            Command::Put { key, value, labels, expect } => {
                self.put(key, value, labels.as_ref(), *expect, request.proposed_at_ms)
            }
            Command::Delete { key, expect } => self.delete(key, *expect),
            Command::RetireNode { id } => {
                self.retired.insert(*id);
                Response::Retired { id: *id }
            }
        };
        assert!(self.revision >= revision_before, "the revision never goes back");
        assert!(self.revision <= revision_before + 1, "one request is at most one mutation");
        response
    }

    fn put(
        &mut self,
        key: &Key,
        value: &Bytes,
        labels: Option<&Labels>,
        expect: Precondition,
        now_ms: u64,
    ) -> Response {
        let current = self.records.get(key);
        if !precondition_holds(current, expect) {
            return Response::Mismatch { current: current.cloned(), revision: self.revision };
        }
        self.revision += 1;
        let record = match current {
            Some(current) => Record {
                key: key.clone(),
                value: value.clone(),
                create_revision: current.create_revision,
                mod_revision: self.revision,
                version: current.version + 1,
                labels: labels.cloned().unwrap_or_else(|| current.labels.clone()),
                create_time_ms: current.create_time_ms,
                update_time_ms: now_ms.max(current.update_time_ms),
            },
            None => Record {
                key: key.clone(),
                value: value.clone(),
                create_revision: self.revision,
                mod_revision: self.revision,
                version: 1,
                labels: labels.cloned().unwrap_or_default(),
                create_time_ms: now_ms,
                update_time_ms: now_ms,
            },
        };
        self.records.insert(key.clone(), record.clone());
        Response::Put { record, revision: self.revision }
    }

    fn delete(&mut self, key: &Key, expect: Precondition) -> Response {
        let current = self.records.get(key);
        if !precondition_holds(current, expect) {
            return Response::Mismatch { current: current.cloned(), revision: self.revision };
        }
        let Some(deleted) = self.records.remove(key) else {
            return Response::Delete { deleted: None, revision: self.revision };
        };
        self.revision += 1;
        Response::Delete { deleted: Some(deleted), revision: self.revision }
    }

    /// Rebuilds the response of an already applied request from its remembered outcome and the
    /// retry itself (which carries the same key and value as the original).
    fn replay(&self, request: &Request, outcome: Outcome) -> Response {
        match (outcome, &request.command) {
            (
                Outcome::Put { create_revision, mod_revision, version, revision },
                Command::Put { key, value, labels, .. },
            ) => {
                let stored = self.records.get(key).filter(|r| r.mod_revision == mod_revision);
                let record = Record {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision,
                    mod_revision,
                    version,
                    labels: stored.map(|r| r.labels.clone()).or_else(|| labels.clone()).unwrap_or_default(),
                    create_time_ms: stored.map_or(request.proposed_at_ms, |r| r.create_time_ms),
                    update_time_ms: stored.map_or(request.proposed_at_ms, |r| r.update_time_ms),
                };
                Response::Put { record, revision }
            }
            (Outcome::Delete { deleted, revision }, Command::Delete { key, .. }) => {
                let deleted = deleted.then(|| tombstone(key, revision));
                Response::Delete { deleted, revision }
            }
            (Outcome::Mismatch { revision }, command) => {
                let current = command_key(command).and_then(|key| self.records.get(key)).cloned();
                Response::Mismatch { current, revision }
            }
            (outcome, command) => {
                panic!("session outcome {outcome:?} does not match its retried command {command:?}")
            }
        }
    }
}

fn precondition_holds(current: Option<&Record>, expect: Precondition) -> bool {
    match expect {
        Precondition::Always => true,
        Precondition::ModRevision(expected) => current.map_or(0, |r| r.mod_revision) == expected,
    }
}

fn outcome_of(response: &Response) -> Option<Outcome> {
    match response {
        Response::Put { record, revision } => Some(Outcome::Put {
            create_revision: record.create_revision,
            mod_revision: record.mod_revision,
            version: record.version,
            revision: *revision,
        }),
        Response::Delete { deleted, revision } => {
            Some(Outcome::Delete { deleted: deleted.is_some(), revision: *revision })
        }
        Response::Mismatch { revision, .. } => Some(Outcome::Mismatch { revision: *revision }),
        Response::Retired { .. } | Response::Noop { .. } | Response::Superseded { .. } => None,
    }
}

fn command_key(command: &Command) -> Option<&Key> {
    match command {
        Command::Put { key, .. } | Command::Delete { key, .. } => Some(key),
        Command::RetireNode { .. } => None,
    }
}

/// A stand-in for a deleted record in a replayed response; its value is no longer known.
fn tombstone(key: &Key, revision: u64) -> Record {
    Record {
        key: key.clone(),
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
        labels: Labels::new(),
        create_time_ms: 0,
        update_time_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ClientTag;

    fn put(key: &str, value: &str, expect: Precondition) -> Request {
        Request {
            tag: None,
            proposed_at_ms: 1_000,
            command: Command::Put {
                key: key.into(),
                value: Bytes::copy_from_slice(value.as_bytes()),
                labels: None,
                expect,
            },
        }
    }

    fn delete(key: &str) -> Request {
        Request {
            tag: None,
            proposed_at_ms: 1_000,
            command: Command::Delete { key: key.into(), expect: Precondition::Always },
        }
    }

    fn tagged(mut request: Request, client: u128, serial: u64) -> Request {
        request.tag = Some(ClientTag { client, serial });
        request
    }

    fn put_record(response: Response) -> Record {
        match response {
            Response::Put { record, .. } => record,
            other => panic!("expected a put, got {other:?}"),
        }
    }

    #[test]
    fn puts_count_revisions_and_versions_like_etcd() {
        let mut state = KvState::new(16);
        let bugs = InjectedBugs::default();
        let a = put_record(state.apply(1, &put("a", "1", Precondition::Always), bugs));
        let b = put_record(state.apply(2, &put("b", "1", Precondition::Always), bugs));
        let a2 = put_record(state.apply(3, &put("a", "2", Precondition::Always), bugs));
        assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 1, 1));
        assert_eq!((b.create_revision, b.mod_revision, b.version), (2, 2, 1));
        assert_eq!((a2.create_revision, a2.mod_revision, a2.version), (1, 3, 2));
        assert_eq!(state.revision(), 3);
    }

    #[test]
    fn a_delete_resets_the_incarnation_and_deleting_nothing_keeps_the_revision() {
        let mut state = KvState::new(16);
        let bugs = InjectedBugs::default();
        state.apply(1, &put("a", "1", Precondition::Always), bugs);
        let deleted = state.apply(2, &delete("a"), bugs);
        assert!(matches!(deleted, Response::Delete { deleted: Some(_), revision: 2 }));
        let nothing = state.apply(3, &delete("a"), bugs);
        assert_eq!(nothing, Response::Delete { deleted: None, revision: 2 });
        let again = put_record(state.apply(4, &put("a", "2", Precondition::Always), bugs));
        assert_eq!((again.create_revision, again.version), (3, 1));
    }

    #[test]
    fn compare_and_swap_checks_the_mod_revision_and_zero_means_absent() {
        let mut state = KvState::new(16);
        let bugs = InjectedBugs::default();
        let created = state.apply(1, &put("a", "1", Precondition::ModRevision(0)), bugs);
        assert_eq!(put_record(created).mod_revision, 1);
        let refused = state.apply(2, &put("a", "2", Precondition::ModRevision(0)), bugs);
        assert!(matches!(refused, Response::Mismatch { current: Some(_), revision: 1 }));
        let swapped = state.apply(3, &put("a", "3", Precondition::ModRevision(1)), bugs);
        assert_eq!(put_record(swapped).value, "3");
    }

    #[test]
    fn a_retried_request_is_applied_once_and_answered_the_same() {
        let mut state = KvState::new(16);
        let bugs = InjectedBugs::default();
        let request = tagged(put("a", "1", Precondition::Always), 7, 1);
        let first = state.apply(1, &request, bugs);
        state.apply(2, &put("a", "2", Precondition::Always), bugs);
        let retry = state.apply(3, &request, bugs);
        assert_eq!(put_record(retry).mod_revision, put_record(first).mod_revision);
        assert_eq!(state.get("a").unwrap().value, "2", "the retry did not overwrite");
        assert_eq!(state.revision(), 2);
    }

    #[test]
    fn the_skip_dedup_bug_applies_a_retry_twice() {
        let mut state = KvState::new(16);
        let bugs = InjectedBugs { skip_dedup: true, ..InjectedBugs::default() };
        let request = tagged(put("a", "1", Precondition::Always), 7, 1);
        state.apply(1, &request, bugs);
        state.apply(2, &request, bugs);
        assert_eq!(state.revision(), 2);
    }

    #[test]
    fn a_retry_older_than_the_clients_last_request_is_superseded() {
        let mut state = KvState::new(16);
        let bugs = InjectedBugs::default();
        state.apply(1, &tagged(put("a", "1", Precondition::Always), 7, 2), bugs);
        let stale = state.apply(2, &tagged(put("a", "0", Precondition::Always), 7, 1), bugs);
        assert_eq!(stale, Response::Superseded { revision: 1 });
    }
}
