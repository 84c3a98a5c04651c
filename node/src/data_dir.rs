//! A data directory belongs to one node of one cluster: [`DataDir`] locks it for the life of
//! the process and keeps its identity stamp, and every start checks the stamp against the flags.
//!
//! The stamp is the file `IDENTITY`, a few `name: value` lines an operator can read:
//!
//! ```text
//! cairn data directory
//! format: 1
//! node_id: 3
//! cluster_id: 9f3a0c1d2e3f4a5b
//! ```
//!
//! It is written when a directory is first opened (the cluster id is added once the node learns
//! it: at bootstrap, or from the replicated state when it joins) and replaced only by a durable
//! rename. A directory that holds cairn files but no stamp was written before stamps existed; it
//! is adopted and stamped with the node id it is started with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use thiserror::Error;

pub use crate::command::ClusterId;
use crate::command::NodeId;
use crate::raft::Member;
use crate::storage::{DirLock, Disk, LOCK_FILE};

/// The format of the files in a data directory this binary writes and reads. A directory
/// stamped with a newer one was written by a newer cairn and is refused.
pub const FORMAT: u32 = 1;

/// The stamp's file name in the data directory.
pub const STAMP_FILE: &str = "IDENTITY";
const STAMP_TEMPORARY: &str = "IDENTITY.tmp";
const STAMP_HEADER: &str = "cairn data directory";
/// A stamp is a few short lines; a longer file is not one.
const STAMP_BYTES_MAX: u64 = 4096;

/// What a data directory says it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub format: u32,
    pub node_id: NodeId,
    /// Unknown until the node learns it (a joiner before it received the replicated state).
    pub cluster_id: Option<ClusterId>,
}

/// Why a data directory cannot be used. Nothing in the directory was changed.
#[derive(Debug, Error)]
pub enum DataDirError {
    #[error(
        "data directory {dir} is in use ({holder}): another cairn process serves from it; stop that \
         process first, or give this one its own --data directory"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error(
        "data directory {dir} belongs to node {stamped}, not node {given}: start it with --id {stamped}, \
         or give node {given} its own empty --data directory (to reuse this one for node {given}, wipe it \
         and join node {given} to the cluster anew)"
    )]
    OtherNode { dir: PathBuf, stamped: NodeId, given: NodeId },
    #[error(
        "data directory {dir} belongs to cluster {stamped}, but {source_of_found} is cluster {found}: \
         point this node at its own cluster, or wipe the directory and join the other cluster anew"
    )]
    OtherCluster { dir: PathBuf, stamped: ClusterId, found: ClusterId, source_of_found: String },
    #[error(
        "data directory {dir} was written by a newer cairn (format {found}; this binary reads formats up to \
         {FORMAT}): run a cairn that reads format {found}"
    )]
    NewerFormat { dir: PathBuf, found: u32 },
    #[error(
        "data directory {dir} already holds a cluster whose membership --initial-cluster disagrees with \
         ({detail}): --initial-cluster only forms a new cluster in empty directories; drop the flag to \
         restart this node from its state, or wipe the directory to form a new cluster"
    )]
    InitialCluster { dir: PathBuf, detail: String },
    #[error("data directory {dir}: {STAMP_FILE} is not a valid identity stamp ({why}); it was not written by cairn")]
    Unreadable { dir: PathBuf, why: String },
    #[error("data directory {dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
}

/// A locked data directory and its stamp; the lock is held until this is dropped (or the
/// process dies).
pub struct DataDir {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// Held for the life of the node; never read.
    _lock: DirLock,
    /// The stamp as on disk. Changed only by [`DataDir::record_cluster_id`], under this lock,
    /// which is held across the durable write so that two recordings never interleave.
    stamp: Mutex<Stamp>,
}

impl fmt::Debug for DataDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataDir").field("dir", &self.dir).field("stamp", &self.stamp()).finish_non_exhaustive()
    }
}

