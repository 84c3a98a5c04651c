//! A stored key's record: what reads return and what every mutation produces.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A key: non-empty UTF-8, at most [`crate::Limits::key_bytes_max`] bytes. Shared, because the
/// same key lives in the map, in responses and in watch events.
pub type Key = Arc<str>;

/// Labels attached to a record (config-center style `app=order`, `env=prod`).
pub type Labels = BTreeMap<String, String>;

/// One key's current state, with etcd's revision bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Key,
    pub value: Bytes,
    /// The store revision of the put that created this incarnation of the key.
    pub create_revision: u64,
    /// The store revision of the put that last modified the key.
    pub mod_revision: u64,
    /// How many puts this incarnation has seen: 1 on creation, reset by a delete.
    pub version: u64,
    pub labels: Labels,
    /// Leader time (Unix milliseconds) of the creating put; time enters through the log.
    pub create_time_ms: u64,
    /// Leader time (Unix milliseconds) of the last put.
    pub update_time_ms: u64,
    /// Set on records made through the kie-compatible routes.
    #[serde(default)]
    pub kie: Option<Arc<KieFields>>,
}

/// A kie kv's own fields. kie identifies a kv by project, key and labels; cairn stores it as the
/// record `.kie/{project}/{id}`, so kie and native views share one store and one revision.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KieFields {
    pub project: Arc<str>,
    pub id: Arc<str>,
    /// kie's key (several kvs may share it, with different labels).
    pub key: Arc<str>,
    pub value_type: String,
    pub status: String,
}

/// The prefix of every record a kie route made; native writes refuse it.
pub const KIE_PREFIX: &str = ".kie/";

/// The store key of kie kv `id` in `project`.
pub fn kie_key(project: &str, id: &str) -> Key {
    format!("{KIE_PREFIX}{project}/{id}").into()
}
