//! Storage faults against real `cairn serve` processes: a damaged or shortened WAL is refused
//! at start (naming the file and byte, and how to recover), never silently shortened; a full
//! disk refuses writes with 507 and the node resumes by itself once space is freed.

#![cfg(not(madsim))]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{ClientError, Route};
use cairn_node::api::Consistency;
use support::{Process, client, eventually};

/// Writes `count` keys through a single node and stops it cleanly; returns the node.
async fn cleanly_stopped_node(root: &Path, count: usize) -> Process {
    let mut node = Process::start(root, 1, &[]);
    let cluster = client(vec![node.http.clone()]);
    for index in 0..count {
        cluster.put(Route::Any, &format!("key-{index}"), Bytes::from("value"), None).await.expect("a write");
    }
    node.stop();
    node
}

/// The newest WAL segment of a node.
fn last_segment(node: &Process) -> PathBuf {
    let dir = node.data.join("raft");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the WAL directory exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

/// Offsets of the records in a segment (after its 24-byte header): `[len u32][crc u32][kind u8]`.
fn record_offsets(bytes: &[u8]) -> Vec<(usize, u8)> {
    let mut offsets = Vec::new();
    let mut offset = 24;
    while offset + 9 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        offsets.push((offset, bytes[offset + 8]));
        offset += 9 + len;
    }
    offsets
}

/// Restarts the node and expects it to refuse to start, saying where and what to do.
fn assert_refused(node: &mut Process, path: &Path) {
    node.restart();
    let status = node.wait_for_exit(Duration::from_secs(20)).expect("the node refuses to start");
    assert!(!status.success());
    let log = node.log();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    assert!(log.contains(&name) && log.contains("corrupt at byte"), "the file and byte are named:\n{log}");
    assert!(log.contains("wipe its data directory"), "recovery is explained:\n{log}");
}

// Goal: a flipped bit in the last entry, with a valid record after it, is refused, not
// silently dropped (the acknowledged entry would be lost). Method: write, stop cleanly, flip a
// byte inside the last entry record, restart.
#[tokio::test]
async fn a_damaged_last_entry_refuses_to_start() {
    let root = tempfile::tempdir().unwrap();
    let mut node = cleanly_stopped_node(root.path(), 5).await;
    let path = last_segment(&node);
    let mut bytes = std::fs::read(&path).unwrap();
    let (last_entry, _) = *record_offsets(&bytes).iter().rev().find(|(_, kind)| *kind == 1).expect("an entry");
    bytes[last_entry + 20] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(&mut node, &path);
}

// Goal: 60 bytes cut off a cleanly closed WAL are refused, not a silently shorter log that
// reuses the lost entry's index. Method: write, stop cleanly, truncate, restart.
#[tokio::test]
async fn bytes_cut_off_a_cleanly_closed_wal_refuse_to_start() {
    let root = tempfile::tempdir().unwrap();
    let mut node = cleanly_stopped_node(root.path(), 5).await;
    let path = last_segment(&node);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 60).unwrap();
    assert_refused(&mut node, &path);
}

/// A small tmpfs mounted for the test, unmounted on drop; `None` (with the reason printed)
/// when this process may not mount.
struct SmallDisk {
    dir: PathBuf,
    _root: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let root = tempfile::tempdir().ok()?;
        let dir = root.path().join("disk");
        std::fs::create_dir(&dir).ok()?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(SmallDisk { dir, _root: root }),
            Ok(output) => {
                eprintln!("skipped: cannot mount a tmpfs: {}", String::from_utf8_lossy(&output.stderr).trim());
                None
            }
            Err(error) => {
                eprintln!("skipped: cannot run mount: {error}");
                None
            }
        }
    }

    /// Fills the disk with a file until ENOSPC.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xAB; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&chunk[..512]).is_ok() {}
        while file.write_all(&[1]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

// Goal: a full disk refuses writes with 507 insufficient_storage (never acknowledging one),
// keeps serving reads, and the node writes again by itself once space is freed, with nothing
// acknowledged lost (the finding: it never served again until restarted). Method: a node on a
// small tmpfs; fill it; write until refused with 507; free the space; write again; read back
// every acknowledged key. Skipped when tmpfs cannot be mounted (not root).
#[tokio::test]
async fn a_full_disk_refuses_writes_then_resumes_by_itself() {
    let Some(disk) = SmallDisk::mount(48) else { return };
    let node = Process::start(&disk.dir, 1, &[]);
    let cluster = client(vec![node.http.clone()]);
    let mut acknowledged = Vec::new();
    for index in 0..5 {
        let key = format!("before-{index}");
        cluster.put(Route::Any, &key, Bytes::from("value"), None).await.expect("a write before the disk fills");
        acknowledged.push(key);
    }
    let filler = disk.fill();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        assert!(std::time::Instant::now() < deadline, "no write was refused with 507:\n{}", node.log());
        let key = format!("full-{}", acknowledged.len());
        match cluster.put(Route::Any, &key, Bytes::from("value"), None).await {
            Ok(_) => acknowledged.push(key),
            Err(ClientError::Rejected { status: 507, code, .. }) => break code,
            Err(_) => {}
        }
    };
    assert_eq!(refused, "insufficient_storage");
    let read = cluster.get(Route::Any, "before-0", Consistency::Linearizable).await;
    assert!(read.is_ok_and(|answer| answer.value.is_some()), "reads are served while the disk is full");
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(30), "writes resume by themselves", || async {
        cluster.put(Route::Any, "after", Bytes::from("value"), None).await.ok()
    })
    .await;
    for key in &acknowledged {
        let read = cluster.get(Route::Any, key, Consistency::Linearizable).await.expect("a read");
        assert!(read.value.is_some(), "acknowledged key {key} survives:\n{}", node.log());
    }
}