impl DataDir {
    /// Creates and locks `dir`, then checks its stamp against `node_id`, stamping a directory
    /// that has none. Refuses a directory locked by another process, stamped for another node
    /// or written by a newer format.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path, node_id: NodeId) -> Result<DataDir, DataDirError> {
        let io_error = |source| DataDirError::Io { dir: dir.to_path_buf(), source };
        disk.create_dir_all(dir).map_err(io_error)?;
        let lock = disk.lock_dir(dir).map_err(|source| match source.kind() {
            io::ErrorKind::WouldBlock => DataDirError::Locked { dir: dir.to_path_buf(), holder: source.to_string() },
            _ => io_error(source),
        })?;
        let stamp = match read_stamp(disk.as_ref(), dir)? {
            Some(stamp) if stamp.format > FORMAT => {
                return Err(DataDirError::NewerFormat { dir: dir.to_path_buf(), found: stamp.format });
            }
            Some(stamp) if stamp.node_id != node_id => {
                return Err(DataDirError::OtherNode { dir: dir.to_path_buf(), stamped: stamp.node_id, given: node_id });
            }
            Some(stamp) => stamp,
            None => {
                if holds_files(disk.as_ref(), dir).map_err(io_error)? {
                    tracing::warn!(dir = %dir.display(), node_id, "adopting a data directory written before identity stamps");
                }
                let stamp = Stamp { format: FORMAT, node_id, cluster_id: None };
                write_stamp(disk.as_ref(), dir, &stamp).map_err(io_error)?;
                stamp
            }
        };
        Ok(DataDir { disk, dir: dir.to_path_buf(), _lock: lock, stamp: Mutex::new(stamp) })
    }

    pub fn stamp(&self) -> Stamp {
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cluster this directory belongs to, once known.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.stamp().cluster_id
    }

    /// Records the cluster id learned from `source` (for the error message), durably, the first
    /// time; later calls with the same id do nothing, and another id is refused.
    pub fn record_cluster_id(&self, cluster_id: ClusterId, source: &str) -> Result<(), DataDirError> {
        // Poisoning cannot leave the stamp inconsistent: it is replaced whole after the write.
        let mut stamp = self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        match stamp.cluster_id {
            Some(stamped) if stamped == cluster_id => Ok(()),
            Some(stamped) => Err(DataDirError::OtherCluster {
                dir: self.dir.clone(),
                stamped,
                found: cluster_id,
                source_of_found: source.to_string(),
            }),
            None => {
                let updated = Stamp { cluster_id: Some(cluster_id), ..*stamp };
                write_stamp(self.disk.as_ref(), &self.dir, &updated)
                    .map_err(|source| DataDirError::Io { dir: self.dir.clone(), source })?;
                *stamp = updated;
                Ok(())
            }
        }
    }
}

/// The stamp of `dir`, if it has one; read without locking, so it is only a hint when another
/// process may hold the directory.
pub fn read_stamp(disk: &dyn Disk, dir: &Path) -> Result<Option<Stamp>, DataDirError> {
    let path = dir.join(STAMP_FILE);
    let io_error = |source| DataDirError::Io { dir: dir.to_path_buf(), source };
    if !disk.exists(&path).map_err(io_error)? {
        return Ok(None);
    }
    let unreadable = |why: String| DataDirError::Unreadable { dir: dir.to_path_buf(), why };
    let len = disk.len(&path).map_err(io_error)?;
    if len > STAMP_BYTES_MAX {
        return Err(unreadable(format!("{len} bytes long")));
    }
    let bytes = disk.read_all(&path).map_err(io_error)?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8".to_string()))?;
    parse_stamp(&text).map(Some).map_err(unreadable)
}

fn parse_stamp(text: &str) -> Result<Stamp, String> {
    let mut lines = text.lines();
    if lines.next() != Some(STAMP_HEADER) {
        return Err(format!("the first line is not {STAMP_HEADER:?}"));
    }
    let mut fields = BTreeMap::new();
    for line in lines {
        let (name, value) = line.split_once(": ").ok_or_else(|| format!("line {line:?} is not `name: value`"))?;
        if fields.insert(name, value).is_some() {
            return Err(format!("{name} appears twice"));
        }
    }
    let decimal = |name: &str| -> Result<u64, String> {
        let value = fields.get(name).ok_or_else(|| format!("{name} is missing"))?;
        if value.is_empty() || value.len() > 20 || !value.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(format!("{name} {value:?} is not a decimal number"));
        }
        value.parse().map_err(|_| format!("{name} {value:?} is out of range"))
    };
    let format = u32::try_from(decimal("format")?).map_err(|_| "the format is out of range".to_string())?;
    let node_id = decimal("node_id")?;
    let cluster_id = match fields.get("cluster_id") {
        None => None,
        Some(text) => Some(ClusterId::parse(text).ok_or_else(|| format!("cluster_id {text:?} is not 16 hex digits"))?),
    };
    if format == 0 || node_id == 0 {
        return Err("format and node_id must be positive".to_string());
    }
    Ok(Stamp { format, node_id, cluster_id })
}

