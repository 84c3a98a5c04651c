//! Which records a list, a long poll or a watch is about: a key prefix and labels.

use serde::{Deserialize, Serialize};

use crate::record::Record;

/// A selection of records by key prefix and labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Only keys starting with this (every key when empty).
    pub prefix: String,
    /// Only this exact key (a long poll on one key).
    pub key: Option<String>,
    /// Only records carrying every one of these labels.
    pub labels: Vec<(String, String)>,
    /// With `exact_labels`, only records whose labels are exactly `labels` (kie's `match=exact`).
    pub exact_labels: bool,
    /// Only kie kvs with this kie key (kie's `key=` filter).
    pub kie_key: Option<String>,
}

impl Filter {
    pub fn prefix(prefix: impl Into<String>) -> Filter {
        Filter { prefix: prefix.into(), ..Filter::default() }
    }

    /// Exactly one key.
    pub fn key(key: impl Into<String>) -> Filter {
        let key = key.into();
        Filter { prefix: key.clone(), key: Some(key), ..Filter::default() }
    }

    pub fn matches(&self, record: &Record) -> bool {
        if !record.key.starts_with(self.prefix.as_str()) {
            return false;
        }
        if self.key.as_deref().is_some_and(|key| key != &*record.key) {
            return false;
        }
        if let Some(kie_key) = &self.kie_key
            && record.kie.as_ref().is_none_or(|kie| &*kie.key != kie_key.as_str())
        {
            return false;
        }
        let carried = self.labels.iter().all(|(name, value)| record.labels.get(name) == Some(value));
        carried && (!self.exact_labels || record.labels.len() == self.labels.len())
    }
}
