//! The client session table: remembers the last request of each client so that a retried
//! request is answered from memory instead of being applied twice (Raft dissertation §6.3).

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::command::ClientTag;

/// What a remembered request did, without values (a retry carries its own value, and keeping
/// values here would let sessions hold gigabytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Put {
        create_revision: u64,
        mod_revision: u64,
        version: u64,
        revision: u64,
    },
    Delete {
        deleted: bool,
        revision: u64,
    },
    Mismatch {
        revision: u64,
    },
    /// A kie kv was written; a retry answers with the kv as it is now.
    KieWritten {
        revision: u64,
    },
    KieExists {
        id: Arc<str>,
        revision: u64,
    },
    KieNotFound {
        revision: u64,
    },
    KieDeleted {
        ids: Vec<Arc<str>>,
        revision: u64,
    },
}

/// How the session table judges an incoming request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen before: apply it.
    Fresh,
    /// The same request was applied already, with this outcome.
    Duplicate(Outcome),
    /// The client has completed a newer request since; this one is a stale retry.
    Superseded,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    serial: u64,
    outcome: Outcome,
    /// Log index of the session's last request; the oldest sessions are evicted first.
    last_index: u64,
}

/// Sessions keyed by client, bounded by `capacity`; eviction is by log index, so every replica
/// evicts the same sessions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    #[serde(deserialize_with = "super::cautious::ord_map")]
    by_client: OrdMap<u128, Session>,
    #[serde(deserialize_with = "super::cautious::ord_map")]
    by_last_index: OrdMap<u64, u128>,
    capacity: usize,
}

impl Sessions {
    /// A table remembering at most `capacity` clients. A retry from a client evicted since its
    /// first attempt would be applied again, so the capacity must exceed the number of clients
    /// that write within any retry window.
    pub fn new(capacity: usize) -> Sessions {
        assert!(capacity > 0, "the session table needs room for at least one client");
        Sessions { by_client: OrdMap::new(), by_last_index: OrdMap::new(), capacity }
    }

    pub fn judge(&self, tag: ClientTag) -> Verdict {
        match self.by_client.get(&tag.client) {
            Some(session) if session.serial == tag.serial => Verdict::Duplicate(session.outcome.clone()),
            Some(session) if session.serial > tag.serial => Verdict::Superseded,
            _ => Verdict::Fresh,
        }
    }

    /// Remembers the outcome of the request applied at log `index`.
    pub fn remember(&mut self, tag: ClientTag, outcome: Outcome, index: u64) {
        if let Some(previous) = self.by_client.get(&tag.client) {
            self.by_last_index.remove(&previous.last_index);
        }
        debug_assert!(!self.by_last_index.contains_key(&index), "one request per log index");
        self.by_client.insert(tag.client, Session { serial: tag.serial, outcome, last_index: index });
        self.by_last_index.insert(index, tag.client);
        while self.by_client.len() > self.capacity {
            let &(index, oldest) = self.by_last_index.get_min().expect("indexes mirror sessions");
            self.by_last_index.remove(&index);
            self.by_client.remove(&oldest);
        }
        assert_eq!(self.by_client.len(), self.by_last_index.len());
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Why this table could not have been built by [`Sessions::remember`], if it could not: for
    /// a table decoded from a snapshot, whose later updates assert what `remember` keeps.
    pub fn inconsistency(&self) -> Option<&'static str> {
        if self.capacity == 0 {
            return Some("a session table without room for a session");
        }
        let mirrored = self.by_client.len() == self.by_last_index.len()
            && self.by_client.len() <= self.capacity
            && self
                .by_last_index
                .iter()
                .all(|(index, client)| self.by_client.get(client).is_some_and(|session| session.last_index == *index));
        (!mirrored).then_some("the session index does not mirror the sessions")
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(client: u128, serial: u64) -> ClientTag {
        ClientTag { client, serial }
    }

    const PUT: Outcome = Outcome::Put { create_revision: 1, mod_revision: 1, version: 1, revision: 1 };

    #[test]
    fn a_retry_of_the_last_request_is_a_duplicate() {
        let mut sessions = Sessions::new(8);
        assert_eq!(sessions.judge(tag(1, 1)), Verdict::Fresh);
        sessions.remember(tag(1, 1), PUT, 10);
        assert_eq!(sessions.judge(tag(1, 1)), Verdict::Duplicate(PUT));
        assert_eq!(sessions.judge(tag(1, 2)), Verdict::Fresh);
        assert_eq!(sessions.judge(tag(2, 1)), Verdict::Fresh);
    }

    #[test]
    fn an_older_serial_than_the_last_is_superseded() {
        let mut sessions = Sessions::new(8);
        sessions.remember(tag(1, 5), PUT, 10);
        assert_eq!(sessions.judge(tag(1, 4)), Verdict::Superseded);
    }

    #[test]
    fn the_least_recently_used_client_is_evicted_first() {
        let mut sessions = Sessions::new(2);
        sessions.remember(tag(1, 1), PUT, 1);
        sessions.remember(tag(2, 1), PUT, 2);
        sessions.remember(tag(1, 2), PUT, 3);
        sessions.remember(tag(3, 1), PUT, 4);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.judge(tag(2, 1)), Verdict::Fresh, "client 2 was least recent");
        assert_eq!(sessions.judge(tag(1, 2)), Verdict::Duplicate(PUT));
    }

    #[test]
    fn only_a_table_remember_could_have_built_is_consistent() {
        let mut sessions = Sessions::new(2);
        for (client, index) in [(1, 1), (2, 2), (1, 3), (3, 4)] {
            sessions.remember(tag(client, index), PUT, index);
        }
        assert_eq!(sessions.inconsistency(), None);
        let mut forged = sessions.clone();
        forged.by_last_index.remove(&4);
        assert!(forged.inconsistency().is_some(), "a session missing from the index");
        let mut forged = sessions.clone();
        forged.by_last_index.insert(9, 3);
        forged.by_last_index.remove(&4);
        assert!(forged.inconsistency().is_some(), "an index pointing at the wrong request");
        let mut forged = sessions.clone();
        forged.capacity = 1;
        assert!(forged.inconsistency().is_some(), "more sessions than room");
    }
}
