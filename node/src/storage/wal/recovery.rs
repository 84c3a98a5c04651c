//! Opening the log: read every segment, verify headers, checksums and index order, and cut a
//! torn tail off the last segment.
//!
//! Only the last segment can legitimately end in damage: a segment is complete and synced
//! before the next one is created, and each batch is written and synced before the next. So
//! damage in an earlier segment, or damage followed by a valid later record (which a torn write
//! cannot produce: it keeps a prefix of what was written, then nothing or garbage), is
//! corruption and fails the open.
//!
//! A torn write also never reaches back before the last sync: the meta file's `log_end` (see
//! `meta.rs`) is a point every entry before which was synced, so a log that ends before it
//! (damaged there, or simply cut short) lost synced entries, and fails the open too. Nothing on
//! disk is changed when the open fails.

use std::path::{Path, PathBuf};

use super::WalError;
use super::format::{
    HeaderError, RECORD_HEADER_BYTES, Record, RecordKind, SEGMENT_HEADER_BYTES, decode_record, decode_segment_header,
    parse_segment_file_name,
};
use super::meta::{COMMITTED_PAYLOAD_BYTES_MAX, META_FILE_NAME};
use super::positions::{Position, Positions};
use super::state::{Committed, segment_path};
use crate::storage::Disk;

/// The longest body a committed marker record can have: its sequence and payload.
const COMMITTED_RECORD_BODY_BYTES_MAX: usize = 8 + COMMITTED_PAYLOAD_BYTES_MAX;

/// A segment as the writer tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Segment {
    /// The index of its first entry, which names the file.
    pub(super) first_index: u64,
    /// One past its last entry (`first_index` if it has none).
    pub(super) next_index: u64,
    /// Its length in bytes, header included.
    pub(super) bytes: u64,
}

/// What [`recover_log`] found.
#[derive(Debug)]
pub(super) struct RecoveredLog {
    /// Segments in index order, each continuing the previous one.
    pub(super) segments: Vec<Segment>,
    pub(super) positions: Positions,
    /// The committed marker with the highest sequence in the log.
    pub(super) committed: Option<Committed>,
    pub(super) truncated_tail: Option<TruncatedTail>,
}

/// A torn or garbled tail that [`Wal::open`](super::Wal::open) cut off the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment that was cut (or removed, if its header was damaged).
    pub segment: PathBuf,
    /// Where the damage began; the segment now ends here.
    pub offset: u64,
    /// How many bytes were discarded.
    pub bytes_discarded: u64,
    /// What was wrong with the first discarded record.
    pub reason: String,
}

/// One segment's contents, before it is checked against its neighbours.
pub(super) struct SegmentScan {
    pub(super) segment: Segment,
    entries: Vec<(u64, Position)>,
    committed: Option<Committed>,
    /// The first damaged record, where the scan stopped.
    pub(super) damage: Option<Damage>,
}

pub(super) struct Damage {
    pub(super) offset: u64,
    pub(super) reason: String,
}

/// Scans the segments in `dir`, truncating a torn tail. `log_end` is the point the log is
/// known to reach (from the meta file); a log without segments continues there.
pub(super) fn recover_log(disk: &dyn Disk, dir: &Path, log_end: u64) -> Result<RecoveredLog, WalError> {
    let firsts = list_segments(disk, dir)?;
    let mut log = RecoveredLog {
        segments: Vec::new(),
        positions: Positions::new(firsts.first().copied().unwrap_or(log_end)),
        committed: None,
        truncated_tail: None,
    };
    for (position, &first) in firsts.iter().enumerate() {
        let path = segment_path(dir, first);
        let bytes = disk.read_all(&path).map_err(WalError::io(&path))?;
        let scan = scan_segment(&bytes, first, &path)?;
        if let Some(damage) = &scan.damage {
            let tail = Tail { bytes: &bytes, expected: scan.segment.next_index, log_end, path: &path };
            tail.check_torn(damage, position + 1 == firsts.len())?;
            log.truncated_tail = Some(cut_tail(disk, dir, &path, bytes.len() as u64, damage)?);
            if damage.offset == 0 {
                continue;
            }
        }
        log.add(scan, &path)?;
        // After a process kill the OS still holds what the dead process wrote but never synced,
        // and this scan read it. Counting it would let the log end (and raft) treat it as
        // durable, and a power cut would then take entries the node had acknowledged, so what
        // the log keeps is synced before it is used.
        disk.sync(&path).map_err(WalError::io(&path))?;
    }
    disk.sync_dir(dir).map_err(WalError::io(dir))?;
    check_reaches_log_end(&log, dir, log_end)?;
    Ok(log)
}

