//! Reading entries that are no longer cached, by their recorded positions.

use std::io;
use std::path::Path;

use bytes::Bytes;

use super::format::{Record, decode_record};
use super::positions::Position;
use super::state::segment_path;
use crate::storage::Disk;

/// Reads of neighbouring records are merged into one disk read up to this size.
const READ_SPAN_BYTES_MAX: u64 = 1024 * 1024;

/// Reads the entries at `wanted` (ascending indices with their positions), merging neighbours
/// in one segment into one read. Each record is verified after the read: checksum, kind and
/// index, so a misdirected read cannot return another entry's bytes.
pub(super) fn read_entries(disk: &dyn Disk, dir: &Path, wanted: &[(u64, Position)]) -> io::Result<Vec<(u64, Bytes)>> {
    let mut entries = Vec::with_capacity(wanted.len());
    let mut rest = wanted;
    while let Some(&(_, first)) = rest.first() {
        let span_len = rest
            .iter()
            .take_while(|(_, position)| {
                position.segment == first.segment
                    && position.offset >= first.offset
                    && position.end() - first.offset <= READ_SPAN_BYTES_MAX.max(u64::from(first.len))
            })
            .count();
        let (span, later) = rest.split_at(span_len);
        read_span(disk, dir, span, &mut entries)?;
        rest = later;
    }
    Ok(entries)
}

/// Reads one run of records from a single segment.
fn read_span(disk: &dyn Disk, dir: &Path, span: &[(u64, Position)], entries: &mut Vec<(u64, Bytes)>) -> io::Result<()> {
    let (_, first) = span[0];
    let (_, last) = span[span.len() - 1];
    let path = segment_path(dir, first.segment);
    let mut buffer = vec![0; usize::try_from(last.end() - first.offset).map_err(io::Error::other)?];
    let read = disk.read_at(&path, first.offset, &mut buffer)?;
    if read != buffer.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} ends before entry {} (truncated meanwhile?)", path.display(), span[span.len() - 1].0),
        ));
    }
    let buffer = Bytes::from(buffer);
    for &(index, position) in span {
        let start = (position.offset - first.offset) as usize;
        let invalid = |why: String| {
            io::Error::new(io::ErrorKind::InvalidData, format!("entry {index} in {}: {why}", path.display()))
        };
        match decode_record(&buffer[start..]) {
            Ok((Record::Entry { index: found, payload }, len)) if found == index && len == position.len as usize => {
                let payload_start = start + len - payload.len();
                entries.push((index, buffer.slice(payload_start..start + len)));
            }
            Ok((Record::Entry { index: found, .. }, len)) => {
                return Err(invalid(format!("found entry {found} of {len} bytes instead")));
            }
            Ok((Record::Committed { .. }, _)) => return Err(invalid("found a committed marker instead".into())),
            Err(error) => return Err(invalid(error.to_string())),
        }
    }
    Ok(())
}
