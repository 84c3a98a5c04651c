//! The store actor's task and its handle. The actor owns the [`KvState`]; raft's state-machine
//! worker sends it committed entries, HTTP handlers send it reads, and it publishes its progress
//! (revision, applied index) on a watch channel for long polls, status and stale reads.

use openraft::EntryPayload;
use tokio::sync::{mpsc, oneshot};

use std::collections::HashMap;
use std::sync::Arc;

use crate::acl::{AclState, Authority, Credential, Denial};
use crate::api::{ListResult, ReadResult};
use crate::bugs::InjectedBugs;
use crate::command::{ClusterId, NodeId, Response};
use crate::raft::{Entry, LogId, SnapshotMeta, StoredMembership};
use crate::record::Key;
use crate::rt::{self, watch};
use crate::store::events::{Compacted, Event, HistoryLimits};
use crate::store::filter::Filter;
use crate::store::state::{KvState, Reader};

/// Messages waiting for the actor before senders wait for room.
const INBOX_MAX: usize = 1024;

/// What the store has applied so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreProgress {
    pub revision: u64,
    /// Keys in the store (kie records and reserved keys included).
    pub keys: u64,
    pub applied_index: u64,
    /// This node's id was retired by an applied entry: it was removed from the cluster.
    pub self_retired: bool,
    /// The cluster's id, once an applied entry gave it one.
    pub cluster_id: Option<ClusterId>,
    /// ACLs were bootstrapped: requests are checked against tokens and policies.
    pub acl_enabled: bool,
}

/// The state at one applied log id, frozen for a snapshot (an O(1) clone).
pub struct Frozen {
    pub state: KvState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

enum Message {
    Apply {
        entries: Vec<Entry>,
        reply: oneshot::Sender<Vec<Response>>,
    },
    AppliedState {
        reply: oneshot::Sender<(Option<LogId>, StoredMembership)>,
    },
    Freeze {
        reply: oneshot::Sender<Frozen>,
    },
    Install {
        meta: SnapshotMeta,
        state: Box<KvState>,
        reply: oneshot::Sender<()>,
    },
    Get {
        key: Key,
        credential: Credential,
        reply: oneshot::Sender<Result<ReadResult, Denial>>,
    },
    List {
        query: Listing,
        credential: Credential,
        reply: oneshot::Sender<Result<ListResult, Denial>>,
    },
    Events {
        from: u64,
        filter: Filter,
        max: usize,
        credential: Credential,
        reply: oneshot::Sender<Authorized<EventsResult>>,
    },
    ChangedAfter {
        after: u64,
        filter: Filter,
        credential: Credential,
        reply: oneshot::Sender<Authorized<Option<bool>>>,
    },
    Authorize {
        credential: Credential,
        reply: oneshot::Sender<Result<Authority, Denial>>,
    },
    Acl {
        reply: oneshot::Sender<AclState>,
    },
    IsRetired {
        id: NodeId,
        reply: oneshot::Sender<bool>,
    },
}

/// A listing's page request, as the store actor takes it.
struct Listing {
    filter: Filter,
    after: Option<Key>,
    limit: usize,
}

/// An answer, or the ACL state's refusal of the credential it was asked with.
pub type Authorized<T> = Result<T, Denial>;

/// Events from the history, and the revision the scan covered (every matching event up to it is
/// included, unless the result was cut at `max`).
pub type EventsResult = Result<(Vec<Arc<Event>>, u64), Compacted>;

/// A cheap, cloneable way to talk to the store actor.
#[derive(Clone)]
pub struct StoreHandle {
    inbox: mpsc::Sender<Message>,
    progress: watch::Receiver<StoreProgress>,
}

/// The store actor stopped (its node is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the store actor has stopped")]
pub struct StoreStopped;

impl StoreHandle {
    /// Starts the store actor for node `id` with an empty state.
    pub fn spawn(id: NodeId, session_capacity: usize, history: HistoryLimits, bugs: InjectedBugs) -> StoreHandle {
        let (inbox, messages) = mpsc::channel(INBOX_MAX);
        let (progress_tx, progress) = watch::channel(StoreProgress::default());
        let actor = StoreActor {
            id,
            state: KvState::new(session_capacity, history),
            last_applied: None,
            membership: StoredMembership::default(),
            bugs,
            progress: progress_tx,
            authorities: Authorities::default(),
        };
        rt::spawn(actor.run(messages));
        StoreHandle { inbox, progress }
    }

