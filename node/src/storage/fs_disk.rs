//! [`Disk`] on the real filesystem: positional I/O on cached file handles, `fdatasync` for
//! [`Disk::sync`] and an fsync of the directory for [`Disk::sync_dir`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Disk;

/// How many open files [`FsDisk`] keeps before it drops them all and starts over. cairn keeps a
/// handful of segments, a meta file and a few snapshots open, far below this.
const HANDLES_MAX: usize = 256;

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
}
