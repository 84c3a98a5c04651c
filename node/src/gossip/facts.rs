//! What members tell each other besides liveness, as foca custom broadcasts: each node's raft
//! metadata (newest version wins) and the leader's change notices (highest revision wins).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};

use crate::api::Role;
use crate::command::NodeId;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// One node's raft state as it last announced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub id: NodeId,
    /// The announcing node's gossip generation; a restarted node's metadata replaces its old one.
    pub generation: u64,
    /// Counts this generation's announcements; with the generation, the version.
    pub sequence: u64,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// The revision its store had applied.
    pub revision: u64,
    /// Milliseconds since it last heard from a leader (0 on a leader with a fresh quorum), or
    /// none if it never did since it started.
    pub leader_contact_ms: Option<u64>,
}

impl NodeMeta {
    fn version(&self) -> (u64, u64) {
        (self.generation, self.sequence)
    }
}

/// The leader's compact notice of the cluster's newest revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNotice {
    pub leader: NodeId,
    pub term: u64,
    pub revision: u64,
}

/// A custom broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fact {
    Meta(NodeMeta),
    Change(ChangeNotice),
}

impl Fact {
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, CONFIG).expect("facts always encode")
    }
}

/// Identifies a broadcast so a newer one stops the dissemination of an older one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactKey {
    Meta { id: NodeId, version: (u64, u64) },
    Change { revision: u64 },
}

impl Invalidates for FactKey {
    fn invalidates(&self, other: &FactKey) -> bool {
        match (self, other) {
            (FactKey::Meta { id, version }, FactKey::Meta { id: other_id, version: other_version }) => {
                id == other_id && version >= other_version
            }
            (FactKey::Change { revision }, FactKey::Change { revision: other }) => revision >= other,
            _ => false,
        }
    }
}

/// The newest fact of each kind this node has seen.
#[derive(Debug, Default)]
pub struct FactTable {
    /// Each node's newest metadata, by node id.
    pub metas: BTreeMap<NodeId, NodeMeta>,
    /// The change notice with the highest revision.
    pub change: Option<ChangeNotice>,
}

impl FactTable {
    /// Keeps `fact` if it is newer than what the table holds; says under which key to spread it.
    pub fn absorb(&mut self, fact: Fact) -> Option<FactKey> {
        match fact {
            Fact::Meta(meta) => {
                let version = meta.version();
                if self.metas.get(&meta.id).is_some_and(|known| known.version() >= version) {
                    return None;
                }
                let id = meta.id;
                self.metas.insert(id, meta);
                Some(FactKey::Meta { id, version })
            }
            Fact::Change(notice) => {
                if self.change.is_some_and(|known| known.revision >= notice.revision) {
                    return None;
                }
                self.change = Some(notice);
                Some(FactKey::Change { revision: notice.revision })
            }
        }
    }

    /// The newest revision any fact mentions.
    pub fn newest_revision(&self) -> u64 {
        let metas = self.metas.values().map(|meta| meta.revision);
        metas.chain(self.change.map(|notice| notice.revision)).max().unwrap_or(0)
    }
}

/// The fact table, shared by foca's broadcast handler and the gossip actor. Both live on the
/// actor's task and take the lock only between awaits, so it is never contended; a std `Mutex`
/// is only there because foca owns its handler and must be `Send`.
#[derive(Clone, Debug, Default)]
pub struct SharedFacts(Arc<Mutex<FactTable>>);

impl SharedFacts {
    pub fn lock(&self) -> MutexGuard<'_, FactTable> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A broadcast that does not decode; foca drops it, nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("undecodable gossip fact: {0}")]
pub struct FactError(#[from] bincode::error::DecodeError);

impl<T> BroadcastHandler<T> for SharedFacts {
    type Key = FactKey;
    type Error = FactError;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&T>) -> Result<Option<FactKey>, FactError> {
        let (fact, _): (Fact, usize) = super::codec::decode_prefix(data)?;
        Ok(self.lock().absorb(fact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(generation: u64, sequence: u64, revision: u64) -> Fact {
        Fact::Meta(NodeMeta {
            id: 2,
            generation,
            sequence,
            role: Role::Follower,
            term: 1,
            leader: Some(1),
            revision,
            leader_contact_ms: Some(5),
        })
    }

    #[test]
    fn the_newest_metadata_version_wins() {
        let mut table = FactTable::default();
        assert!(table.absorb(meta(1, 2, 10)).is_some());
        assert!(table.absorb(meta(1, 1, 11)).is_none(), "an older sequence is stale");
        assert!(table.absorb(meta(1, 2, 12)).is_none(), "the same version is not news");
        assert!(table.absorb(meta(2, 0, 3)).is_some(), "a restart's generation is newer");
        assert_eq!(table.metas[&2].revision, 3);
    }

    #[test]
    fn change_notices_keep_the_highest_revision() {
        let mut table = FactTable::default();
        let notice = |revision| Fact::Change(ChangeNotice { leader: 1, term: 2, revision });
        assert!(table.absorb(notice(7)).is_some());
        assert!(table.absorb(notice(5)).is_none());
        assert_eq!(table.newest_revision(), 7);
        table.absorb(meta(1, 1, 9));
        assert_eq!(table.newest_revision(), 9);
    }

    #[test]
    fn a_newer_key_invalidates_an_older_one_of_the_same_subject() {
        let old = FactKey::Meta { id: 1, version: (1, 1) };
        let new = FactKey::Meta { id: 1, version: (1, 2) };
        assert!(new.invalidates(&old));
        assert!(!old.invalidates(&new));
        assert!(!FactKey::Meta { id: 2, version: (9, 9) }.invalidates(&old));
        assert!(FactKey::Change { revision: 3 }.invalidates(&FactKey::Change { revision: 2 }));
        assert!(!FactKey::Change { revision: 3 }.invalidates(&old));
    }
}
