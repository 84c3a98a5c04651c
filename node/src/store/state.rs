//! The replicated state: an ordered map of records, the global revision and the event history.
//! Pure: applying the same requests in the same order yields the same state on every replica.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::acl::{AclCommand, AclPast, AclState, Authority, Credential, Denial, Governed};
use crate::bugs::InjectedBugs;
use crate::command::{ClusterId, Command, NodeId, Precondition, Request, Response};
use crate::record::{KIE_PREFIX, Key, KieFields, Labels, Record, kie_key};
use crate::store::events::{Action, Compacted, Event, EventLog, HistoryLimits};
use crate::store::filter::Filter;
use crate::store::sessions::{Fingerprint, Outcome, Sessions, Verdict};

/// kie identifies a kv by its project, its key and its labels.
type KieIdentity = (Arc<str>, Arc<str>, Labels);

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    pub records: Vec<Record>,
    /// Matching records in all pages.
    pub total: usize,
    /// Where the next page starts, if there is one.
    pub next: Option<Key>,
}

/// The key-value state every replica applies the log to.
///
/// The maps are persistent (`imbl`), so a snapshot is an O(1) clone that a background task can
/// serialize while the store keeps applying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    #[serde(deserialize_with = "super::cautious::ord_map")]
    records: OrdMap<Key, Record>,
    /// Counts every mutation, as etcd's revision does; never decreases.
    revision: u64,
    sessions: Sessions,
    /// Node ids removed from the cluster; they are never admitted again.
    retired: BTreeSet<NodeId>,
    events: EventLog,
    /// kie kvs by identity, to refuse a second kv with the same key and labels in a project.
    #[serde(deserialize_with = "super::cautious::ord_map")]
    kie_ids: OrdMap<KieIdentity, Arc<str>>,
    /// The cluster's id, once a `SetClusterId` was applied. Skipped here because snapshots of
    /// format 1 were written without it: the snapshot file carries it beside the state
    /// (`store/snapshot.rs`).
    #[serde(skip)]
    cluster_id: Option<ClusterId>,
    /// Tokens and policies. Skipped here for the same reason: snapshots of format 2 were
    /// written without it, and the file carries it beside the state.
    #[serde(skip)]
    acl: AclState,
    /// The ACL states the events in the history were written under; carried beside the state
    /// like `acl`.
    #[serde(skip)]
    acl_past: AclPast,
}

/// Who reads the event history: the request's credential and what it may do now.
pub struct Reader<'a> {
    pub credential: &'a Credential,
    pub authority: &'a Authority,
    /// Judge events by the current ACL state only, not also by the one they were written under
    /// (the injected bug `current-acl-events`).
    pub past_ignored: bool,
}

impl KvState {
    pub fn new(session_capacity: usize, history: HistoryLimits) -> KvState {
        KvState {
            records: OrdMap::new(),
            revision: 0,
            sessions: Sessions::new(session_capacity),
            retired: BTreeSet::new(),
            events: EventLog::new(history),
            kie_ids: OrdMap::new(),
            cluster_id: None,
            acl: AclState::default(),
            acl_past: AclPast::default(),
        }
    }

    pub fn acl(&self) -> &AclState {
        &self.acl
    }

    pub fn acl_past(&self) -> &AclPast {
        &self.acl_past
    }

    /// Restores the ACL state and its past that a snapshot file carried beside the state;
    /// without a past (older files), events before the restored revision count as unknown.
    pub fn restore_acl(&mut self, acl: AclState, past: Option<AclPast>) {
        self.acl = acl;
        self.acl_past = past.unwrap_or_else(|| AclPast::known_after(self.revision));
    }

