//! [`Disk`] in memory for the simulator, with power failure.
//!
//! The test harness owns one `SimDisk` per node and hands the node an `Arc` of it, so the disk
//! outlives the node: a node killed and restarted without [`SimDisk::crash`] finds everything it
//! wrote (a process crash), and one restarted after `crash` finds only what a real disk would
//! guarantee after a power loss, with the rest kept, lost or torn at random from the seed.
//!
//! The model, per file: durable bytes plus the unsynced writes and `set_len`s made since the
//! last [`Disk::sync`], in order; reads see the latest state. Per directory: file creations,
//! renames and removals are pending until [`Disk::sync_dir`] of that directory. On `crash`:
//! - each unsynced write is kept, lost, or torn at [`SECTOR_BYTES`] boundaries (a random,
//!   non-empty, proper prefix of its sectors survives), and each unsynced `set_len` is kept or
//!   lost; survivors are replayed in their original order onto the durable bytes; where a write
//!   lost bytes, up to a sector of zeros or garbage may be left in their place (the size grew,
//!   the data never came), so checksums at the tail are exercised, not only clean cuts;
//! - a random prefix of the pending namespace changes survives, in order, and the rest revert.
//!
//! Directories themselves are durable as soon as they are created: cairn creates its few
//! directories once, and modelling their loss would only test the harness. Renames across
//! directories are refused (cairn never does one), which keeps every namespace change local to
//! one directory.
//!
//! Determinism: all randomness comes from the seed given to [`SimDisk::new`], every map is a
//! `BTreeMap`, and there are no threads and no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{DirLock, Disk};

/// The unit a torn write is cut at: disks write whole sectors atomically, not whole writes.
pub const SECTOR_BYTES: u64 = 512;

/// A simulated disk; see the module documentation for its failure model.
#[derive(Debug)]
pub struct SimDisk {
    /// Everything, behind one lock: calls are short, memory-only and never `.await` inside, so
    /// a std `Mutex` is right, and it makes each call atomic with respect to [`SimDisk::crash`].
    state: Mutex<SimState>,
    /// Which directories are locked, and by which lock (a number that is never reused). Apart
    /// from `state` so that a guard can release its lock after the disk's user is gone; shared
    /// with the guards.
    locks: Arc<Mutex<SimLocks>>,
}

/// The simulated disk's directory locks: the holder of each locked directory.
#[derive(Debug, Default)]
struct SimLocks {
    held: BTreeMap<PathBuf, u64>,
    next: u64,
}

/// Releases a simulated lock when dropped, unless it was released meanwhile and perhaps taken
/// by a later holder (a killed node's tasks may be dropped long after the node restarted).
struct SimLockGuard {
    locks: Arc<Mutex<SimLocks>>,
    dir: PathBuf,
    lock: u64,
}

impl Drop for SimLockGuard {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if locks.held.get(&self.dir) == Some(&self.lock) {
            locks.held.remove(&self.dir);
        }
    }
}

/// What [`SimDisk::crash`] did to the unsynced state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unsynced writes that survived whole.
    pub writes_kept: u64,
    /// Unsynced writes of which only a prefix of sectors survived.
    pub writes_torn: u64,
    /// Unsynced writes that vanished.
    pub writes_lost: u64,
    /// Torn or lost writes whose lost part left zeros or garbage behind.
    pub writes_debris: u64,
    /// Unsynced `set_len`s that survived.
    pub set_lens_kept: u64,
    /// Unsynced `set_len`s that were undone.
    pub set_lens_lost: u64,
    /// Bytes of unsynced writes that did not survive (lost writes and torn-off parts).
    pub bytes_lost: u64,
    /// Pending creations, renames and removals that survived.
    pub namespace_kept: u64,
    /// Pending creations, renames and removals that were undone.
    pub namespace_reverted: u64,
}