/// Fails if the undamaged log ends before `log_end`: synced entries were cut off whole (a
/// file truncated at a record boundary, or a last segment removed).
fn check_reaches_log_end(log: &RecoveredLog, dir: &Path, log_end: u64) -> Result<(), WalError> {
    let Some(last) = log.segments.last() else { return Ok(()) };
    if last.next_index >= log_end {
        return Ok(());
    }
    Err(WalError::Corrupt {
        path: segment_path(dir, last.first_index),
        offset: last.bytes,
        reason: format!(
            "the log ends before entry {}, but every entry before {log_end} was synced: synced entries are missing",
            last.next_index
        ),
    })
}

impl RecoveredLog {
    fn add(&mut self, scan: SegmentScan, path: &Path) -> Result<(), WalError> {
        match self.segments.last() {
            Some(previous) if previous.next_index != scan.segment.first_index => {
                return Err(WalError::NonConsecutive {
                    path: path.to_path_buf(),
                    expected: previous.next_index,
                    found: scan.segment.first_index,
                });
            }
            Some(_) => {}
            None => self.positions.reset(scan.segment.first_index),
        }
        for (index, position) in scan.entries {
            self.positions.push(index, position);
        }
        if let Some(committed) = scan.committed
            && self.committed.as_ref().is_none_or(|newest| committed.sequence > newest.sequence)
        {
            self.committed = Some(committed);
        }
        self.segments.push(scan.segment);
        Ok(())
    }
}

