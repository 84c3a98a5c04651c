//! A member's identity in the gossip cluster, and the generation that makes a restarted node's
//! identity newer than any identity it had before.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::command::NodeId;
use crate::storage::Disk;

/// Who a gossip member is: its raft id and every address it serves on, plus a version.
///
/// Two identities with the same gossip address are the same member; the one with the higher
/// `(generation, renewal)` wins, so a restarted node (its generation was bumped on start) or a
/// node that renewed itself after being declared down replaces its old identity at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipIdentity {
    pub id: NodeId,
    /// The raft peer address.
    pub peer: String,
    /// The HTTP API address.
    pub http: String,
    /// The UDP address gossip listens on; foca's notion of the member's address.
    pub gossip: SocketAddr,
    /// Persisted in the data directory and bumped on every start.
    pub generation: u64,
    /// Bumped in memory each time this node rejoins after the cluster declared it down.
    pub renewal: u16,
}

impl GossipIdentity {
    fn version(&self) -> (u64, u16) {
        (self.generation, self.renewal)
    }
}

impl foca::Identity for GossipIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(GossipIdentity { renewal: self.renewal.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.version() > adversary.version()
    }
}

/// The file in the data directory that holds the last generation.
const GENERATION_FILE: &str = "gossip-generation";

/// Reads the generation persisted in `data_dir`, bumps it, and makes the new one durable before
/// returning it, so no two starts of a node ever use the same generation.
pub fn next_generation(disk: &dyn Disk, data_dir: &Path) -> io::Result<u64> {
    disk.create_dir_all(data_dir)?;
    let path = data_dir.join(GENERATION_FILE);
    let previous = if disk.exists(&path)? {
        let bytes = disk.read_all(&path)?;
        let bytes: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the gossip generation file is not 8 bytes"))?;
        u64::from_le_bytes(bytes)
    } else {
        0
    };
    let generation = previous + 1;
    let temporary = data_dir.join(format!("{GENERATION_FILE}.tmp"));
    if disk.exists(&temporary)? {
        disk.remove(&temporary)?;
    }
    disk.write_at(&temporary, 0, &generation.to_le_bytes())?;
    disk.sync(&temporary)?;
    disk.rename(&temporary, &path)?;
    disk.sync_dir(data_dir)?;
    Ok(generation)
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;
    use crate::storage::FsDisk;

    fn identity(generation: u64) -> GossipIdentity {
        GossipIdentity {
            id: 1,
            peer: "127.0.0.1:7701".into(),
            http: "127.0.0.1:7700".into(),
            gossip: "127.0.0.1:7702".parse().unwrap(),
            generation,
            renewal: 0,
        }
    }

    #[test]
    fn a_later_generation_or_renewal_wins_the_address() {
        let (old, new) = (identity(1), identity(2));
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old));
        assert!(new.win_addr_conflict(&renewed));
    }

    #[test]
    fn the_generation_is_bumped_and_persisted_on_every_start() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        assert_eq!(next_generation(&disk, dir.path()).unwrap(), 1);
        assert_eq!(next_generation(&disk, dir.path()).unwrap(), 2);
        assert_eq!(next_generation(&disk, dir.path()).unwrap(), 3);
    }
}