/// A fault the disk injects from [`SimDisk::set_fault`] until it is cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// The disk is full: a write or `set_len` that would grow a file fails with
    /// [`io::ErrorKind::StorageFull`] (ENOSPC) and changes nothing; overwrites, shrinks, syncs
    /// and namespace changes still work.
    NoSpace,
    /// The device fails: every write, `set_len`, `sync` and `sync_dir` fails with EIO. A failed
    /// `sync` drops the file's unsynced changes from what a power failure keeps while reads
    /// still see them, as Linux marks pages clean after a failed writeback ("fsyncgate"): a
    /// later successful sync does not make them durable.
    Io,
}

/// Running totals since the disk was created, for tests that count I/O (group commit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimDiskCounters {
    /// Calls to `write_at`.
    pub writes: u64,
    /// Bytes passed to `write_at`.
    pub bytes_written: u64,
    /// Successful calls to `sync`.
    pub syncs: u64,
    /// Successful calls to `sync_dir`.
    pub dir_syncs: u64,
    /// Calls to `crash`.
    pub crashes: u64,
}

#[derive(Debug)]
struct SimState {
    rng: SmallRng,
    directories: BTreeSet<PathBuf>,
    /// The namespace processes see now.
    names: BTreeMap<PathBuf, FileId>,
    /// The namespace as of the last `sync_dir` of each directory.
    durable_names: BTreeMap<PathBuf, FileId>,
    /// Namespace changes not yet made durable, oldest first.
    pending_names: Vec<NamespaceChange>,
    /// File contents by identity, so a rename moves a file and a reverted removal restores it.
    files: BTreeMap<FileId, SimFile>,
    next_file_id: FileId,
    /// How many of the next `sync`/`sync_dir` calls fail with an I/O error.
    failing_syncs: u32,
    /// The fault injected until cleared.
    fault: Option<DiskFault>,
    /// The range [`Disk::sync_latency`] draws from; zero unless set.
    sync_latency: (Duration, Duration),
    counters: SimDiskCounters,
    last_crash: CrashReport,
}

type FileId = u64;

#[derive(Debug, Default)]
struct SimFile {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Changes since the last sync, oldest first; replaying them all onto `durable` gives
    /// `current`, unless a sync failed since (which drops them here but not from `current`).
    unsynced: Vec<DataChange>,
}

#[derive(Debug)]
enum DataChange {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug)]
enum NamespaceChange {
    Create { path: PathBuf, file: FileId },
    Rename { from: PathBuf, to: PathBuf, file: FileId },
    Remove { path: PathBuf },
}

impl NamespaceChange {
    fn directory(&self) -> &Path {
        let path = match self {
            NamespaceChange::Create { path, .. } | NamespaceChange::Remove { path } => path,
            NamespaceChange::Rename { to, .. } => to,
        };
        path.parent().expect("files always have a parent directory")
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, FileId>) {
        match self {
            NamespaceChange::Create { path, file } => {
                names.insert(path.clone(), *file);
            }
            NamespaceChange::Rename { from, to, file } => {
                names.remove(from);
                names.insert(to.clone(), *file);
            }
            NamespaceChange::Remove { path } => {
                names.remove(path);
            }
        }
    }
}