/// First indices of the segment files in `dir`, ascending.
fn list_segments(disk: &dyn Disk, dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut firsts = Vec::new();
    for name in disk.list(dir).map_err(WalError::io(dir))? {
        match parse_segment_file_name(&name) {
            Some(first) => firsts.push(first),
            None if name == META_FILE_NAME => {}
            None => tracing::warn!(file = %dir.join(&name).display(), "ignoring an unknown file in the WAL directory"),
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Reads a segment's header and records up to the first damaged one. Fails on anything a torn
/// write cannot explain.
pub(super) fn scan_segment(bytes: &[u8], name_first: u64, path: &Path) -> Result<SegmentScan, WalError> {
    let corrupt = |offset: u64, reason: String| WalError::Corrupt { path: path.to_path_buf(), offset, reason };
    let mut scan = SegmentScan {
        segment: Segment { first_index: name_first, next_index: name_first, bytes: SEGMENT_HEADER_BYTES },
        entries: Vec::new(),
        committed: None,
        damage: None,
    };
    match decode_segment_header(bytes) {
        Ok(first) if first == name_first => {}
        Ok(first) => return Err(corrupt(0, format!("the header says first index {first}, the name {name_first}"))),
        Err(error @ HeaderError::Version(_)) => return Err(corrupt(0, error.to_string())),
        Err(error) => {
            scan.segment.bytes = 0;
            scan.damage = Some(Damage { offset: 0, reason: error.to_string() });
            return Ok(scan);
        }
    }
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    while offset < bytes.len() {
        let (record, len) = match decode_record(&bytes[offset..]) {
            Ok(decoded) => decoded,
            Err(error) if error.is_damage() => {
                scan.damage = Some(Damage { offset: offset as u64, reason: error.to_string() });
                break;
            }
            Err(error) => return Err(corrupt(offset as u64, error.to_string())),
        };
        match record {
            Record::Entry { index, .. } => {
                let expected = scan.segment.next_index;
                if index != expected {
                    return Err(WalError::NonConsecutive { path: path.to_path_buf(), expected, found: index });
                }
                let position = Position { segment: name_first, offset: offset as u64, len: len as u32 };
                scan.entries.push((index, position));
                scan.segment.next_index += 1;
            }
            Record::Committed { sequence, payload } => {
                if scan.committed.as_ref().is_none_or(|newest| sequence > newest.sequence) {
                    scan.committed = Some(Committed { sequence, payload: payload.to_vec().into() });
                }
            }
        }
        offset += len;
        scan.segment.bytes = offset as u64;
    }
    Ok(scan)
}

/// A damaged segment's bytes, and what the log expects of them.
struct Tail<'a> {
    bytes: &'a [u8],
    /// The index the damaged record would have had.
    expected: u64,
    log_end: u64,
    path: &'a Path,
}

impl Tail<'_> {
    /// Fails unless `damage` can be a torn or garbled final write: it must be in the last
    /// segment, past every entry known synced, and no valid record may follow it.
    fn check_torn(&self, damage: &Damage, is_last: bool) -> Result<(), WalError> {
        let corrupt =
            |reason: String| WalError::Corrupt { path: self.path.to_path_buf(), offset: damage.offset, reason };
        if !is_last {
            return Err(corrupt(format!("{} in a segment that is not the last", damage.reason)));
        }
        if self.expected < self.log_end {
            let reason = format!(
                "{} at entry {}, which was synced (every entry before {} was)",
                damage.reason, self.expected, self.log_end
            );
            return Err(corrupt(reason));
        }
        if let Some(found) = self.later_record(damage.offset as usize + 1) {
            return Err(corrupt(format!("{}, yet a valid {found} follows", damage.reason)));
        }
        Ok(())
    }

    /// A valid record starting anywhere at or after `from`: an entry whose index could continue
    /// the log, or a committed marker. Checks the kind and the index or length before the
    /// checksum, so the scan costs little more than a pass over the bytes.
    fn later_record(&self, from: usize) -> Option<String> {
        const INDEX_SPAN_MAX: u64 = 1 << 32;
        (from..self.bytes.len()).find_map(|offset| {
            let rest = &self.bytes[offset..];
            let header = rest.get(..RECORD_HEADER_BYTES + 8)?;
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
            let prefix = u64::from_le_bytes(header[RECORD_HEADER_BYTES..].try_into().expect("8 bytes"));
            let plausible = match header[8] {
                kind if kind == RecordKind::Entry as u8 => prefix.wrapping_sub(self.expected) < INDEX_SPAN_MAX,
                kind if kind == RecordKind::Committed as u8 => len <= COMMITTED_RECORD_BODY_BYTES_MAX,
                _ => false,
            };
            match plausible.then(|| decode_record(rest)) {
                Some(Ok((Record::Entry { index, .. }, _))) => Some(format!("entry {index} at byte {offset}")),
                Some(Ok((Record::Committed { .. }, _))) => Some(format!("committed marker at byte {offset}")),
                _ => None,
            }
        })
    }
}

/// Cuts the segment at the damage (removing it if its header is damaged) and syncs.
fn cut_tail(disk: &dyn Disk, dir: &Path, path: &Path, len: u64, damage: &Damage) -> Result<TruncatedTail, WalError> {
    let io = WalError::io(path);
    if damage.offset == 0 {
        disk.remove(path).and_then(|()| disk.sync_dir(dir)).map_err(io)?;
    } else {
        disk.set_len(path, damage.offset).and_then(|()| disk.sync(path)).map_err(io)?;
    }
    let tail = TruncatedTail {
        segment: path.to_path_buf(),
        offset: damage.offset,
        bytes_discarded: len - damage.offset,
        reason: damage.reason.clone(),
    };
    tracing::warn!(
        segment = %path.display(),
        offset = tail.offset,
        bytes_discarded = tail.bytes_discarded,
        reason = %tail.reason,
        "truncated a torn WAL tail"
    );
    Ok(tail)
}
