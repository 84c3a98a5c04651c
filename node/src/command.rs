//! What clients ask of the replicated store, as it travels through the raft log, and what the
//! store answers once the entry is applied.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::acl::{AclCommand, AclOutcome, Credential, Denial};
use crate::record::{Key, Labels, Record};

/// A node's id in the raft membership. Never reused after the node is removed.
pub type NodeId = u64;

/// A cluster's identity: drawn at random when the cluster is bootstrapped and kept in its
/// replicated state, so every member (and every joiner, once it has the state) knows it.
/// Written, on disk and on the wire, as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl ClusterId {
    /// Parses the 16 lowercase hex digits [`Display`](fmt::Display) writes, and nothing else.
    pub fn parse(text: &str) -> Option<ClusterId> {
        let hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
        if text.len() != 16 || !text.bytes().all(hex) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(ClusterId)
    }
}

impl Serialize for ClusterId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ClusterId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ClusterId, D::Error> {
        let text = String::deserialize(deserializer)?;
        ClusterId::parse(&text).ok_or_else(|| serde::de::Error::custom("a cluster id is 16 lowercase hex digits"))
    }
}

/// The identity of a client request, so that a retry of the same request applies at most once.
///
/// A client numbers its requests with increasing serials and repeats the same tag when it
/// retries; the store remembers the last serial and response per client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientTag {
    pub client: u128,
    pub serial: u64,
}

/// A condition on the key's current `mod_revision`; `0` means the key must be absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    Always,
    ModRevision(u64),
}

/// A log entry's application payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Dedup identity; `None` for internal commands that are never retried.
    pub tag: Option<ClientTag>,
    /// The proposing node's clock (Unix milliseconds); the state machine never reads a clock.
    pub proposed_at_ms: u64,
    pub command: Command,
}

/// A state-machine command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets a key's value; labels are replaced when given and kept otherwise.
    Put {
        key: Key,
        value: Bytes,
        labels: Option<Labels>,
        expect: Precondition,
    },
    Delete {
        key: Key,
        expect: Precondition,
    },
    /// Records that a node id left the cluster for good, so it is never admitted again.
    RetireNode {
        id: NodeId,
    },
    /// Gives the cluster its id, unless it has one: the first one applied wins for good.
    /// Proposed by a leader that finds none, so after a bootstrap (or an upgrade from before
    /// cluster ids) every replica learns the same id from the log.
    SetClusterId {
        cluster_id: ClusterId,
    },
    /// Creates kie kv `id`, unless the project already has a kv with this key and labels.
    KieCreate {
        project: Arc<str>,
        id: Arc<str>,
        key: Arc<str>,
        labels: Labels,
        value: Bytes,
        value_type: String,
        status: String,
    },
    /// Changes a kie kv's value and/or status.
    KieUpdate {
        project: Arc<str>,
        id: Arc<str>,
        value: Option<Bytes>,
        status: Option<String>,
    },
    /// Deletes kie kvs; those that do not exist are skipped. One revision per deleted kv.
    KieDelete {
        project: Arc<str>,
        ids: Vec<Arc<str>>,
    },
    /// Changes the ACL state (see [`crate::acl`]).
    Acl(AclCommand),
    /// `command` on behalf of the token whose secret hashes to `credential`: applied only if
    /// the ACL state at that point of the log allows it. A client command without this wrapper
    /// is applied as an anonymous one. The wrapped command is never another wrapper.
    Authorized {
        credential: Credential,
        #[serde(deserialize_with = "crate::acl::flat_command")]
        command: Box<Command>,
    },
}

impl Command {
    /// The command itself, without its [`Command::Authorized`] wrapper.
    pub fn unwrapped(&self) -> &Command {
        match self {
            Command::Authorized { command, .. } => command,
            command => command,
        }
    }
}

/// The store's answer to one applied [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The put was applied; `record` is the new state and `revision` the store revision after it.
    Put {
        record: Record,
        revision: u64,
    },
    /// The delete was applied; `deleted` holds the removed record, `None` if the key was absent
    /// (then nothing changed and `revision` is the unchanged store revision).
    Delete {
        deleted: Option<Record>,
        revision: u64,
    },
    /// The precondition failed; nothing changed.
    Mismatch {
        current: Option<Record>,
        revision: u64,
    },
    Retired {
        id: NodeId,
    },
    /// A kie kv was created or updated.
    KieWritten {
        record: Record,
        revision: u64,
    },
    /// A kie create found a kv with the same key and labels in the project: `id`.
    KieExists {
        id: Arc<str>,
        revision: u64,
    },
    /// The kie kv does not exist.
    KieNotFound {
        revision: u64,
    },
    /// These kie kvs were deleted (the others did not exist).
    KieDeleted {
        ids: Vec<Arc<str>>,
        revision: u64,
    },
    /// The answer to a log entry that carries no request (a leader's blank entry, a membership
    /// change); raft still waits for one.
    Noop {
        revision: u64,
    },
    /// A retry whose client has since completed a newer request; it was not applied, and its
    /// original outcome is no longer remembered.
    Superseded {
        revision: u64,
    },
    /// The client tag was last used for a different request; this one was not applied.
    TagReused {
        revision: u64,
    },
    /// What an ACL command did.
    Acl {
        outcome: AclOutcome,
        revision: u64,
    },
    /// The ACL state refused the command; nothing changed.
    Denied {
        denial: Denial,
        revision: u64,
    },
}

impl Response {
    /// The store revision this response reports.
    pub fn revision(&self) -> u64 {
        match self {
            Response::Put { revision, .. }
            | Response::Delete { revision, .. }
            | Response::Mismatch { revision, .. }
            | Response::Noop { revision }
            | Response::KieWritten { revision, .. }
            | Response::KieExists { revision, .. }
            | Response::KieNotFound { revision }
            | Response::KieDeleted { revision, .. }
            | Response::Superseded { revision }
            | Response::TagReused { revision }
            | Response::Acl { revision, .. }
            | Response::Denied { revision, .. } => *revision,
            Response::Retired { .. } => 0,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.command, f)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Put { key, value, .. } => write!(f, "put {key} ({} bytes)", value.len()),
            Command::Delete { key, .. } => write!(f, "delete {key}"),
            Command::RetireNode { id } => write!(f, "retire node {id}"),
            Command::SetClusterId { cluster_id } => write!(f, "set cluster id {cluster_id}"),
            Command::KieCreate { project, key, .. } => write!(f, "kie create {project}/{key}"),
            Command::KieUpdate { project, id, .. } => write!(f, "kie update {project}/{id}"),
            Command::KieDelete { project, ids } => write!(f, "kie delete {} in {project}", ids.len()),
            Command::Acl(_) => write!(f, "acl change"),
            Command::Authorized { command, .. } => write!(f, "{command} (with a token)"),
        }
    }
}