impl SimDisk {
    /// An empty disk whose crash outcomes are drawn from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            state: Mutex::new(SimState {
                rng: SmallRng::seed_from_u64(seed),
                directories: BTreeSet::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                pending_names: Vec::new(),
                files: BTreeMap::new(),
                next_file_id: 0,
                failing_syncs: 0,
                fault: None,
                sync_latency: (Duration::ZERO, Duration::ZERO),
                counters: SimDiskCounters::default(),
                last_crash: CrashReport::default(),
            }),
            locks: Arc::default(),
        }
    }

    /// Releases every directory lock, as the kernel does when a process dies: the harness calls
    /// it when it kills the node using this disk (madsim drops a killed node's tasks, and with
    /// them its guards, only lazily).
    pub fn release_locks(&self) {
        self.locks.lock().unwrap_or_else(PoisonError::into_inner).held.clear();
    }

    /// A disk whose syncs take between `min` and `max` (drawn from the seeded RNG), leaving
    /// written data exposed to [`SimDisk::crash`] for that long.
    pub fn with_sync_latency(self, min: Duration, max: Duration) -> SimDisk {
        assert!(min <= max, "the sync latency range is empty");
        self.state().sync_latency = (min, max);
        self
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic inside a call is a bug in this module; the harness should see it, not a
        // half-updated disk.
        self.state.lock().expect("a SimDisk call panicked")
    }

    /// Simulates a power failure: unsynced data and namespace changes are kept, torn or lost
    /// as described in the module documentation. The node using the disk must be stopped
    /// first: its in-flight writes would otherwise land after the crash.
    pub fn crash(&self) -> CrashReport {
        self.state().crash()
    }

    /// What the last [`SimDisk::crash`] did.
    pub fn last_crash(&self) -> CrashReport {
        self.state().last_crash.clone()
    }

    /// Totals since creation.
    pub fn counters(&self) -> SimDiskCounters {
        self.state().counters.clone()
    }

    /// Bytes written to files but not yet synced, across all files.
    pub fn unsynced_bytes(&self) -> u64 {
        let state = self.state();
        let written = |change: &DataChange| match change {
            DataChange::Write { data, .. } => data.len() as u64,
            DataChange::SetLen(_) => 0,
        };
        state.files.values().flat_map(|file| &file.unsynced).map(written).sum()
    }

    /// Makes the next `count` calls to `sync` or `sync_dir` fail with an I/O error. A failed
    /// file sync drops the file's unsynced changes from what a power failure keeps while reads
    /// still see them, as [`DiskFault::Io`] does: a retried sync that succeeds proves nothing.
    pub fn fail_next_syncs(&self, count: u32) {
        self.state().failing_syncs = count;
    }

    /// Injects `fault` into every later call until cleared with `None`.
    pub fn set_fault(&self, fault: Option<DiskFault>) {
        self.state().fault = fault;
    }

    /// The fault being injected, if any.
    pub fn fault(&self) -> Option<DiskFault> {
        self.state().fault
    }

    /// Flips bits of the byte at `offset`, in both the current and the durable contents, as
    /// media corruption would. Fails if the byte is not in the current contents.
    pub fn corrupt_byte(&self, path: &Path, offset: u64) -> io::Result<()> {
        let mut state = self.state();
        let mask = state.rng.random_range(1..=u8::MAX);
        let file = state.file_mut(path)?;
        let at = usize::try_from(offset).map_err(io::Error::other)?;
        let Some(byte) = file.current.get_mut(at) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "offset past the end of the file"));
        };
        *byte ^= mask;
        if let Some(byte) = file.durable.get_mut(at) {
            *byte ^= mask;
        }
        Ok(())
    }
}

impl SimState {
    fn file_id(&self, path: &Path) -> io::Result<FileId> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn file_mut(&mut self, path: &Path) -> io::Result<&mut SimFile> {
        let id = self.file_id(path)?;
        Ok(self.files.get_mut(&id).expect("every name refers to a file"))
    }

    fn file(&self, path: &Path) -> io::Result<&SimFile> {
        let id = self.file_id(path)?;
        Ok(self.files.get(&id).expect("every name refers to a file"))
    }

    fn require_directory(&self, dir: &Path) -> io::Result<()> {
        if self.directories.contains(dir) { Ok(()) } else { Err(not_found(dir)) }
    }

    fn create(&mut self, path: &Path) -> io::Result<FileId> {
        self.require_directory(path.parent().unwrap_or(Path::new("")))?;
        let file = self.next_file_id;
        self.next_file_id += 1;
        self.files.insert(file, SimFile::default());
        self.names.insert(path.to_path_buf(), file);
        self.pending_names.push(NamespaceChange::Create { path: path.to_path_buf(), file });
        Ok(file)
    }

