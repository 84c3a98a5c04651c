//! The client session table: remembers the last request of each client so that a retried
//! request is answered from memory instead of being applied twice (Raft dissertation §6.3).
//!
//! A session also remembers the request's [`Fingerprint`]: a client tag reused for a different
//! request is refused rather than answered with the first request's outcome, which would
//! acknowledge a write that never happened.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::acl::{AclOutcome, Denial};
use crate::command::{ClientTag, Command};

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
    Acl {
        outcome: AclOutcome,
        revision: u64,
    },
    Denied {
        denial: Denial,
        revision: u64,
    },
}

/// A stable 128-bit digest of a command: SipHash-1-3 under fixed keys over the command's bincode
/// encoding, so every replica, every build and every platform computes the same value (std's
/// `Hash` is neither endian- nor version-stable, and this value lives in snapshots).
///
/// It tells a retry from a different request under the same tag. It is not a MAC: a client that
/// crafts a collision only fools the answer to its own request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint(u128);

impl Fingerprint {
    pub fn of(command: &Command) -> Fingerprint {
        let mut hasher =
            HashingWriter(siphasher::sip128::SipHasher13::new_with_keys(FINGERPRINT_KEYS.0, FINGERPRINT_KEYS.1));
        let encoded = bincode::serde::encode_into_writer(command, &mut hasher, bincode::config::standard());
        debug_assert!(encoded.is_ok(), "hashing never fails to write");
        Fingerprint(siphasher::sip128::Hasher128::finish128(&hasher.0).as_u128())
    }
}

/// Fixed, public keys: the fingerprint must be the same everywhere, not secret.
const FINGERPRINT_KEYS: (u64, u64) = (0x6361_6972_6e2d_7461, 0x672d_6669_6e67_6572);

/// Feeds bincode's output straight into the hasher, so a 1 MiB value is never copied to hash it.
struct HashingWriter(siphasher::sip128::SipHasher13);

impl bincode::enc::write::Writer for HashingWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        std::hash::Hasher::write(&mut self.0, bytes);
        Ok(())
    }
}

/// How the session table judges an incoming request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen before: apply it.
    Fresh,
    /// The same request was applied already, with this outcome.
    Duplicate(Outcome),
    /// The client's last request had this serial but was a different request: the tag was
    /// reused. Nothing is applied.
    TagReused,
    /// The client has completed a newer request since; this one is a stale retry.
    Superseded,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    serial: u64,
    /// What the request under `serial` was, to tell its retries from a reused tag.
    fingerprint: Fingerprint,
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

    /// Judges the request `fingerprint` arriving under `tag`.
    pub fn judge(&self, tag: ClientTag, fingerprint: Fingerprint) -> Verdict {
        match self.by_client.get(&tag.client) {
            Some(session) if session.serial == tag.serial && session.fingerprint == fingerprint => {
                Verdict::Duplicate(session.outcome.clone())
            }
            Some(session) if session.serial == tag.serial => Verdict::TagReused,
            Some(session) if session.serial > tag.serial => Verdict::Superseded,
            _ => Verdict::Fresh,
        }
    }

    /// Judges by the tag alone, ignoring what the request is: the `ignore-tag-reuse` bug.
    pub fn judge_by_tag(&self, tag: ClientTag) -> Verdict {
        let session = self.by_client.get(&tag.client);
        self.judge(tag, session.map_or(Fingerprint(0), |session| session.fingerprint))
    }

    /// Remembers the outcome of the request `fingerprint` applied at log `index`.
    pub fn remember(&mut self, tag: ClientTag, fingerprint: Fingerprint, outcome: Outcome, index: u64) {
        if let Some(previous) = self.by_client.get(&tag.client) {
            self.by_last_index.remove(&previous.last_index);
        }
        debug_assert!(!self.by_last_index.contains_key(&index), "one request per log index");
        let session = Session { serial: tag.serial, fingerprint, outcome, last_index: index };
        self.by_client.insert(tag.client, session);
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

    fn fingerprint(key: &str) -> Fingerprint {
        Fingerprint::of(&Command::Delete { key: key.into(), expect: crate::command::Precondition::Always })
    }

    /// `Fingerprint::of` a delete of "a", as this build computes it.
    const PINNED_DELETE_A: u128 = 0xb6f17c7bf96648764a3e2e5593715d82;

    const PUT: Outcome = Outcome::Put { create_revision: 1, mod_revision: 1, version: 1, revision: 1 };

    #[test]
    fn a_retry_of_the_last_request_is_a_duplicate() {
        let mut sessions = Sessions::new(8);
        let a = fingerprint("a");
        assert_eq!(sessions.judge(tag(1, 1), a), Verdict::Fresh);
        sessions.remember(tag(1, 1), a, PUT, 10);
        assert_eq!(sessions.judge(tag(1, 1), a), Verdict::Duplicate(PUT));
        assert_eq!(sessions.judge(tag(1, 2), a), Verdict::Fresh);
        assert_eq!(sessions.judge(tag(2, 1), a), Verdict::Fresh);
    }

    #[test]
    fn the_last_serial_with_a_different_request_is_a_reused_tag() {
        let mut sessions = Sessions::new(8);
        sessions.remember(tag(1, 1), fingerprint("a"), PUT, 10);
        assert_eq!(sessions.judge(tag(1, 1), fingerprint("b")), Verdict::TagReused);
    }

    #[test]
    fn fingerprints_tell_every_field_apart_and_are_stable() {
        let put = |value: &'static str| Command::Put {
            key: "k".into(),
            value: bytes::Bytes::from_static(value.as_bytes()),
            labels: None,
            expect: crate::command::Precondition::Always,
        };
        assert_eq!(Fingerprint::of(&put("v")), Fingerprint::of(&put("v")));
        assert_ne!(Fingerprint::of(&put("v")), Fingerprint::of(&put("w")));
        assert_ne!(fingerprint("k"), Fingerprint::of(&put("")));
        // Pinned: the value is part of snapshots, so it must not change between builds.
        assert_eq!(fingerprint("a"), Fingerprint(PINNED_DELETE_A));
    }

    #[test]
    fn an_older_serial_than_the_last_is_superseded() {
        let mut sessions = Sessions::new(8);
        sessions.remember(tag(1, 5), fingerprint("a"), PUT, 10);
        assert_eq!(sessions.judge(tag(1, 4), fingerprint("a")), Verdict::Superseded);
    }

    #[test]
    fn the_least_recently_used_client_is_evicted_first() {
        let mut sessions = Sessions::new(2);
        let a = fingerprint("a");
        sessions.remember(tag(1, 1), a, PUT, 1);
        sessions.remember(tag(2, 1), a, PUT, 2);
        sessions.remember(tag(1, 2), a, PUT, 3);
        sessions.remember(tag(3, 1), a, PUT, 4);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.judge(tag(2, 1), a), Verdict::Fresh, "client 2 was least recent");
        assert_eq!(sessions.judge(tag(1, 2), a), Verdict::Duplicate(PUT));
    }

    #[test]
    fn only_a_table_remember_could_have_built_is_consistent() {
        let mut sessions = Sessions::new(2);
        for (client, index) in [(1, 1), (2, 2), (1, 3), (3, 4)] {
            sessions.remember(tag(client, index), fingerprint("a"), PUT, index);
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