    /// The cluster's id, once one was applied.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.cluster_id
    }

    /// Restores the cluster id a snapshot file carried beside the state.
    pub fn restore_cluster_id(&mut self, cluster_id: Option<ClusterId>) {
        self.cluster_id = cluster_id;
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Makes this state (restored from a backup) the first state of a new cluster: it gets the
    /// new cluster's id, and the ids the old cluster retired may be members again, since the
    /// new cluster's membership is whatever its operator lists.
    pub fn begin_new_cluster(&mut self, cluster_id: ClusterId) {
        self.cluster_id = Some(cluster_id);
        self.retired.clear();
    }

    /// Why this state could not have been built by [`KvState::apply`], if it could not. A state
    /// decoded from a snapshot (which a hostile leader can write, checksum and all) is checked
    /// before it is installed, so that applying to it never trips what the store asserts.
    pub fn inconsistency(&self) -> Option<String> {
        // No store reaches 2^63 revisions or versions; refusing them leaves room for 2^63 more
        // applies before any counter could overflow.
        const COUNTER_MAX: u64 = 1 << 63;
        if self.revision >= COUNTER_MAX {
            return Some(format!("revision {} is beyond any real store's", self.revision));
        }
        let parts = self.sessions.inconsistency().or_else(|| self.events.inconsistency(self.revision));
        let acl = self.acl.inconsistency().or_else(|| self.acl_past.inconsistency(self.revision));
        if let Some(why) = parts.or(acl) {
            return Some(why.to_string());
        }
        let impossible = self.records.iter().find(|(key, record)| {
            record.key != **key
                || record.version >= COUNTER_MAX
                || record.create_revision > record.mod_revision
                || record.mod_revision > self.revision
                || (key.starts_with(KIE_PREFIX) && record.kie.is_none())
        });
        impossible.map(|(key, _)| format!("record {key:?} could not have been written"))
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

    /// Matching records in key order after `after` (exclusive), at most `limit`, and how many
    /// match in all.
    /// Only records `authority` may read are listed or counted.
    pub fn list(&self, filter: &Filter, after: Option<&str>, limit: usize, authority: &Authority) -> ListPage {
        let start: Key = filter.prefix.as_str().into();
        let matching = self
            .records
            .range(start..)
            .take_while(|(key, _)| key.starts_with(filter.prefix.as_str()))
            .filter(|(key, record)| filter.matches(record) && authority.can_read(key));
        let (mut records, mut total, mut next) = (Vec::new(), 0, None);
        for (key, record) in matching {
            total += 1;
            if after.is_some_and(|after| &**key <= after) {
                continue;
            }
            if records.len() < limit {
                records.push(record.clone());
            } else if next.is_none() {
                next = records.last().map(|last: &Record| last.key.clone());
            }
        }
        ListPage { records, total, next }
    }

    /// Events with revision `>= from` that match `filter`, of keys `reader` may read.
    pub fn events_since(
        &self,
        from: u64,
        filter: &Filter,
        max: usize,
        reader: &Reader<'_>,
    ) -> Result<Vec<Arc<Event>>, Compacted> {
        self.events.since(from, filter, max, &mut self.visibility(reader))
    }

    /// Whether anything matching `filter` that `reader` may read changed after `after`
    /// (`None`: no longer known).
    pub fn changed_after(&self, after: u64, filter: &Filter, reader: &Reader<'_>) -> Option<bool> {
        self.events.changed_after(after, filter, &mut self.visibility(reader))
    }

    /// Whether `reader` may see an event: it may read the key now, and could where the event
    /// sits in the log (see `acl::past`). Events come in revision order, so the credential is
    /// resolved once per past ACL state.
    fn visibility<'a>(&'a self, reader: &'a Reader<'a>) -> impl FnMut(&Event) -> bool + 'a {
        let mut resolved: Option<(u64, Option<Authority>)> = None;
        move |event| {
            let key = &event.record.key;
            if !reader.authority.can_read(key) {
                return false;
            }
            if reader.past_ignored || !matches!(reader.authority, Authority::Limited(_)) {
                return true;
            }
            match self.acl_past.governing(event.revision) {
                Governed::Current => true,
                Governed::Unknown => false,
                Governed::Past { era, state } => {
                    if resolved.as_ref().is_none_or(|(known, _)| *known != era) {
                        resolved = Some((era, state.authority(reader.credential).ok()));
                    }
                    resolved.as_ref().and_then(|(_, authority)| authority.as_ref()).is_some_and(|a| a.can_read(key))
                }
            }
        }
    }

    pub fn oldest_event(&self) -> u64 {
        self.events.oldest_available()
    }

    /// Applies the request committed at log `index`.
    ///
    /// Total: whatever a committed entry holds, every replica returns the same response and
    /// nothing panics. Validation happens before proposing (`Node::write`), but entries already
    /// in a log, and entries from older or hostile proposers, must still apply.
    pub fn apply(&mut self, index: u64, request: &Request, bugs: InjectedBugs) -> Response {
        let Some(tag) = request.tag else {
            return self.execute(request);
        };
        let fingerprint = Fingerprint::of(&request.command);
        if !bugs.skip_dedup() {
            let judged = if bugs.ignore_tag_reuse() {
                self.sessions.judge_by_tag(tag)
            } else {
                self.sessions.judge(tag, fingerprint)
            };
            match judged {
                Verdict::Fresh => {}
                Verdict::Duplicate(outcome) => return self.replay(request, outcome),
                Verdict::TagReused => return Response::TagReused { revision: self.revision },
                Verdict::Superseded => return Response::Superseded { revision: self.revision },
            }
        }
        let response = self.execute(request);
        if let Some(outcome) = outcome_of(&response) {
            self.sessions.remember(tag, fingerprint, outcome, index);
        }
        response
    }

    fn execute(&mut self, request: &Request) -> Response {
        let (credential, command) = match &request.command {
            Command::Authorized { credential, command } => (Some(credential), &**command),
            command => (None, command),
        };
        if let Err(denial) = self.authorize(credential, command) {
            return Response::Denied { denial, revision: self.revision };
        }
        let revision_before = self.revision;
        let now = request.proposed_at_ms;
        let response = match command {
            Command::Put { key, value, labels, expect } => self.put(key, value, labels.as_ref(), *expect, now),
            Command::Delete { key, expect } => self.delete(key, *expect),
            Command::RetireNode { id } => {
                self.retired.insert(*id);
                Response::Retired { id: *id }
            }
            Command::SetClusterId { cluster_id } => {
                self.cluster_id.get_or_insert(*cluster_id);
                Response::Noop { revision: self.revision }
            }
            Command::KieCreate { project, id, key, labels, value, value_type, status } => {
                let fields = KieFields {
                    project: project.clone(),
                    id: id.clone(),
                    key: key.clone(),
                    value_type: value_type.clone(),
                    status: status.clone(),
                };
                self.kie_create(fields, labels, value, now)
            }
            Command::KieUpdate { project, id, value, status } => {
                self.kie_update(project, id, value.as_ref(), status.as_ref(), now)
            }
            Command::KieDelete { project, ids } => self.kie_delete(project, ids),
            Command::Acl(change) => {
                let before = self.acl.clone();
                let outcome = self.acl.apply(change);
                if self.acl.generation() != before.generation() {
                    self.acl_past.record(self.revision, before);
                }
                Response::Acl { outcome, revision: self.revision }
            }
            Command::Authorized { .. } => {
                Response::Denied { denial: Denial::PermissionDenied, revision: self.revision }
            }
        };
        assert!(self.revision >= revision_before, "the revision never goes back");
        response
    }

    /// Whether the ACL state lets `command` apply, on behalf of `credential` (`None`: the
    /// command came without a token). Internal commands come only unwrapped, from a leader;
    /// every client command is checked, an unwrapped one as anonymous.
    fn authorize(&self, credential: Option<&Credential>, command: &Command) -> Result<(), Denial> {
        let internal = matches!(command, Command::RetireNode { .. } | Command::SetClusterId { .. });
        match (credential, command) {
            (None, _) if internal => return Ok(()),
            (Some(_), _) if internal => return Err(Denial::PermissionDenied),
            // Once per cluster, by whoever comes first; a second one is answered as such.
            (_, Command::Acl(AclCommand::Bootstrap { .. })) => return Ok(()),
            _ => {}
        }
        let authority = self.acl.authority(credential.unwrap_or(&Credential::Anonymous))?;
        authority.check(crate::acl::permits(&authority, command))
    }

    /// What a request with `credential` may do in this state.
    pub fn authority(&self, credential: &Credential) -> Result<Authority, Denial> {
        self.acl.authority(credential)
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
        let record =
            self.next_version(key, value.clone(), labels.cloned(), current.and_then(|r| r.kie.clone()), now_ms);
        self.store(record.clone());
        Response::Put { record, revision: self.revision }
    }

    fn delete(&mut self, key: &Key, expect: Precondition) -> Response {
        let current = self.records.get(key);
        if !precondition_holds(current, expect) {
            return Response::Mismatch { current: current.cloned(), revision: self.revision };
        }
        match self.remove(key) {
            Some(deleted) => Response::Delete { deleted: Some(deleted), revision: self.revision },
            None => Response::Delete { deleted: None, revision: self.revision },
        }
    }

    /// The record `key` becomes after a put at the next revision; labels are kept unless given.
    fn next_version(
        &self,
        key: &Key,
        value: Bytes,
        labels: Option<Labels>,
        kie: Option<Arc<KieFields>>,
        now_ms: u64,
    ) -> Record {
        let revision = self.revision + 1;
        match self.records.get(key) {
            Some(current) => Record {
                key: key.clone(),
                value,
                create_revision: current.create_revision,
                mod_revision: revision,
                version: current.version + 1,
                labels: labels.unwrap_or_else(|| current.labels.clone()),
                create_time_ms: current.create_time_ms,
                update_time_ms: now_ms.max(current.update_time_ms),
                kie,
            },
            None => Record {
                key: key.clone(),
                value,
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                labels: labels.unwrap_or_default(),
                create_time_ms: now_ms,
                update_time_ms: now_ms,
                kie,
            },
        }
    }

    /// Stores a record at the next revision and records its event.
    fn store(&mut self, record: Record) {
        self.revision += 1;
        assert_eq!(record.mod_revision, self.revision, "a stored record carries the revision of its put");
        self.records.insert(record.key.clone(), record.clone());
        self.record_event(Event { revision: self.revision, action: Action::Put, record });
    }

    /// Removes a record at the next revision and records its event; `None` if it was absent.
    fn remove(&mut self, key: &Key) -> Option<Record> {
        let deleted = self.records.remove(key)?;
        self.revision += 1;
        if let Some(kie) = &deleted.kie {
            self.kie_ids.remove(&(kie.project.clone(), kie.key.clone(), deleted.labels.clone()));
        }
        let tombstone = Record { value: Bytes::new(), ..deleted.clone() };
        self.record_event(Event { revision: self.revision, action: Action::Delete, record: tombstone });
        Some(deleted)
    }

    /// Appends a mutation's event, forgetting the ACL states of the events it pushed out.
    fn record_event(&mut self, event: Event) {
        self.events.push(event);
        self.acl_past.trim(self.events.oldest_available());
    }

    fn kie_create(&mut self, fields: KieFields, labels: &Labels, value: &Bytes, now_ms: u64) -> Response {
        let identity = (fields.project.clone(), fields.key.clone(), labels.clone());
        if let Some(existing) = self.kie_ids.get(&identity) {
            return Response::KieExists { id: existing.clone(), revision: self.revision };
        }
        let key = kie_key(&fields.project, &fields.id);
        let id = fields.id.clone();
        let record = self.next_version(&key, value.clone(), Some(labels.clone()), Some(Arc::new(fields)), now_ms);
        self.store(record.clone());
        self.kie_ids.insert(identity, id);
        Response::KieWritten { record, revision: self.revision }
    }

    fn kie_update(
        &mut self,
        project: &str,
        id: &str,
        value: Option<&Bytes>,
        status: Option<&String>,
        now_ms: u64,
    ) -> Response {
        let key = kie_key(project, id);
        // A record under the kie prefix without kie fields was not made by a kie route (an
        // older or hostile proposer wrote it natively): it is no kie kv.
        let Some((current, current_fields)) =
            self.records.get(&key).and_then(|current| Some((current, current.kie.as_ref()?)))
        else {
            return Response::KieNotFound { revision: self.revision };
        };
        let mut fields = (**current_fields).clone();
        if let Some(status) = status {
            fields.status = status.clone();
        }
        let value = value.cloned().unwrap_or_else(|| current.value.clone());
        let record = self.next_version(&key, value, None, Some(Arc::new(fields)), now_ms);
        self.store(record.clone());
        Response::KieWritten { record, revision: self.revision }
    }

    fn kie_delete(&mut self, project: &str, ids: &[Arc<str>]) -> Response {
        let deleted = ids.iter().filter(|id| self.remove(&kie_key(project, id)).is_some()).cloned().collect();
        Response::KieDeleted { ids: deleted, revision: self.revision }
    }

    /// Rebuilds the response of an already applied request from its remembered outcome and the
    /// retry itself (which carries the same key and value as the original: the fingerprints
    /// matched). An outcome that does not fit the command can only come from a fingerprint
    /// collision; it is answered as a reused tag, never with a made-up record.
    fn replay(&self, request: &Request, outcome: Outcome) -> Response {
        match (outcome, request.command.unwrapped()) {
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
                    kie: stored.and_then(|r| r.kie.clone()),
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
            (
                Outcome::KieWritten { revision },
                Command::KieCreate { project, id, .. } | Command::KieUpdate { project, id, .. },
            ) => match self.records.get(&kie_key(project, id)) {
                Some(record) => Response::KieWritten { record: record.clone(), revision },
                None => Response::KieNotFound { revision },
            },
            (Outcome::KieExists { id, revision }, Command::KieCreate { .. }) => Response::KieExists { id, revision },
            (Outcome::KieNotFound { revision }, Command::KieUpdate { .. }) => Response::KieNotFound { revision },
            (Outcome::KieDeleted { ids, revision }, Command::KieDelete { .. }) => {
                Response::KieDeleted { ids, revision }
            }
            (Outcome::Acl { outcome, revision }, Command::Acl(_)) => Response::Acl { outcome, revision },
            (Outcome::Denied { denial, revision }, _) => Response::Denied { denial, revision },
            _ => Response::TagReused { revision: self.revision },
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
        Response::KieWritten { revision, .. } => Some(Outcome::KieWritten { revision: *revision }),
        Response::KieExists { id, revision } => Some(Outcome::KieExists { id: id.clone(), revision: *revision }),
        Response::KieNotFound { revision } => Some(Outcome::KieNotFound { revision: *revision }),
        Response::KieDeleted { ids, revision } => Some(Outcome::KieDeleted { ids: ids.clone(), revision: *revision }),
        Response::Acl { outcome, revision } => Some(Outcome::Acl { outcome: outcome.clone(), revision: *revision }),
        Response::Denied { denial, revision } => Some(Outcome::Denied { denial: *denial, revision: *revision }),
        Response::Retired { .. } | Response::Noop { .. } | Response::Superseded { .. } | Response::TagReused { .. } => {
            None
        }
    }
}

fn command_key(command: &Command) -> Option<&Key> {
    match command {
        Command::Put { key, .. } | Command::Delete { key, .. } => Some(key),
        Command::RetireNode { .. }
        | Command::SetClusterId { .. }
        | Command::KieCreate { .. }
        | Command::KieUpdate { .. }
        | Command::KieDelete { .. }
        | Command::Acl(_) => None,
        Command::Authorized { command, .. } => command_key(command),
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
        kie: None,
    }
}

#[cfg(test)]
mod tests;