fn render_stamp(stamp: &Stamp) -> String {
    let mut text = format!("{STAMP_HEADER}\nformat: {}\nnode_id: {}\n", stamp.format, stamp.node_id);
    if let Some(cluster_id) = stamp.cluster_id {
        text.push_str(&format!("cluster_id: {cluster_id}\n"));
    }
    text
}

/// Replaces the stamp durably: a crash leaves the old stamp or the new one, never a torn one.
fn write_stamp(disk: &dyn Disk, dir: &Path, stamp: &Stamp) -> io::Result<()> {
    let temporary = dir.join(STAMP_TEMPORARY);
    if disk.exists(&temporary)? {
        disk.remove(&temporary)?;
    }
    disk.write_at(&temporary, 0, render_stamp(stamp).as_bytes())?;
    disk.sync(&temporary)?;
    disk.rename(&temporary, &dir.join(STAMP_FILE))?;
    disk.sync_dir(dir)
}

/// Whether `dir` holds anything besides the lock and a stamp being written: a directory
/// cairn used before stamps existed.
fn holds_files(disk: &dyn Disk, dir: &Path) -> io::Result<bool> {
    Ok(disk.list(dir)?.iter().any(|name| name != LOCK_FILE && name != STAMP_TEMPORARY))
}

/// Refuses an `--initial-cluster` that disagrees with the membership a directory already
/// holds: every node it lists must be a member with the same addresses, or have been removed
/// since (`retired`: the ids among those listed that the replicated state retired). Nodes added
/// since the cluster formed need not be listed, so a node restarted with its original flags
/// after membership changes starts.
pub fn check_initial_cluster<'a>(
    dir: &Path,
    listed: &BTreeMap<NodeId, Member>,
    held: impl IntoIterator<Item = (&'a NodeId, &'a Member)>,
    retired: &BTreeSet<NodeId>,
) -> Result<(), DataDirError> {
    let held: BTreeMap<NodeId, &Member> = held.into_iter().map(|(id, member)| (*id, member)).collect();
    let disagreement = listed.iter().find_map(|(id, member)| match held.get(id) {
        None if retired.contains(id) => None,
        None => Some(format!("node {id} is listed but is not a member and was never removed")),
        Some(known) if *known != member => Some(format!(
            "node {id} is listed as {}@{} but is a member as {}@{}",
            member.peer, member.http, known.peer, known.http
        )),
        Some(_) => None,
    });
    match disagreement {
        None => Ok(()),
        Some(detail) => Err(DataDirError::InitialCluster { dir: dir.to_path_buf(), detail }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimDisk;

    fn disk() -> Arc<dyn Disk> {
        Arc::new(SimDisk::new(7))
    }

    // Goal: a fresh directory is stamped with the node id and format, and a later start under
    // the same id finds it; another id is refused with a message naming both ids.
    #[test]
    fn a_directory_is_stamped_once_and_refuses_another_node_id() {
        let disk = disk();
        let dir = Path::new("/data");
        let first = DataDir::open(disk.clone(), dir, 3).unwrap();
        assert_eq!(first.stamp(), Stamp { format: FORMAT, node_id: 3, cluster_id: None });
        drop(first);
        assert_eq!(DataDir::open(disk.clone(), dir, 3).unwrap().stamp().node_id, 3);
        let refused = DataDir::open(disk, dir, 4).unwrap_err();
        assert!(matches!(refused, DataDirError::OtherNode { stamped: 3, given: 4, .. }), "{refused}");
        assert!(refused.to_string().contains("start it with --id 3"), "{refused}");
    }

    // Goal: the directory lock holds across `DataDir`s: a second open is refused while the
    // first lives.
    #[test]
    fn a_second_open_of_a_locked_directory_is_refused() {
        let disk = disk();
        let held = DataDir::open(disk.clone(), Path::new("/data"), 1).unwrap();
        let refused = DataDir::open(disk.clone(), Path::new("/data"), 1).unwrap_err();
        assert!(matches!(refused, DataDirError::Locked { .. }), "{refused}");
        drop(held);
        DataDir::open(disk, Path::new("/data"), 1).unwrap();
    }

    // Goal: the cluster id is recorded once and durably (it survives a power loss); another one
    // is refused.
    #[test]
    fn the_cluster_id_is_recorded_once_and_another_is_refused() {
        let sim = Arc::new(SimDisk::new(3));
        let disk: Arc<dyn Disk> = sim.clone();
        let dir = Path::new("/data");
        let data_dir = DataDir::open(disk.clone(), dir, 1).unwrap();
        data_dir.record_cluster_id(ClusterId(0xabc), "the replicated state").unwrap();
        data_dir.record_cluster_id(ClusterId(0xabc), "the replicated state").unwrap();
        let refused = data_dir.record_cluster_id(ClusterId(0xdef), "the member at x").unwrap_err();
        assert!(refused.to_string().contains("belongs to cluster 0000000000000abc"), "{refused}");
        drop(data_dir);
        sim.crash();
        assert_eq!(read_stamp(disk.as_ref(), dir).unwrap().unwrap().cluster_id, Some(ClusterId(0xabc)));
    }

    // Goal: a stamp from a newer format is refused, and a malformed or hostile stamp is an
    // error, never a panic or a guess.
    #[test]
    fn newer_and_malformed_stamps_are_refused() {
        let disk = disk();
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        let stamp = |text: &str| {
            disk.write_at(&dir.join(STAMP_FILE), 0, text.as_bytes()).unwrap();
            disk.set_len(&dir.join(STAMP_FILE), text.len() as u64).unwrap();
            DataDir::open(disk.clone(), dir, 1).map(|_| ())
        };
        let newer = stamp("cairn data directory\nformat: 2\nnode_id: 1\n").unwrap_err();
        assert!(matches!(newer, DataDirError::NewerFormat { found: 2, .. }), "{newer}");
        for hostile in [
            "",
            "cairn data directory\nformat: +1\nnode_id: 1\n",
            "cairn data directory\nformat: 1\nnode_id: 99999999999999999999999\n",
            "cairn data directory\nformat: 1\nnode_id: 1\ncluster_id: zz\n",
            "cairn data directory\nformat: 1\nformat: 1\nnode_id: 1\n",
            "cairn data directory\nformat: 1\n",
        ] {
            assert!(matches!(stamp(hostile), Err(DataDirError::Unreadable { .. })), "{hostile:?}");
        }
        stamp("cairn data directory\nformat: 1\nnode_id: 1\ncluster_id: 00000000000000ff\n").unwrap();
    }

    // Goal: an initial cluster agrees when every listed node is a member with the same
    // addresses or was removed since (added members need not be listed), and disagrees
    // otherwise.
    #[test]
    fn an_initial_cluster_must_list_members_with_their_addresses() {
        let member = |port: u16| Member { peer: format!("127.0.0.1:{port}"), http: format!("127.0.0.1:{}", port + 1) };
        let held: BTreeMap<NodeId, Member> = [(1, member(10)), (2, member(20)), (3, member(30))].into();
        let dir = Path::new("/data");
        let none = BTreeSet::new();
        let listed: BTreeMap<NodeId, Member> = [(1, member(10)), (2, member(20))].into();
        check_initial_cluster(dir, &listed, &held, &none).unwrap();
        let moved: BTreeMap<NodeId, Member> = [(1, member(10)), (2, member(40))].into();
        let refused = check_initial_cluster(dir, &moved, &held, &none).unwrap_err();
        assert!(refused.to_string().contains("node 2 is listed as"), "{refused}");
        let stranger: BTreeMap<NodeId, Member> = [(1, member(10)), (4, member(40))].into();
        let refused = check_initial_cluster(dir, &stranger, &held, &none).unwrap_err();
        assert!(
            refused.to_string().contains("node 4 is listed but is not a member and was never removed"),
            "{refused}"
        );
        check_initial_cluster(dir, &stranger, &held, &BTreeSet::from([4])).unwrap();
    }
}
