//! [`Disk`] on the real filesystem: positional I/O on cached file handles, `fdatasync` for
//! [`Disk::sync`] and an fsync of the directory for [`Disk::sync_dir`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{DirLock, Disk};

/// How many open files [`FsDisk`] keeps before it drops them all and starts over. cairn keeps a
/// handful of segments, a meta file and a few snapshots open, far below this.
const HANDLES_MAX: usize = 256;

/// The file in a locked directory that carries the lock (an advisory `flock`) and the pid of
/// the process that last took it.
pub const LOCK_FILE: &str = "LOCK";

/// How much of a lock file is read for its holder's pid; anything longer is not one.
const LOCK_FILE_READ_MAX: u64 = 32;

/// The production [`Disk`].
///
/// It never retries a failed `fsync`: after a failure Linux may have dropped the dirty pages and
/// marked them clean, so a retry would report success for lost data. The error goes to the
/// caller, which must stop trusting the file.
#[derive(Debug, Default)]
pub struct FsDisk {
    /// Open handles by path, so each I/O call does not pay for an `open`. A std `Mutex` is
    /// right here: the critical section is a map lookup or insert, never I/O and never an
    /// `.await`, and the handle is an `Arc` used after the lock is released. Lookups only: the
    /// map's iteration order never reaches behaviour.
    handles: Mutex<HashMap<PathBuf, Arc<File>>>,
}

impl FsDisk {
    /// A disk with no open handles.
    pub fn new() -> FsDisk {
        FsDisk::default()
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<PathBuf, Arc<File>>> {
        // A panic while holding the lock cannot leave the map inconsistent: every critical
        // section is a single map operation.
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached handle for `path`, opening it (creating the file if `create`) on a miss.
    fn handle(&self, path: &Path, create: bool) -> io::Result<Arc<File>> {
        if let Some(file) = self.handles().get(path) {
            return Ok(file.clone());
        }
        let file = Arc::new(OpenOptions::new().read(true).write(true).create(create).open(path)?);
        let mut handles = self.handles();
        if handles.len() >= HANDLES_MAX {
            // Dropping a handle loses nothing: unsynced data lives in the page cache, and a
            // later fdatasync through any handle of the file flushes it.
            handles.clear();
        }
        Ok(handles.entry(path.to_path_buf()).or_insert(file).clone())
    }

    fn forget(&self, path: &Path) {
        self.handles().remove(path);
    }
}

impl Disk for FsDisk {
    fn read_replaceable(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let file = self.handle(path, false)?;
        let mut read = 0;
        while read < buf.len() {
            match file.read_at(&mut buf[read..], offset + read as u64) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(read)
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.handle(path, true)?.write_all_at(data, offset)
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.handle(path, false)?.metadata()?.len())
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.handle(path, false)?.set_len(len)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.handle(path, false)?.sync_data()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)?;
        self.forget(from);
        self.forget(to);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)?;
        self.forget(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.into_string().map_err(|name| {
                io::Error::new(io::ErrorKind::InvalidData, format!("file name is not UTF-8: {name:?}"))
            })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    /// An exclusive `flock` on `dir/LOCK`: the kernel releases it when the file is closed, so
    /// on any exit of the process, a crash or SIGKILL included. It is advisory: it keeps out
    /// other cairn processes, which is what it is for. The pid written after locking is only a
    /// hint for the error message of the process that is refused.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder =
                    lock_holder(&file).map_or_else(|| "another process".to_string(), |pid| format!("process {pid}"));
                return Err(io::Error::new(io::ErrorKind::WouldBlock, format!("held by {holder}")));
            }
            Err(TryLockError::Error(error)) => return Err(error),
        }
        file.set_len(0)?;
        file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;
        Ok(DirLock::new(file))
    }
}

/// The pid a lock file names, if it names one: the file is read bounded and trusted for nothing
/// but digits.
fn lock_holder(file: &File) -> Option<u32> {
    let mut text = String::new();
    file.take(LOCK_FILE_READ_MAX).read_to_string(&mut text).ok()?;
    let text = text.trim_end_matches('\n');
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the positional I/O contract the WAL relies on. Method: write past the end, read
    // back across the gap and past the end, shrink, rename and remove in a temporary directory.
    #[test]
    fn fs_disk_reads_writes_and_renames_positionally() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        let path = dir.path().join("a");
        disk.write_at(&path, 4, b"data").unwrap();
        assert_eq!(disk.read_all(&path).unwrap(), b"\0\0\0\0data");
        let mut buf = [0; 6];
        assert_eq!(disk.read_at(&path, 4, &mut buf).unwrap(), 4);
        disk.set_len(&path, 6).unwrap();
        disk.sync(&path).unwrap();
        assert_eq!(disk.len(&path).unwrap(), 6);
        let renamed = dir.path().join("b");
        disk.rename(&path, &renamed).unwrap();
        disk.sync_dir(dir.path()).unwrap();
        assert_eq!(disk.list(dir.path()).unwrap(), vec!["b".to_string()]);
        assert_eq!(disk.read_all(&renamed).unwrap(), b"\0\0\0\0da");
        assert_eq!(disk.read_at(&path, 0, &mut buf).unwrap_err().kind(), io::ErrorKind::NotFound);
        disk.remove(&renamed).unwrap();
        assert!(!disk.exists(&renamed).unwrap());
    }

    // Goal: a locked directory refuses a second holder, names the first one's pid, and is free
    // again once the first guard is dropped. flock locks belong to the open file, so two
    // `FsDisk`s in one process exclude each other as two processes do.
    #[test]
    fn a_locked_directory_refuses_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = FsDisk::new().lock_dir(dir.path()).unwrap();
        let refused = FsDisk::new().lock_dir(dir.path()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(refused.to_string(), format!("held by process {}", std::process::id()));
        drop(first);
        FsDisk::new().lock_dir(dir.path()).unwrap();
    }
}
