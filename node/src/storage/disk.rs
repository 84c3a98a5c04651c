//! The disk seam: every byte cairn persists goes through [`Disk`], so the same storage code runs
//! on the real filesystem ([`FsDisk`](super::FsDisk)) and on a simulated disk that can lose
//! unsynced writes on power failure ([`SimDisk`](super::SimDisk)).

use std::any::Any;
use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

/// An exclusive hold on a directory from [`Disk::lock_dir`], released when dropped.
pub struct DirLock {
    /// Whatever keeps the lock held: an open, locked file, or a simulated lock's release.
    _held: Box<dyn Any + Send + Sync>,
}

impl DirLock {
    /// A lock that stays held while `held` lives.
    pub fn new(held: impl Any + Send + Sync) -> DirLock {
        DirLock { _held: Box::new(held) }
    }
}

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirLock")
    }
}

/// A synchronous, path-based disk, shared as `Arc<dyn Disk>`.
///
/// Calls block: async code must run them through [`crate::rt::run_blocking`]. The durability
/// model is POSIX's, made explicit: a write is visible to later reads at once but survives a
/// power failure only after [`Disk::sync`] of that file, and a file's *name* (its creation,
/// rename or removal) survives only after [`Disk::sync_dir`] of its parent directory. A process
/// crash without power loss keeps everything written.
pub trait Disk: Send + Sync + 'static {
    /// Reads into `buf` from `offset`, returning how many bytes were read.
    ///
    /// ### To ensure correctness
    /// - Returns fewer than `buf.len()` bytes only when the file ends first (0 at or past the
    ///   end); the implementation retries short reads itself.
    /// - Sees every completed write, synced or not.
    /// - Fails with [`io::ErrorKind::NotFound`] if the file does not exist.
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Reads a whole file.
    ///
    /// ### To ensure correctness
    /// - Meant for files that fit in memory (segments, meta); the result has exactly the file's
    ///   current length.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len(path)?).map_err(io::Error::other)?;
        let mut bytes = vec![0; len];
        let read = self.read_at(path, 0, &mut bytes)?;
        bytes.truncate(read);
        Ok(bytes)
    }

    /// Reads a whole file that others replace while the node runs (certificates renewed by
    /// renaming a new file over the old one): through the name as it is now, never through a
    /// handle opened earlier.
    fn read_replaceable(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read_all(path)
    }

    /// Writes all of `data` at `offset`, creating the file if it does not exist and extending it
    /// (with zeros over any gap) if `offset` is past its end.
    ///
    /// ### To ensure correctness
    /// - Nothing is durable on return: the data needs [`Disk::sync`], and a newly created file's
    ///   name needs [`Disk::sync_dir`] of its parent.
    /// - After a power failure an unsynced write may be absent, present, or torn at a sector
    ///   boundary (a prefix of its sectors present); callers detect this with checksums.
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;

    /// The file's current length in bytes, synced or not.
    ///
    /// ### To ensure correctness
    /// - Fails with [`io::ErrorKind::NotFound`] if the file does not exist.
    fn len(&self, path: &Path) -> io::Result<u64>;

    /// Truncates or extends (with zeros) an existing file to `len` bytes.
    ///
    /// ### To ensure correctness
    /// - Not durable until [`Disk::sync`] of the file; before that a power failure may undo it.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;

    /// Makes the file's data and length durable (fdatasync).
    ///
    /// ### To ensure correctness
    /// - On success every earlier write and `set_len` of this file survives a power failure.
    ///   The file's name does not: that needs [`Disk::sync_dir`].
    /// - On failure the state of unsynced data is unknown, and a retry may falsely succeed
    ///   (Linux marks the failed pages clean: "fsyncgate"). Callers must treat a failed sync as
    ///   fatal for the file and never retry it.
    fn sync(&self, path: &Path) -> io::Result<()>;

    /// Renames `from` to `to`, atomically replacing `to` if it exists. Both must be in the same
    /// directory.
    ///
    /// ### To ensure correctness
    /// - Durable only after [`Disk::sync_dir`] of the directory; before that a power failure
    ///   may undo it, leaving the file under its old name.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file.
    ///
    /// ### To ensure correctness
    /// - Durable only after [`Disk::sync_dir`] of its parent; before that a power failure may
    ///   bring the file back with its last synced contents.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Makes the directory's entries durable (fsync of the directory).
    ///
    /// ### To ensure correctness
    /// - On success every earlier creation, rename and removal of a file in `dir` survives a
    ///   power failure. It does not sync the files' data.
    /// - As with [`Disk::sync`], a failure must not be retried.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// The names of the entries in `dir`, sorted.
    ///
    /// ### To ensure correctness
    /// - Lists the current namespace, durable or not.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Creates `dir` and its missing ancestors.
    ///
    /// ### To ensure correctness
    /// - A new directory's own entry is durable only after [`Disk::sync_dir`] of its parent.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Whether a file or directory exists at `path` right now.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Takes the exclusive lock on `dir` (which must exist) for as long as the returned guard
    /// lives, so that two processes never write one data directory.
    ///
    /// ### To ensure correctness
    /// - Fails with [`io::ErrorKind::WouldBlock`] while another holder has it, with a message
    ///   naming that holder where it is known; the directory is not changed then.
    /// - The lock dies with its holder however it ends: dropping the guard, a crash, a kill (the
    ///   kernel releases a real one; the harness releases a simulated one, see
    ///   [`SimDisk::release_locks`](super::SimDisk::release_locks)). No cleanup is ever needed.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;

    /// How long the next [`Disk::sync`] takes on a simulated disk. The WAL waits this long
    /// between writing a batch and syncing it, so that a simulated crash can fall between the
    /// two, as a power cut can on a real disk. Real disks take their own time: zero.
    fn sync_latency(&self) -> Duration {
        Duration::ZERO
    }
}