    async fn ask<T>(&self, message: impl FnOnce(oneshot::Sender<T>) -> Message) -> Result<T, StoreStopped> {
        let (reply, answer) = oneshot::channel();
        self.inbox.send(message(reply)).await.map_err(|_| StoreStopped)?;
        answer.await.map_err(|_| StoreStopped)
    }

    /// Applies committed entries in order; one response per entry ([`Response::Noop`] for
    /// entries that carry no request: blanks and membership changes).
    pub async fn apply(&self, entries: Vec<Entry>) -> Result<Vec<Response>, StoreStopped> {
        self.ask(|reply| Message::Apply { entries, reply }).await
    }

    pub async fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StoreStopped> {
        self.ask(|reply| Message::AppliedState { reply }).await
    }

    pub async fn freeze(&self) -> Result<Frozen, StoreStopped> {
        self.ask(|reply| Message::Freeze { reply }).await
    }

    pub async fn install(&self, meta: SnapshotMeta, state: KvState) -> Result<(), StoreStopped> {
        self.ask(|reply| Message::Install { meta, state: Box::new(state), reply }).await
    }

    /// The key's record, if `credential` may read it.
    pub async fn get(&self, key: Key, credential: Credential) -> Result<Authorized<ReadResult>, StoreStopped> {
        self.ask(|reply| Message::Get { key, credential, reply }).await
    }

    /// Matching records `credential` may read after `after`, at most `limit`, with the total
    /// and the revision.
    pub async fn list(
        &self,
        filter: Filter,
        after: Option<Key>,
        limit: usize,
        credential: Credential,
    ) -> Result<Authorized<ListResult>, StoreStopped> {
        self.ask(|reply| Message::List { query: Listing { filter, after, limit }, credential, reply }).await
    }

    /// Matching events of keys `credential` may read from revision `from` on, at most `max`.
    pub async fn events(
        &self,
        from: u64,
        filter: Filter,
        max: usize,
        credential: Credential,
    ) -> Result<Authorized<EventsResult>, StoreStopped> {
        self.ask(|reply| Message::Events { from, filter, max, credential, reply }).await
    }

    /// Whether anything matching that `credential` may read changed after revision `after`
    /// (`None`: compacted, unknown).
    pub async fn changed_after(
        &self,
        after: u64,
        filter: Filter,
        credential: Credential,
    ) -> Result<Authorized<Option<bool>>, StoreStopped> {
        self.ask(|reply| Message::ChangedAfter { after, filter, credential, reply }).await
    }

    /// What `credential` may do in the current state.
    pub async fn authorize(&self, credential: Credential) -> Result<Authorized<Authority>, StoreStopped> {
        self.ask(|reply| Message::Authorize { credential, reply }).await
    }

    /// The current ACL state (an O(1) clone).
    pub async fn acl(&self) -> Result<AclState, StoreStopped> {
        self.ask(|reply| Message::Acl { reply }).await
    }

    pub async fn is_retired(&self, id: NodeId) -> Result<bool, StoreStopped> {
        self.ask(|reply| Message::IsRetired { id, reply }).await
    }

    pub fn progress(&self) -> StoreProgress {
        *self.progress.borrow()
    }

    /// A receiver that wakes on every applied batch.
    pub fn watch_progress(&self) -> watch::Receiver<StoreProgress> {
        self.progress.clone()
    }
}

struct StoreActor {
    id: NodeId,
    state: KvState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    bugs: InjectedBugs,
    progress: watch::Sender<StoreProgress>,
    authorities: Authorities,
}

/// Authorities resolved for the credentials seen since the ACL state last changed: a request
/// then costs one hash of its secret and one map lookup.
#[derive(Default)]
struct Authorities {
    generation: u64,
    resolved: HashMap<Credential, Result<Authority, Denial>>,
}

/// Credentials remembered between ACL changes: a flood of made-up tokens costs memory only up
/// to this, then the cache starts over.
const AUTHORITIES_CACHED_MAX: usize = 4_096;

impl StoreActor {
    fn reader<'a>(&self, credential: &'a Credential, authority: &'a Authority) -> Reader<'a> {
        Reader { credential, authority, past_ignored: self.bugs.current_acl_events() }
    }

