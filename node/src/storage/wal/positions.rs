//! Where each entry on disk lives, so reads of entries no longer cached go straight to their
//! bytes.

use std::collections::VecDeque;

use super::format::SEGMENT_HEADER_BYTES;

/// The location of one entry record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Position {
    /// The first index of the segment holding the record, which names its file.
    pub(super) segment: u64,
    /// Byte offset of the record in the segment.
    pub(super) offset: u64,
    /// Encoded length of the record.
    pub(super) len: u32,
}

impl Position {
    /// The offset just past the record.
    pub(super) fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// Positions of the entries physically on disk, consecutive from `first_index`. Logically
/// purged entries stay here until their segment is deleted.
#[derive(Debug)]
pub(super) struct Positions {
    /// Index of `positions[0]`, or where the next one goes when empty.
    first_index: u64,
    positions: VecDeque<Position>,
}

impl Positions {
    /// No positions; the next pushed entry must be `first_index`.
    pub(super) fn new(first_index: u64) -> Positions {
        Positions { first_index, positions: VecDeque::new() }
    }

    /// One past the last entry written to disk.
    pub(super) fn next_index(&self) -> u64 {
        self.first_index + self.positions.len() as u64
    }

    pub(super) fn get(&self, index: u64) -> Option<Position> {
        let offset = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.positions.get(offset).copied()
    }

    /// Records the next entry written.
    pub(super) fn push(&mut self, index: u64, position: Position) {
        assert_eq!(index, self.next_index(), "entries are written consecutively");
        assert!(position.offset >= SEGMENT_HEADER_BYTES);
        if let Some(last) = self.positions.back() {
            if last.segment == position.segment {
                assert!(position.offset >= last.end(), "records in a segment do not overlap");
            } else {
                assert!(position.segment > last.segment, "segments are in index order");
            }
        }
        self.positions.push_back(position);
    }

    /// Forgets entries from `index` on (a truncation).
    pub(super) fn truncate(&mut self, index: u64) {
        assert!(index >= self.first_index, "truncation below the first entry on disk");
        let keep = usize::try_from(index - self.first_index).unwrap_or(usize::MAX);
        self.positions.truncate(keep);
    }

    /// Forgets entries before `index` (their segment was deleted).
    pub(super) fn remove_before(&mut self, index: u64) {
        assert!(index <= self.next_index(), "purge past the last entry on disk");
        while self.first_index < index {
            self.positions.pop_front();
            self.first_index += 1;
        }
    }

    /// Forgets everything; the next entry written will be `first_index`.
    pub(super) fn reset(&mut self, first_index: u64) {
        self.positions.clear();
        self.first_index = first_index;
    }
}
