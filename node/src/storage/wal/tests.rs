//! WAL behaviour on both disks: appends, reads, truncation, purge, meta and committed markers,
//! and recovery from torn, garbled and corrupted files.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::format::SEGMENT_HEADER_BYTES;
use super::meta::{META_FILE_NAME, META_SLOT_BYTES};
use super::{Recovered, Wal, WalError, WalOptions};
use crate::storage::{Disk, DiskFault, FsDisk, SimDisk};

/// A disk and a WAL directory on it; the temporary directory is removed on drop.
struct Fixture {
    name: &'static str,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// The same test on the simulated disk and on the real filesystem.
fn fixtures() -> Vec<Fixture> {
    let temp = tempfile::tempdir().expect("a temporary directory");
    vec![
        Fixture { name: "SimDisk", disk: Arc::new(SimDisk::new(1)), dir: PathBuf::from("/node/wal"), _temp: None },
        Fixture { name: "FsDisk", disk: Arc::new(FsDisk::new()), dir: temp.path().join("wal"), _temp: Some(temp) },
    ]
}

/// Segments small enough that a few dozen entries span several, and a cache that holds
/// almost nothing, so reads exercise the disk path. The log end is saved only at shutdown
/// (unless a test asks for more), so a test decides what counts as known synced.
fn small_options() -> WalOptions {
    WalOptions {
        segment_bytes_max: 512,
        cache_bytes_max: 256,
        log_end_save_interval: Duration::from_secs(3600),
        ..WalOptions::default()
    }
}

fn payload(index: u64, generation: u32) -> Bytes {
    Bytes::from(format!("entry {index} generation {generation} {}", "x".repeat((index % 7) as usize * 10)))
}

impl Fixture {
    async fn open(&self) -> Result<(Wal, Recovered), WalError> {
        Wal::open(self.disk.clone(), self.dir.clone(), small_options()).await
    }

