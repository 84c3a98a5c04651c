//! Opening the log: read every segment, verify headers, checksums and index order, and cut a
//! torn tail off the last segment.
//!
//! Only the last segment can legitimately end in damage: a segment is complete and synced
//! before the next one is created, and each batch is written and synced before the next. So
//! damage in an earlier segment, or damage followed by a valid later entry (which a torn write
//! cannot produce: it keeps a prefix of what was written), is corruption and fails the open.

use std::path::{Path, PathBuf};

use super::WalError;
use super::format::{
    HeaderError, RECORD_HEADER_BYTES, Record, RecordKind, SEGMENT_HEADER_BYTES, decode_record, decode_segment_header,
    parse_segment_file_name,
};
use super::meta::META_FILE_NAME;
use super::positions::{Position, Positions};
use super::state::{Committed, segment_path};
use crate::storage::Disk;

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
struct SegmentScan {
    segment: Segment,
    entries: Vec<(u64, Position)>,
    committed: Option<Committed>,
    damage: Option<Damage>,
}

struct Damage {
    offset: u64,
    reason: String,
}

/// Scans the segments in `dir`, truncating a torn tail.
pub(super) fn recover_log(disk: &dyn Disk, dir: &Path) -> Result<RecoveredLog, WalError> {
    let firsts = list_segments(disk, dir)?;
    let mut log = RecoveredLog {
        segments: Vec::new(),
        positions: Positions::new(firsts.first().copied().unwrap_or(0)),
        committed: None,
        truncated_tail: None,
    };
    for (position, &first) in firsts.iter().enumerate() {
        let path = segment_path(dir, first);
        let bytes = disk.read_all(&path).map_err(WalError::io(&path))?;
        let scan = scan_segment(&bytes, first, &path)?;
        if let Some(damage) = &scan.damage {
            let is_last = position + 1 == firsts.len();
            check_torn_tail(&bytes, damage, scan.segment.next_index, is_last, &path)?;
            log.truncated_tail = Some(cut_tail(disk, dir, &path, bytes.len() as u64, damage)?);
            if damage.offset == 0 {
                continue;
            }
        }
        log.add(scan, &path)?;
    }
    Ok(log)
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
fn scan_segment(bytes: &[u8], name_first: u64, path: &Path) -> Result<SegmentScan, WalError> {
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

/// Fails unless `damage` can be a torn or garbled final write: it must be in the last segment
/// and no valid entry that would continue the log may follow it.
fn check_torn_tail(bytes: &[u8], damage: &Damage, expected: u64, is_last: bool, path: &Path) -> Result<(), WalError> {
    let corrupt = |reason: String| WalError::Corrupt { path: path.to_path_buf(), offset: damage.offset, reason };
    if !is_last {
        return Err(corrupt(format!("{} in a segment that is not the last", damage.reason)));
    }
    if let Some(index) = later_entry(bytes, damage.offset as usize + 1, expected) {
        return Err(corrupt(format!("{}, yet a valid entry {index} follows", damage.reason)));
    }
    Ok(())
}

/// The index of a valid entry record starting anywhere at or after `from` whose index could
/// continue the log from `expected`. Checks the kind and index before the checksum, so the
/// scan costs little more than a pass over the bytes.
fn later_entry(bytes: &[u8], from: usize, expected: u64) -> Option<u64> {
    const INDEX_SPAN_MAX: u64 = 1 << 32;
    (from..bytes.len()).find_map(|offset| {
        let rest = &bytes[offset..];
        let index_bytes = rest.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + 8)?;
        let index = u64::from_le_bytes(index_bytes.try_into().expect("8 bytes"));
        let plausible = rest[8] == RecordKind::Entry as u8 && index.wrapping_sub(expected) < INDEX_SPAN_MAX;
        match plausible.then(|| decode_record(rest)) {
            Some(Ok((Record::Entry { index, .. }, _))) => Some(index),
            _ => None,
        }
    })
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
