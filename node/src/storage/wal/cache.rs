//! Recently appended entries kept in memory, so the common reads (replicating what was just
//! appended) never touch the disk, and so entries are readable before they are written.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Per-entry bookkeeping counted against the budget besides the payload itself.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Entries by index, bounded by a byte budget that only written entries are evicted to meet:
/// an entry not yet on disk exists nowhere else.
#[derive(Debug)]
pub(super) struct EntryCache {
    entries: BTreeMap<u64, CachedEntry>,
    bytes: usize,
    bytes_max: usize,
}

#[derive(Debug)]
struct CachedEntry {
    payload: Bytes,
    /// The append operation that wrote this version of the entry: after a truncation an index
    /// can be appended again, and only the writer of this very version may mark it written.
    operation: u64,
    /// Whether this version is on disk (then reads may fall back to its position).
    written: bool,
}

impl EntryCache {
    pub(super) fn new(bytes_max: usize) -> EntryCache {
        EntryCache { entries: BTreeMap::new(), bytes: 0, bytes_max }
    }

    pub(super) fn get(&self, index: u64) -> Option<Bytes> {
        self.entries.get(&index).map(|entry| entry.payload.clone())
    }

    /// Adds an entry appended by `operation`, not yet written.
    pub(super) fn insert(&mut self, index: u64, payload: Bytes, operation: u64) {
        debug_assert!(self.entries.range(index..).next().is_none(), "appends go after every cached entry");
        self.bytes += cost(&payload);
        self.entries.insert(index, CachedEntry { payload, operation, written: false });
    }

    /// Marks the version of `index` appended by `operation` as on disk, if it is still cached.
    pub(super) fn mark_written(&mut self, index: u64, operation: u64) {
        if let Some(entry) = self.entries.get_mut(&index)
            && entry.operation == operation
        {
            entry.written = true;
        }
    }

    /// Drops written entries, lowest index first, until the budget is met or the lowest entry
    /// is not yet written.
    pub(super) fn evict(&mut self) {
        while self.bytes > self.bytes_max {
            let Some(entry) = self.entries.first_entry() else { break };
            if !entry.get().written {
                break;
            }
            self.bytes -= cost(&entry.remove().payload);
        }
    }

    /// Drops entries from `index` on (a truncation).
    pub(super) fn remove_from(&mut self, index: u64) {
        for (_, entry) in self.entries.split_off(&index) {
            self.bytes -= cost(&entry.payload);
        }
    }

    /// Drops entries before `index` (a purge).
    pub(super) fn remove_before(&mut self, index: u64) {
        let kept = self.entries.split_off(&index);
        for entry in std::mem::replace(&mut self.entries, kept).into_values() {
            self.bytes -= cost(&entry.payload);
        }
    }
}

fn cost(payload: &Bytes) -> usize {
    payload.len() + ENTRY_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: eviction never drops an entry that is not on disk, and a re-appended index is not
    // marked written by the old version's writer. Method: fill past the budget, evict, truncate
    // and re-append, then mark with the stale operation.
    #[test]
    fn cache_evicts_only_written_entries_of_the_right_version() {
        let mut cache = EntryCache::new(0);
        for index in 0..4 {
            cache.insert(index, Bytes::from_static(b"x"), 1);
        }
        cache.mark_written(0, 1);
        cache.mark_written(1, 1);
        cache.evict();
        assert_eq!(cache.get(1), None);
        assert!(cache.get(2).is_some());
        cache.remove_from(3);
        cache.insert(3, Bytes::from_static(b"y"), 2);
        cache.mark_written(2, 1);
        cache.mark_written(3, 1);
        cache.evict();
        assert_eq!(cache.get(3), Some(Bytes::from_static(b"y")));
        cache.remove_before(4);
        assert_eq!(cache.bytes, 0);
    }
}