    fn segments(&self) -> Vec<PathBuf> {
        let names = self.disk.list(&self.dir).unwrap();
        names.into_iter().filter(|name| name.ends_with(".wal")).map(|name| self.dir.join(name)).collect()
    }
}

/// Appends `indices` (generation `generation`) in batches of four, waiting until each is
/// durable: one batch never spans segments, so this is what makes segments roll.
async fn append_durably(wal: &Wal, indices: std::ops::Range<u64>, generation: u32) -> io::Result<()> {
    let indices: Vec<u64> = indices.collect();
    for chunk in indices.chunks(4) {
        let entries = chunk.iter().map(|&index| (index, payload(index, generation))).collect();
        let (done, durable) = oneshot::channel();
        wal.append(entries, Box::new(move |result| done.send(result).unwrap())).await?;
        durable.await.unwrap()?;
    }
    Ok(())
}

async fn assert_log(wal: &Wal, indices: std::ops::Range<u64>, generation_of: impl Fn(u64) -> u32) {
    let entries = wal.read(0..u64::MAX).await.unwrap();
    let expected: Vec<_> = indices.map(|index| (index, payload(index, generation_of(index)))).collect();
    assert_eq!(entries, expected);
}

// Goal: the basic contract. Method: append across several segments, read back from cache and
// disk, shut down, reopen, and read everything back identically.
#[tokio::test]
async fn appended_entries_are_readable_at_once_and_after_reopen() {
    for fixture in fixtures() {
        let (wal, recovered) = fixture.open().await.unwrap();
        assert_eq!((recovered.first_index, recovered.last_index, recovered.meta), (None, None, None));
        let (done, durable) = oneshot::channel();
        let entries = (0..30).map(|index| (index, payload(index, 0))).collect();
        wal.append(entries, Box::new(move |result| done.send(result).unwrap())).await.unwrap();
        assert_eq!(wal.read(10..12).await.unwrap(), vec![(10, payload(10, 0)), (11, payload(11, 0))]);
        durable.await.unwrap().unwrap();
        append_durably(&wal, 30..40, 0).await.unwrap();
        assert_log(&wal, 0..40, |_| 0).await;
        assert!(fixture.segments().len() > 2, "{}: segments did not roll", fixture.name);
        wal.shutdown().await.unwrap();
        assert!(wal.read(0..1).await.is_err(), "a shut-down WAL refuses reads");
        let (wal, recovered) = fixture.open().await.unwrap();
        assert_eq!((recovered.first_index, recovered.last_index), (Some(0), Some(39)), "{}", fixture.name);
        assert_eq!(recovered.truncated_tail, None);
        assert_log(&wal, 0..40, |_| 0).await;
        append_durably(&wal, 40..41, 0).await.unwrap();
    }
}

// Goal: group commit. Method: enqueue 100 appends without yielding to the writer; they must
// be written with far fewer syncs than appends (one per batch, plus a segment header's).
#[tokio::test]
async fn queued_appends_share_one_fdatasync() {
    let disk = Arc::new(SimDisk::new(3));
    let (wal, _) = Wal::open(disk.clone(), "/wal", WalOptions::default()).await.unwrap();
    let before = disk.counters().syncs;
    let mut durable = Vec::new();
    for index in 0..100 {
        let (done, acked) = oneshot::channel();
        wal.append(vec![(index, payload(index, 0))], Box::new(move |result| done.send(result).unwrap())).await.unwrap();
        durable.push(acked);
    }
    for acked in durable {
        acked.await.unwrap().unwrap();
    }
    let syncs = disk.counters().syncs - before;
    assert!(syncs <= 10, "{syncs} syncs for 100 appends");
}

// Goal: truncation removes the tail at once and durably, and the log continues after it.
// Method: append, truncate in the middle of a segment (deleting later segments), append a new
// generation, read, reopen and read again.
#[tokio::test]
async fn truncate_after_replaces_the_tail() {
    for fixture in fixtures() {
        let (wal, _) = fixture.open().await.unwrap();
        append_durably(&wal, 0..40, 0).await.unwrap();
        wal.truncate_after(Some(12)).await.unwrap();
        assert_eq!(wal.last_index(), Some(12));
        assert_log(&wal, 0..13, |_| 0).await;
        append_durably(&wal, 13..20, 1).await.unwrap();
        let generation = |index| if index < 13 { 0 } else { 1 };
        assert_log(&wal, 0..20, generation).await;
        wal.shutdown().await.unwrap();
        let (wal, recovered) = fixture.open().await.unwrap();
        assert_eq!(recovered.last_index, Some(19), "{}", fixture.name);
        assert_log(&wal, 0..20, generation).await;
        wal.truncate_after(None).await.unwrap();
        assert_eq!(wal.next_index(), 0);
        append_durably(&wal, 0..3, 2).await.unwrap();
        wal.shutdown().await.unwrap();
        let (wal, _) = fixture.open().await.unwrap();
        assert_log(&wal, 0..3, |_| 2).await;
    }
}

// Goal: purge hides entries at once and deletes whole segments only; purging past the end
// moves the log forward. Method: purge in the middle, count segments, reopen, purge past the
// end, append there, reopen.
#[tokio::test]
async fn purge_deletes_whole_segments_and_can_skip_ahead() {
    for fixture in fixtures() {
        let (wal, _) = fixture.open().await.unwrap();
        append_durably(&wal, 0..40, 0).await.unwrap();
        let segments_before = fixture.segments().len();
        wal.purge(25).await.unwrap();
        assert_eq!(wal.first_index(), Some(26));
        assert_log(&wal, 26..40, |_| 0).await;
        wal.flush_committed().await.unwrap();
        assert!(fixture.segments().len() < segments_before, "{}: nothing deleted", fixture.name);
        wal.shutdown().await.unwrap();
        let (wal, recovered) = fixture.open().await.unwrap();
        assert!(recovered.first_index.unwrap() <= 26);
        wal.purge(25).await.unwrap();
        assert_log(&wal, 26..40, |_| 0).await;
        wal.purge(99).await.unwrap();
        assert_eq!((wal.first_index(), wal.next_index()), (None, 100));
        append_durably(&wal, 100..103, 1).await.unwrap();
        wal.shutdown().await.unwrap();
        let (wal, recovered) = fixture.open().await.unwrap();
        assert_eq!((recovered.first_index, recovered.last_index), (Some(100), Some(102)));
        assert_log(&wal, 100..103, |_| 1).await;
    }
}

// Goal: a committed marker flushed once is recovered even after the log bytes holding it are
// truncated or purged away. Method: flush a marker after the last entry, truncate below it,
// reopen; then flush one into an old segment and purge that segment, reopen.
#[tokio::test]
async fn committed_marker_survives_truncation_and_purge() {
    for fixture in fixtures() {
        let (wal, _) = fixture.open().await.unwrap();
        append_durably(&wal, 0..20, 0).await.unwrap();
        wal.set_committed(Bytes::from_static(b"commit 10")).unwrap();
        wal.flush_committed().await.unwrap();
        wal.truncate_after(Some(15)).await.unwrap();
        wal.shutdown().await.unwrap();
        let (wal, recovered) = fixture.open().await.unwrap();
        assert_eq!(recovered.committed.as_deref(), Some(&b"commit 10"[..]), "{}", fixture.name);
        assert_eq!(recovered.last_index, Some(15));
        wal.set_committed(Bytes::from_static(b"commit 15")).unwrap();
        append_durably(&wal, 16..60, 0).await.unwrap();
        wal.purge(50).await.unwrap();
        wal.shutdown().await.unwrap();
        let (_, recovered) = fixture.open().await.unwrap();
        assert_eq!(recovered.committed.as_deref(), Some(&b"commit 15"[..]), "{}", fixture.name);
    }
}

// Goal: meta saves are durable and a torn save keeps the previous one. Method: save twice,
// then overwrite the slot the next save would use with half a slot of garbage (a torn write),
// reopen; then save again and check the newest wins.
#[tokio::test]
async fn meta_survives_a_torn_slot_write() {
    for fixture in fixtures() {
        let (wal, _) = fixture.open().await.unwrap();
        wal.save_meta(Bytes::from_static(b"vote 1")).await.unwrap();
        wal.save_meta(Bytes::from_static(b"vote 2")).await.unwrap();
        wal.shutdown().await.unwrap();
        let meta = fixture.dir.join(META_FILE_NAME);
        fixture.disk.write_at(&meta, 0, &[0xAB; META_SLOT_BYTES / 2]).unwrap();
        let (wal, recovered) = fixture.open().await.unwrap();
        assert_eq!(recovered.meta.as_deref(), Some(&b"vote 2"[..]), "{}", fixture.name);
        wal.save_meta(Bytes::from_static(b"vote 3")).await.unwrap();
        wal.shutdown().await.unwrap();
        let (_, recovered) = fixture.open().await.unwrap();
        assert_eq!(recovered.meta.as_deref(), Some(&b"vote 3"[..]));
        assert!(fixture.disk.len(&meta).unwrap() <= 2 * META_SLOT_BYTES as u64);
    }
}

/// Opens a WAL holding entries 0..count, shuts it down, and returns the last segment's path.
async fn closed_log(fixture: &Fixture, count: u64) -> PathBuf {
    let (wal, _) = fixture.open().await.unwrap();
    append_durably(&wal, 0..count, 0).await.unwrap();
    wal.shutdown().await.unwrap();
    fixture.segments().pop().unwrap()
}

/// Like [`closed_log`], but the process "crashes" instead of shutting down (the handle is
/// dropped), so nothing records how far the log was synced: damage at its tail may be a torn
/// final write.
async fn crashed_log(fixture: &Fixture, count: u64) -> PathBuf {
    let (wal, _) = fixture.open().await.unwrap();
    append_durably(&wal, 0..count, 0).await.unwrap();
    drop(wal);
    fixture.segments().pop().unwrap()
}

/// Reopens after damage: the tail must be cut, entries before it kept, and a second open clean.
async fn assert_tail_cut(fixture: &Fixture, expected_last: u64) {
    let (wal, recovered) = fixture.open().await.unwrap();
    assert!(recovered.truncated_tail.is_some(), "{}: damage not reported", fixture.name);
    assert_eq!(recovered.last_index, Some(expected_last), "{}", fixture.name);
    assert_log(&wal, 0..expected_last + 1, |_| 0).await;
    append_durably(&wal, expected_last + 1..expected_last + 3, 0).await.unwrap();
    wal.shutdown().await.unwrap();
    let (_, recovered) = fixture.open().await.unwrap();
    assert_eq!(recovered.truncated_tail, None);
    assert_eq!(recovered.last_index, Some(expected_last + 2));
}

// Goal: a write torn mid-record is cut off. Method: shorten the last segment by a few bytes,
// which cuts its last record.
#[tokio::test]
async fn torn_tail_is_truncated() {
    for fixture in fixtures() {
        let last = crashed_log(&fixture, 20).await;
        let len = fixture.disk.len(&last).unwrap();
        fixture.disk.set_len(&last, len - 3).unwrap();
        assert_tail_cut(&fixture, 18).await;
    }
}

// Goal: garbage after the last record (a write that extended the file but never landed) is
// cut off. Method: append random-looking bytes to the last segment.
#[tokio::test]
async fn garbled_tail_is_truncated() {
    for fixture in fixtures() {
        let last = crashed_log(&fixture, 20).await;
        let len = fixture.disk.len(&last).unwrap();
        let garbage: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        fixture.disk.write_at(&last, len, &garbage).unwrap();
        assert_tail_cut(&fixture, 19).await;
    }
}

// Goal: a checksum error in the last record is treated as a torn write. Method: flip a byte in
// the last record's payload.
#[tokio::test]
async fn checksum_error_in_last_record_is_truncated() {
    for fixture in fixtures() {
        let last = crashed_log(&fixture, 20).await;
        let len = fixture.disk.len(&last).unwrap();
        flip_byte(fixture.disk.as_ref(), &last, len - 2);
        assert_tail_cut(&fixture, 18).await;
    }
}

fn flip_byte(disk: &dyn Disk, path: &std::path::Path, offset: u64) {
    let mut byte = [0];
    disk.read_at(path, offset, &mut byte).unwrap();
    disk.write_at(path, offset, &[byte[0] ^ 0x20]).unwrap();
}

// Goal: a segment whose header write never completed (a crash while rolling) is removed.
// Method: cut the last segment inside its header.
#[tokio::test]
async fn torn_header_of_last_segment_is_removed() {
    for fixture in fixtures() {
        let last = crashed_log(&fixture, 40).await;
        let (wal, _) = fixture.open().await.unwrap();
        let last_index = wal.last_index().unwrap();
        drop(wal);
        let first_in_last: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        fixture.disk.set_len(&last, SEGMENT_HEADER_BYTES / 2).unwrap();
        let (wal, recovered) = fixture.open().await.unwrap();
        assert!(recovered.truncated_tail.is_some());
        assert!(!fixture.disk.exists(&last).unwrap(), "{}", fixture.name);
        assert_eq!(recovered.last_index, Some(first_in_last - 1));
        assert!(first_in_last <= last_index);
        assert_log(&wal, 0..first_in_last, |_| 0).await;
    }
}

// Goal: damage that a torn write cannot explain fails the open and changes nothing. Method:
// flip a byte in the first segment (not the last); separately, in the middle of the last
// segment with valid entries after it.
#[tokio::test]
async fn corruption_before_the_tail_fails_open() {
    for fixture in fixtures() {
        closed_log(&fixture, 40).await;
        let segments = fixture.segments();
        flip_byte(fixture.disk.as_ref(), &segments[0], SEGMENT_HEADER_BYTES + 12);
        let error = fixture.open().await.err().expect("corruption must fail the open");
        assert!(matches!(error, WalError::Corrupt { ref path, .. } if *path == segments[0]), "{error}");
        flip_byte(fixture.disk.as_ref(), &segments[0], SEGMENT_HEADER_BYTES + 12);
        let last = segments.last().unwrap();
        flip_byte(fixture.disk.as_ref(), last, SEGMENT_HEADER_BYTES + 12);
        let len = fixture.disk.len(last).unwrap();
        let error = fixture.open().await.err().expect("mid-segment corruption must fail the open");
        assert!(matches!(error, WalError::Corrupt { .. }), "{error}");
        assert_eq!(fixture.disk.len(last).unwrap(), len, "a failed open truncates nothing");
    }
}

// Goal: a flipped bit in the last entry is corruption, not a torn write, when a valid record
// follows it (the finding: a committed marker after it, and the entry was silently dropped).
// Method: flush a committed marker after the last entry, "crash", flip a byte inside the last
// entry; the open must fail naming the segment and the entry's offset, and change nothing.
#[tokio::test]
async fn damaged_last_entry_followed_by_a_committed_marker_fails_open() {
    for fixture in fixtures() {
        let (wal, _) = fixture.open().await.unwrap();
        append_durably(&wal, 0..20, 0).await.unwrap();
        let entry_end = fixture.disk.len(fixture.segments().last().unwrap()).unwrap();
        wal.set_committed(Bytes::from_static(b"commit 19")).unwrap();
        wal.flush_committed().await.unwrap();
        drop(wal);
        let last = fixture.segments().pop().unwrap();
        let len = fixture.disk.len(&last).unwrap();
        assert!(len > entry_end, "{}: the marker follows the entry", fixture.name);
        flip_byte(fixture.disk.as_ref(), &last, entry_end - 2);
        let error = fixture.open().await.err().expect("damage before a valid marker must fail the open");
        let WalError::Corrupt { path, offset, .. } = &error else { panic!("{}: {error}", fixture.name) };
        assert_eq!(path, &last);
        assert!(*offset < entry_end && *offset > SEGMENT_HEADER_BYTES, "{}: offset {offset}", fixture.name);
        assert!(error.to_string().contains("committed marker"), "{error}");
        assert!(error.to_string().contains("wipe its data directory"), "{error}");
        assert_eq!(fixture.disk.len(&last).unwrap(), len, "a failed open truncates nothing");
    }
}

// Goal: a cleanly closed log that lost bytes at its end is refused, not silently shortened
// (the finding: 60 bytes cut off dropped the last acknowledged entry and reused its index).
// Method: close cleanly, cut 60 bytes (mid-record) and, separately, one whole record (a cut
// at a record boundary leaves no damage to see); both opens must fail.
#[tokio::test]
async fn bytes_cut_off_a_cleanly_closed_log_fail_open() {
    for fixture in fixtures() {
        let last = closed_log(&fixture, 20).await;
        let len = fixture.disk.len(&last).unwrap();
        fixture.disk.set_len(&last, len - 60).unwrap();
        let error = fixture.open().await.err().expect("a cut into synced entries must fail the open");
        assert!(matches!(error, WalError::Corrupt { ref path, .. } if *path == last), "{}: {error}", fixture.name);
        assert!(error.to_string().contains("synced"), "{error}");
        assert_eq!(fixture.disk.len(&last).unwrap(), len - 60, "a failed open truncates nothing");
    }
    for fixture in fixtures() {
        let last = closed_log(&fixture, 20).await;
        let (wal, _) = fixture.open().await.unwrap();
        let record_start = {
            let before = fixture.disk.len(&last).unwrap();
            append_durably(&wal, 20..21, 0).await.unwrap();
            wal.shutdown().await.unwrap();
            before
        };
        fixture.disk.set_len(&last, record_start).unwrap();
        let error = fixture.open().await.err().expect("a whole synced entry missing must fail the open");
        let WalError::Corrupt { offset, .. } = error else { panic!("{}: {error}", fixture.name) };
        assert_eq!(offset, record_start);
    }
}

// Goal: once the log end is recorded after every batch, a checksum error in the last entry is
// corruption even with nothing after it: that entry was synced. Method: save the log end
// after every batch, crash, flip a byte in the last entry.
#[tokio::test]
async fn damage_before_the_recorded_log_end_fails_open() {
    for fixture in fixtures() {
        let options = WalOptions { log_end_save_interval: Duration::ZERO, ..small_options() };
        let (wal, _) = Wal::open(fixture.disk.clone(), fixture.dir.clone(), options).await.unwrap();
        append_durably(&wal, 0..20, 0).await.unwrap();
        wal.flush_committed().await.unwrap();
        drop(wal);
        let last = fixture.segments().pop().unwrap();
        let len = fixture.disk.len(&last).unwrap();
        flip_byte(fixture.disk.as_ref(), &last, len - 2);
        let error = fixture.open().await.err().expect("damage to a synced entry must fail the open");
        assert!(error.to_string().contains("which was synced"), "{}: {error}", fixture.name);
    }
}

// Goal: a missing segment in the middle is detected. Method: remove the second of several
// segments; the open must fail with NonConsecutive.
#[tokio::test]
async fn missing_middle_segment_fails_open() {
    for fixture in fixtures() {
        closed_log(&fixture, 40).await;
        let segments = fixture.segments();
        assert!(segments.len() >= 3);
        fixture.disk.remove(&segments[1]).unwrap();
        let error = fixture.open().await.err().expect("a gap must fail the open");
        assert!(matches!(error, WalError::NonConsecutive { .. }), "{error}");
    }
}

/// Appends `indices` as one batch without waiting, returning the callback's outcome.
async fn append_pending(wal: &Wal, indices: std::ops::Range<u64>) -> oneshot::Receiver<io::Result<()>> {
    let entries = indices.map(|index| (index, payload(index, 0))).collect();
    let (done, durable) = oneshot::channel();
    wal.append(entries, Box::new(move |result| done.send(result).unwrap())).await.unwrap();
    durable
}

// Goal: a full disk stalls the WAL instead of failing it, acknowledges nothing meanwhile, keeps
// entries readable, and resumes by itself once space is freed, with everything durable (the
// finding: after a disk full the node never wrote again until restarted). Method: fill the
// simulated disk, append, check the callback has not run and the stall is reported as
// StorageFull; free the space, await the callback, crash, reopen and read everything back.
#[tokio::test]
async fn a_full_disk_stalls_appends_until_space_is_freed() {
    let disk = Arc::new(SimDisk::new(5));
    let (wal, _) = Wal::open(disk.clone(), "/wal", small_options()).await.unwrap();
    append_durably(&wal, 0..3, 0).await.unwrap();
    disk.set_fault(Some(DiskFault::NoSpace));
    let mut durable = append_pending(&wal, 3..30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(durable.try_recv().is_err(), "nothing is acknowledged while the disk is full");
    assert_eq!(wal.stalled().map(|error| error.kind()), Some(io::ErrorKind::StorageFull));
    assert_eq!(wal.read(3..4).await.unwrap(), vec![(3, payload(3, 0))], "entries stay readable");
    disk.set_fault(None);
    tokio::time::timeout(Duration::from_secs(5), durable).await.expect("resumes by itself").unwrap().unwrap();
    assert!(wal.stalled().is_none());
    append_durably(&wal, 30..32, 0).await.unwrap();
    drop(wal);
    disk.crash();
    let (wal, _) = Wal::open(disk.clone(), "/wal", small_options()).await.unwrap();
    assert_log(&wal, 0..32, |_| 0).await;
}

// Goal: after a failed fsync the WAL never trusts the page cache: it cuts the bytes back and
// writes them again rather than retrying the sync (which would succeed without writing them:
// "fsyncgate"). Method: fail a batch's sync on a disk that then drops those bytes from what a
// power failure keeps; the append must still be acknowledged, and survive a crash.
#[tokio::test]
async fn a_failed_sync_is_repaired_by_rewriting_not_retried() {
    for fault in [None, Some(DiskFault::Io)] {
        let disk = Arc::new(SimDisk::new(6));
        let (wal, _) = Wal::open(disk.clone(), "/wal", small_options()).await.unwrap();
        append_durably(&wal, 0..3, 0).await.unwrap();
        disk.fail_next_syncs(1);
        disk.set_fault(fault);
        let durable = append_pending(&wal, 3..5).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(wal.stalled().is_some(), fault.is_some(), "stalled while the disk fails, not after");
        disk.set_fault(None);
        tokio::time::timeout(Duration::from_secs(5), durable).await.expect("resumes").unwrap().unwrap();
        wal.save_meta(Bytes::from_static(b"vote")).await.unwrap();
        drop(wal);
        disk.crash();
        let (wal, recovered) = Wal::open(disk.clone(), "/wal", small_options()).await.unwrap();
        assert_eq!(recovered.meta.as_deref(), Some(&b"vote"[..]));
        assert_log(&wal, 0..5, |_| 0).await;
    }
}

// Goal: a stalled WAL still shuts down, failing what it could not write. Method: fill the disk,
// append, shut down: it must return an error within the backoff, and the callback too.
#[tokio::test]
async fn shutdown_of_a_stalled_wal_fails_what_it_could_not_write() {
    let disk = Arc::new(SimDisk::new(7));
    let (wal, _) = Wal::open(disk.clone(), "/wal", small_options()).await.unwrap();
    append_durably(&wal, 0..3, 0).await.unwrap();
    disk.set_fault(Some(DiskFault::NoSpace));
    let durable = append_pending(&wal, 3..30).await;
    wal.set_committed(Bytes::from_static(b"c")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(wal.flush_committed().await.is_err(), "a marker not yet durable is not promised while stalled");
    let shutdown = tokio::time::timeout(Duration::from_secs(5), wal.shutdown()).await.expect("shutdown ends");
    assert!(shutdown.is_err());
    assert!(durable.await.unwrap().is_err());
}