    /// Fails with the injected fault: EIO on any change, ENOSPC on one that grows `path` to
    /// `grown_to` bytes.
    fn check_fault(&self, path: &Path, grown_to: Option<u64>) -> io::Result<()> {
        match self.fault {
            Some(DiskFault::Io) => Err(io::Error::other(format!("{}: input/output error (injected)", path.display()))),
            Some(DiskFault::NoSpace) => {
                let current = self.file(path).map_or(0, |file| file.current.len() as u64);
                if grown_to.is_some_and(|len| len > current) {
                    let message = format!("{}: no space left on device (injected)", path.display());
                    return Err(io::Error::new(io::ErrorKind::StorageFull, message));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn take_failing_sync(&mut self, path: &Path) -> io::Result<()> {
        if self.failing_syncs == 0 {
            return Ok(());
        }
        self.failing_syncs -= 1;
        Err(io::Error::other(format!("injected sync failure on {}", path.display())))
    }

    fn crash(&mut self) -> CrashReport {
        let mut report = CrashReport::default();
        let pending = std::mem::take(&mut self.pending_names);
        let kept = self.rng.random_range(0..=pending.len());
        for change in &pending[..kept] {
            change.apply(&mut self.durable_names);
        }
        report.namespace_kept = kept as u64;
        report.namespace_reverted = (pending.len() - kept) as u64;
        self.names = self.durable_names.clone();
        let live: BTreeSet<FileId> = self.names.values().copied().collect();
        self.files.retain(|id, _| live.contains(id));
        for file in self.files.values_mut() {
            for change in std::mem::take(&mut file.unsynced) {
                replay_after_crash(&mut self.rng, &mut file.durable, change, &mut report);
            }
            file.current = file.durable.clone();
        }
        self.counters.crashes += 1;
        self.last_crash = report.clone();
        report
    }
}

/// What a write that did not fully land may leave where its lost part was: the file's size
/// grew but the data did not arrive, so the bytes read as zeros or as old garbage. Up to one
/// sector of it, never more than was lost.
fn tail_debris(rng: &mut SmallRng, lost: u64) -> Vec<u8> {
    let len = rng.random_range(1..=lost.min(SECTOR_BYTES)) as usize;
    if rng.random_bool(0.5) { vec![0; len] } else { (0..len).map(|_| rng.random::<u8>()).collect() }
}

/// Applies one unsynced change to the durable bytes as a power failure might: whole, torn at a
/// sector boundary, or not at all.
fn replay_after_crash(rng: &mut SmallRng, durable: &mut Vec<u8>, change: DataChange, report: &mut CrashReport) {
    match change {
        DataChange::SetLen(len) => {
            if rng.random_bool(0.5) {
                resize(durable, len);
                report.set_lens_kept += 1;
            } else {
                report.set_lens_lost += 1;
            }
        }
        DataChange::Write { offset, data } => {
            let end = offset + data.len() as u64;
            let sectors = end.div_ceil(SECTOR_BYTES) - offset / SECTOR_BYTES;
            let kept_len = match rng.random_range(0..3u8) {
                0 => data.len() as u64,
                1 => 0,
                _ if sectors < 2 => 0,
                _ => {
                    let sectors_kept = rng.random_range(1..sectors);
                    (offset / SECTOR_BYTES + sectors_kept) * SECTOR_BYTES - offset
                }
            };
            match kept_len {
                0 => report.writes_lost += 1,
                len if len == data.len() as u64 => report.writes_kept += 1,
                _ => report.writes_torn += 1,
            }
            report.bytes_lost += data.len() as u64 - kept_len;
            write(durable, offset, &data[..kept_len as usize]);
            if kept_len < data.len() as u64 && rng.random_bool(0.3) {
                write(durable, offset + kept_len, &tail_debris(rng, data.len() as u64 - kept_len));
                report.writes_debris += 1;
            }
        }
    }
}

fn resize(bytes: &mut Vec<u8>, len: u64) {
    bytes.resize(usize::try_from(len).expect("simulated files fit in memory"), 0);
}

fn write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let start = usize::try_from(offset).expect("simulated files fit in memory");
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", path.display()))
}

impl Disk for SimDisk {
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let state = self.state();
        let current = &state.file(path)?.current;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(current.len());
        let read = buf.len().min(current.len() - start);
        buf[..read].copy_from_slice(&current[start..start + read]);
        Ok(read)
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        state.check_fault(path, Some(offset + data.len() as u64))?;
        if !state.names.contains_key(path) {
            state.create(path)?;
        }
        state.counters.writes += 1;
        state.counters.bytes_written += data.len() as u64;
        let file = state.file_mut(path)?;
        write(&mut file.current, offset, data);
        file.unsynced.push(DataChange::Write { offset, data: data.to_vec() });
        Ok(())
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.state().file(path)?.current.len() as u64)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state();
        state.file_id(path)?;
        state.check_fault(path, Some(len))?;
        let file = state.file_mut(path)?;
        resize(&mut file.current, len);
        file.unsynced.push(DataChange::SetLen(len));
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.file_id(path)?;
        if let Err(error) = state.check_fault(path, None).and_then(|()| state.take_failing_sync(path)) {
            state.file_mut(path)?.unsynced.clear();
            return Err(error);
        }
        state.counters.syncs += 1;
        let file = state.file_mut(path)?;
        // Not `current`: changes dropped by a failed sync stay visible but never become durable.
        for change in std::mem::take(&mut file.unsynced) {
            match change {
                DataChange::Write { offset, data } => write(&mut file.durable, offset, &data),
                DataChange::SetLen(len) => resize(&mut file.durable, len),
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        let file = state.file_id(from)?;
        if from.parent() != to.parent() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "SimDisk renames only within a directory"));
        }
        let change = NamespaceChange::Rename { from: from.to_path_buf(), to: to.to_path_buf(), file };
        change.apply(&mut state.names);
        state.pending_names.push(change);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.file_id(path)?;
        let change = NamespaceChange::Remove { path: path.to_path_buf() };
        change.apply(&mut state.names);
        state.pending_names.push(change);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.require_directory(dir)?;
        state.check_fault(dir, None)?;
        state.take_failing_sync(dir)?;
        state.counters.dir_syncs += 1;
        let SimState { pending_names, durable_names, .. } = &mut *state;
        pending_names.retain(|change| {
            let in_dir = change.directory() == dir;
            if in_dir {
                change.apply(durable_names);
            }
            !in_dir
        });
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        state.require_directory(dir)?;
        let children = state.names.keys().chain(state.directories.iter());
        let mut names: Vec<String> = children
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        for ancestor in dir.ancestors() {
            if state.names.contains_key(ancestor) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a file is in the way"));
            }
            state.directories.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn sync_latency(&self) -> Duration {
        let mut state = self.state();
        let (min, max) = state.sync_latency;
        if max.is_zero() {
            return Duration::ZERO;
        }
        let span = u64::try_from((max - min).as_micros()).unwrap_or(u64::MAX);
        min + Duration::from_micros(state.rng.random_range(0..=span))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = self.state();
        Ok(state.names.contains_key(path) || state.directories.contains(path))
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        self.state().require_directory(dir)?;
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(holder) = locks.held.get(dir) {
            let message = format!("held by another process on this simulated disk (lock {holder})");
            return Err(io::Error::new(io::ErrorKind::WouldBlock, message));
        }
        let lock = locks.next;
        locks.next += 1;
        locks.held.insert(dir.to_path_buf(), lock);
        Ok(DirLock::new(SimLockGuard { locks: self.locks.clone(), dir: dir.to_path_buf(), lock }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a simulated directory lock excludes a second holder until its guard is dropped or
    // the harness releases it (the holder was killed), and a stale guard dropped after a
    // release does not free the next holder's lock.
    #[test]
    fn a_simulated_lock_excludes_until_released_and_a_stale_guard_frees_nothing() {
        let disk = SimDisk::new(1);
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        let first = disk.lock_dir(dir).unwrap();
        assert_eq!(disk.lock_dir(dir).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        disk.release_locks();
        let second = disk.lock_dir(dir).unwrap();
        drop(first);
        assert_eq!(disk.lock_dir(dir).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(second);
        disk.lock_dir(dir).unwrap();
    }

    fn disk_with_dir(seed: u64) -> (SimDisk, PathBuf) {
        let disk = SimDisk::new(seed);
        let dir = PathBuf::from("/data");
        disk.create_dir_all(&dir).unwrap();
        (disk, dir)
    }

    /// Writes `file` with `len` bytes of `fill`, syncing data and name.
    fn write_durably(disk: &SimDisk, dir: &Path, name: &str, fill: u8, len: usize) -> PathBuf {
        let path = dir.join(name);
        disk.write_at(&path, 0, &vec![fill; len]).unwrap();
        disk.sync(&path).unwrap();
        disk.sync_dir(dir).unwrap();
        path
    }

    // Goal: synced data always survives a crash and unsynced writes do not always survive.
    // Method: over many seeds, sync one write, add an unsynced one, crash; the synced bytes must
    // be intact, and across seeds the unsynced write must be both kept and lost at least once.
    #[test]
    fn crash_keeps_synced_writes_and_loses_some_unsynced_ones() {
        let (mut kept, mut lost) = (0, 0);
        for seed in 0..64 {
            let (disk, dir) = disk_with_dir(seed);
            let path = write_durably(&disk, &dir, "f", 1, 100);
            disk.write_at(&path, 100, &[2; 100]).unwrap();
            assert_eq!(disk.unsynced_bytes(), 100);
            let report = disk.crash();
            let bytes = disk.read_all(&path).unwrap();
            assert_eq!(bytes[..100], [1; 100]);
            match bytes.len() {
                200 if report.writes_kept == 1 => kept += 1,
                100 => lost += 1,
                101..=200 if report.writes_debris == 1 => lost += 1,
                len => panic!("a one-sector write came back with length {len}"),
            }
            if report.writes_debris == 0 {
                assert_eq!(report.bytes_lost, 200 - bytes.len() as u64);
            }
            assert_eq!(disk.unsynced_bytes(), 0);
        }
        assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
    }

    // Goal: a large unsynced write is torn only at sector boundaries, keeping a prefix, maybe
    // followed by up to a sector of debris. Method: over many seeds, write 8 sectors unsynced at
    // offset 0 and crash; without debris the surviving length must be a multiple of the sector
    // size and the survivors the written bytes; with debris, the whole sectors before it must be.
    #[test]
    fn crash_tears_large_writes_at_sector_boundaries() {
        let (mut torn, mut debris) = (0, 0);
        for seed in 0..64 {
            let (disk, dir) = disk_with_dir(seed);
            let path = write_durably(&disk, &dir, "f", 0, 0);
            let data: Vec<u8> = (0..8 * SECTOR_BYTES).map(|i| (i % 251) as u8).collect();
            disk.write_at(&path, 0, &data).unwrap();
            let report = disk.crash();
            let bytes = disk.read_all(&path).unwrap();
            if report.writes_debris == 1 {
                debris += 1;
                let sectors = (bytes.len() - 1) / SECTOR_BYTES as usize * SECTOR_BYTES as usize;
                assert_eq!(bytes[..sectors], data[..sectors]);
                continue;
            }
            assert_eq!(bytes.len() as u64 % SECTOR_BYTES, 0);
            assert_eq!(bytes[..], data[..bytes.len()]);
            if report.writes_torn == 1 {
                torn += 1;
                assert!(!bytes.is_empty() && bytes.len() < data.len());
            }
        }
        assert!(torn > 0 && debris > 0, "torn {torn}, with debris {debris} in 64 seeds");
    }

    // Goal: namespace changes revert unless their directory was synced. Method: create a file
    // (data synced, directory not) and rename a durable one, crash, and check that across seeds
    // both outcomes happen and only as a prefix: the rename (second) never survives alone.
    #[test]
    fn crash_reverts_unsynced_creates_and_renames_in_order() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..64 {
            let (disk, dir) = disk_with_dir(seed);
            let old = write_durably(&disk, &dir, "old", 1, 10);
            let created = dir.join("created");
            disk.write_at(&created, 0, b"x").unwrap();
            disk.sync(&created).unwrap();
            disk.rename(&old, &dir.join("new")).unwrap();
            disk.crash();
            let names = disk.list(&dir).unwrap();
            assert!(names != ["created", "old"] || disk.read_all(&created).unwrap() == b"x");
            outcomes.insert(names);
        }
        let expected: BTreeSet<Vec<String>> = [vec!["old"], vec!["created", "old"], vec!["created", "new"]]
            .into_iter()
            .map(|names| names.into_iter().map(String::from).collect())
            .collect();
        assert_eq!(outcomes, expected);
    }

    // Goal: a synced directory keeps its changes. Method: remove a durable file, sync the
    // directory, crash; the file must stay gone, and an unsynced removal elsewhere may revert.
    #[test]
    fn sync_dir_makes_removal_durable() {
        for seed in 0..16 {
            let (disk, dir) = disk_with_dir(seed);
            let path = write_durably(&disk, &dir, "f", 1, 10);
            disk.remove(&path).unwrap();
            disk.sync_dir(&dir).unwrap();
            disk.crash();
            assert!(!disk.exists(&path).unwrap());
        }
    }

    // Goal: one seed, one outcome. Method: run the same unsynced history twice per seed and
    // compare the crash reports and surviving bytes.
    #[test]
    fn crash_outcome_is_deterministic_for_a_seed() {
        let run = |seed| {
            let (disk, dir) = disk_with_dir(seed);
            let path = write_durably(&disk, &dir, "f", 1, 3000);
            for round in 0..10u8 {
                disk.write_at(&path, u64::from(round) * 700, &[round; 900]).unwrap();
            }
            disk.set_len(&path, 5000).unwrap();
            disk.write_at(&dir.join("g"), 0, &[9; 2000]).unwrap();
            (disk.crash(), disk.read_all(&path).unwrap(), disk.list(&dir).unwrap())
        };
        for seed in 0..16 {
            assert_eq!(run(seed), run(seed));
        }
    }

    // Goal: injected faults behave as documented. Method: fail one sync: reads still see the
    // data but a later successful sync does not make it durable (a crash loses it); corrupt a
    // byte and check both current and durable contents change.
    #[test]
    fn injected_sync_failure_and_corruption() {
        let (disk, dir) = disk_with_dir(7);
        let path = write_durably(&disk, &dir, "f", 1, 10);
        disk.write_at(&path, 10, &[2; 10]).unwrap();
        disk.fail_next_syncs(1);
        assert!(disk.sync(&path).is_err());
        assert_eq!(disk.unsynced_bytes(), 0);
        assert_eq!(disk.read_all(&path).unwrap().len(), 20, "reads still see the write");
        disk.sync(&path).unwrap();
        disk.crash();
        assert_eq!(disk.read_all(&path).unwrap(), [1; 10], "the failed sync's data was never durable");
        disk.corrupt_byte(&path, 3).unwrap();
        assert_ne!(disk.read_all(&path).unwrap()[3], 1);
        disk.crash();
        assert_ne!(disk.read_all(&path).unwrap()[3], 1);
        assert!(disk.corrupt_byte(&path, 20).is_err());
    }

    // Goal: the injected disk-full and EIO faults behave as documented. Method: under NoSpace,
    // growing a file fails with StorageFull while an overwrite works; under Io, a write fails and
    // a sync fails and drops the unsynced overwrite; cleared, everything works again.
    #[test]
    fn injected_disk_full_and_io_faults() {
        let (disk, dir) = disk_with_dir(9);
        let path = write_durably(&disk, &dir, "f", 1, 10);
        disk.set_fault(Some(DiskFault::NoSpace));
        assert_eq!(disk.write_at(&path, 10, &[2]).unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(disk.set_len(&path, 11).unwrap_err().kind(), io::ErrorKind::StorageFull);
        disk.write_at(&path, 0, &[3]).unwrap();
        disk.sync(&path).unwrap();
        disk.set_fault(Some(DiskFault::Io));
        assert!(disk.write_at(&path, 0, &[4]).is_err());
        disk.set_fault(None);
        disk.write_at(&path, 1, &[5]).unwrap();
        disk.set_fault(Some(DiskFault::Io));
        assert!(disk.sync(&path).is_err());
        assert!(disk.sync_dir(&dir).is_err());
        disk.set_fault(None);
        disk.sync(&path).unwrap();
        disk.crash();
        assert_eq!(disk.read_all(&path).unwrap()[..2], [3, 1], "the overwrite whose sync failed is lost");
    }
}