    fn authority(&mut self, credential: &Credential) -> Result<Authority, Denial> {
        let acl = self.state.acl();
        let cache = &mut self.authorities;
        if cache.generation != acl.generation() || cache.resolved.len() >= AUTHORITIES_CACHED_MAX {
            if !self.bugs.stale_acl_cache() || cache.resolved.len() >= AUTHORITIES_CACHED_MAX {
                cache.resolved.clear();
            }
            cache.generation = acl.generation();
        }
        cache.resolved.entry(*credential).or_insert_with(|| acl.authority(credential)).clone()
    }

    async fn run(mut self, mut messages: mpsc::Receiver<Message>) {
        while let Some(message) = messages.recv().await {
            match message {
                Message::Apply { entries, reply } => {
                    let responses = entries.into_iter().map(|entry| self.apply(entry)).collect();
                    self.publish();
                    let _ = reply.send(responses);
                }
                Message::AppliedState { reply } => {
                    let _ = reply.send((self.last_applied, self.membership.clone()));
                }
                Message::Freeze { reply } => {
                    let frozen = Frozen {
                        state: self.state.clone(),
                        last_applied: self.last_applied,
                        membership: self.membership.clone(),
                    };
                    let _ = reply.send(frozen);
                }
                Message::Install { meta, state, reply } => {
                    self.install(meta, *state);
                    let _ = reply.send(());
                }
                Message::Get { key, credential, reply } => {
                    let read = self.authority(&credential).and_then(|authority| {
                        authority.check(authority.can_read(&key))?;
                        Ok(ReadResult { record: self.state.get(&key).cloned(), revision: self.state.revision() })
                    });
                    let _ = reply.send(read);
                }
                Message::List { query, credential, reply } => {
                    let listed = self.authority(&credential).map(|authority| {
                        let page = self.state.list(&query.filter, query.after.as_deref(), query.limit, &authority);
                        let revision = self.state.revision();
                        ListResult { records: page.records, total: page.total, next: page.next, revision }
                    });
                    let _ = reply.send(listed);
                }
                Message::Events { from, filter, max, credential, reply } => {
                    let revision = self.state.revision();
                    let found = self.authority(&credential).map(|authority| {
                        let reader = self.reader(&credential, &authority);
                        self.state.events_since(from, &filter, max, &reader).map(|events| (events, revision))
                    });
                    let _ = reply.send(found);
                }
                Message::ChangedAfter { after, filter, credential, reply } => {
                    let changed = self.authority(&credential).map(|authority| {
                        self.state.changed_after(after, &filter, &self.reader(&credential, &authority))
                    });
                    let _ = reply.send(changed);
                }
                Message::Authorize { credential, reply } => {
                    let _ = reply.send(self.authority(&credential));
                }
                Message::Acl { reply } => {
                    let _ = reply.send(self.state.acl().clone());
                }
                Message::IsRetired { id, reply } => {
                    let _ = reply.send(self.state.is_retired(id));
                }
            }
        }
    }

    fn apply(&mut self, entry: Entry) -> Response {
        let index = entry.log_id.index;
        if let Some(applied) = &self.last_applied {
            assert!(index > applied.index, "entry {index} applied twice or out of order (applied {applied})");
        }
        let response = match &entry.payload {
            EntryPayload::Blank => Response::Noop { revision: self.state.revision() },
            EntryPayload::Normal(request) => self.state.apply(index, request, self.bugs),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                Response::Noop { revision: self.state.revision() }
            }
        };
        self.last_applied = Some(entry.log_id);
        response
    }

    fn install(&mut self, meta: SnapshotMeta, state: KvState) {
        self.state = state;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership;
        self.publish();
    }

    fn publish(&self) {
        let progress = StoreProgress {
            revision: self.state.revision(),
            keys: self.state.len() as u64,
            applied_index: self.last_applied.as_ref().map_or(0, |id| id.index),
            self_retired: self.state.is_retired(self.id),
            cluster_id: self.state.cluster_id(),
            acl_enabled: self.state.acl().enabled(),
        };
        self.progress.send_if_modified(|current| {
            let changed = *current != progress;
            *current = progress;
            changed
        });
    }
}
