//! The meta file: the caller's small durable state (raft's vote and the like) in two
//! fixed-size slots, A at offset 0 and B at [`META_SLOT_BYTES`].
//!
//! A save writes the slot *not* holding the newest valid copy and syncs it, so a torn save
//! leaves the previous copy intact; open takes the valid slot with the highest sequence.
//!
//! Slot layout (little-endian, zero-padded to [`META_SLOT_BYTES`]):
//! `[magic 8 = "CAIRNMTA"][format u32][flags u32][sequence u64][meta_len u32]`
//! `[committed_len u32][committed_sequence u64][log_end u64][crc32c u32][meta][committed]`,
//! the CRC covering every byte before it and both payloads. Besides the meta payload a slot
//! carries a copy of the newest durable committed marker: the writer refreshes it before it
//! deletes or truncates log bytes that may hold the marker, so the marker survives those.
//!
//! It also carries `log_end`, a point the log on disk is known to reach: every entry below it
//! was synced (or purged). The tail of the log cannot take this record with it, so recovery
//! tells a torn final write (past `log_end`) from the loss of synced entries (before it).

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::WalError;
use super::state::Committed;
use crate::storage::Disk;

pub(super) const META_FILE_NAME: &str = "meta";
pub(super) const META_SLOT_BYTES: usize = 4096;
const META_SLOT_COUNT: usize = 2;
const META_MAGIC: [u8; 8] = *b"CAIRNMTA";
/// Version 2 added `log_end`.
const META_FORMAT_VERSION: u32 = 2;
const META_HEADER_BYTES: usize = 8 + 4 + 4 + 8 + 4 + 4 + 8 + 8 + 4;
const CRC_OFFSET: usize = META_HEADER_BYTES - 4;
const FLAG_META: u32 = 1;
const FLAG_COMMITTED: u32 = 2;
/// The largest committed payload; `set_committed` refuses larger ones.
pub const COMMITTED_PAYLOAD_BYTES_MAX: usize = 512;
/// The largest meta payload; `save_meta` refuses larger ones.
pub const META_PAYLOAD_BYTES_MAX: usize = META_SLOT_BYTES - META_HEADER_BYTES - COMMITTED_PAYLOAD_BYTES_MAX;

const _: () = assert!(META_SLOT_BYTES.is_multiple_of(512), "slots are whole sectors");
const _: () = assert!(META_PAYLOAD_BYTES_MAX >= 1024, "room for a vote and membership ids");
const _: () = assert!(META_HEADER_BYTES + META_PAYLOAD_BYTES_MAX + COMMITTED_PAYLOAD_BYTES_MAX == META_SLOT_BYTES);

/// The contents of one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MetaRecord {
    /// Grows with every save; the valid slot with the highest one is current.
    pub(super) sequence: u64,
    /// The caller's payload, if `save_meta` was ever called.
    pub(super) meta: Option<Bytes>,
    /// The newest durable committed marker when the slot was written.
    pub(super) committed: Option<Committed>,
    /// Every entry below this index was synced or purged when the slot was written, so the
    /// log on disk must reach it: a log found ending before it lost synced entries. Lowered
    /// (durably) before a truncation cuts the log below it.
    pub(super) log_end: u64,
}

/// Encodes a slot, exactly [`META_SLOT_BYTES`] long.
pub(super) fn encode_slot(record: &MetaRecord) -> Vec<u8> {
    let meta = record.meta.as_deref().unwrap_or_default();
    let committed = record.committed.as_ref().map(|c| &c.payload[..]).unwrap_or_default();
    assert!(meta.len() <= META_PAYLOAD_BYTES_MAX);
    assert!(committed.len() <= COMMITTED_PAYLOAD_BYTES_MAX);
    let flags =
        if record.meta.is_some() { FLAG_META } else { 0 } | if record.committed.is_some() { FLAG_COMMITTED } else { 0 };
    let mut slot = Vec::with_capacity(META_SLOT_BYTES);
    slot.extend_from_slice(&META_MAGIC);
    slot.extend_from_slice(&META_FORMAT_VERSION.to_le_bytes());
    slot.extend_from_slice(&flags.to_le_bytes());
    slot.extend_from_slice(&record.sequence.to_le_bytes());
    slot.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    slot.extend_from_slice(&(committed.len() as u32).to_le_bytes());
    slot.extend_from_slice(&record.committed.as_ref().map_or(0, |c| c.sequence).to_le_bytes());
    slot.extend_from_slice(&record.log_end.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&slot), meta), committed);
    slot.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(slot.len(), META_HEADER_BYTES);
    slot.extend_from_slice(meta);
    slot.extend_from_slice(committed);
    slot.resize(META_SLOT_BYTES, 0);
    debug_assert_eq!(decode_slot(&slot).as_ref(), Some(record));
    slot
}

/// Decodes a slot; `None` if it is torn, garbled or absent.
pub(super) fn decode_slot(slot: &[u8]) -> Option<MetaRecord> {
    let header = slot.get(..META_HEADER_BYTES)?;
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    if header[..8] != META_MAGIC || u32_at(8) != META_FORMAT_VERSION {
        return None;
    }
    let (flags, sequence) = (u32_at(12), u64_at(16));
    let (meta_len, committed_len) = (u32_at(24) as usize, u32_at(28) as usize);
    if meta_len > META_PAYLOAD_BYTES_MAX || committed_len > COMMITTED_PAYLOAD_BYTES_MAX {
        return None;
    }
    let meta = slot.get(META_HEADER_BYTES..META_HEADER_BYTES + meta_len)?;
    let committed = slot.get(META_HEADER_BYTES + meta_len..META_HEADER_BYTES + meta_len + committed_len)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&header[..CRC_OFFSET]), meta), committed);
    if crc != u32_at(CRC_OFFSET) {
        return None;
    }
    Some(MetaRecord {
        sequence,
        meta: (flags & FLAG_META != 0).then(|| Bytes::copy_from_slice(meta)),
        committed: (flags & FLAG_COMMITTED != 0)
            .then(|| Committed { sequence: u64_at(32), payload: Bytes::copy_from_slice(committed) }),
        log_end: u64_at(40),
    })
}

/// The meta file as the writer knows it.
#[derive(Debug)]
pub(super) struct MetaFile {
    pub(super) path: PathBuf,
    /// Whether the file's name is durable (it was found at open or created and its directory
    /// synced).
    exists: bool,
    /// The slot holding the newest valid record, and the record.
    newest: Option<(usize, MetaRecord)>,
}

impl MetaFile {
    /// Reads the meta file in `dir`, if any.
    pub(super) fn read(disk: &dyn Disk, dir: &Path) -> Result<MetaFile, WalError> {
        let path = dir.join(META_FILE_NAME);
        if !disk.exists(&path).map_err(WalError::io(&path))? {
            return Ok(MetaFile { path, exists: false, newest: None });
        }
        let bytes = disk.read_all(&path).map_err(WalError::io(&path))?;
        let newest = (0..META_SLOT_COUNT)
            .filter_map(|slot| {
                let start = (slot * META_SLOT_BYTES).min(bytes.len());
                let end = ((slot + 1) * META_SLOT_BYTES).min(bytes.len());
                decode_slot(&bytes[start..end]).map(|record| (slot, record))
            })
            .max_by_key(|(_, record)| record.sequence);
        if newest.is_none() && bytes.len() > META_SLOT_BYTES {
            // Slot B is only ever written after slot A held a valid record.
            return Err(WalError::CorruptMeta { path });
        }
        if newest.is_none() && !bytes.is_empty() {
            tracing::warn!(file = %path.display(), "ignoring a meta file whose first save was torn");
        }
        Ok(MetaFile { path, exists: true, newest })
    }

    /// The point the log is known to reach; 0 if no slot says.
    pub(super) fn log_end(&self) -> u64 {
        self.current().map_or(0, |record| record.log_end)
    }

    pub(super) fn current(&self) -> Option<&MetaRecord> {
        self.newest.as_ref().map(|(_, record)| record)
    }

    /// The record to write next for `meta` and `committed`, with the slot and byte offset to
    /// write it at: the slot not holding the newest valid record.
    pub(super) fn next_write(&self, meta: Option<Bytes>, committed: Option<Committed>, log_end: u64) -> PlannedSlot {
        let (slot, sequence) = match &self.newest {
            Some((slot, record)) => ((slot + 1) % META_SLOT_COUNT, record.sequence + 1),
            None => (0, 1),
        };
        let record = MetaRecord { sequence, meta, committed, log_end };
        PlannedSlot { slot, offset: (slot * META_SLOT_BYTES) as u64, bytes: encode_slot(&record), record }
    }

    /// Writes a planned slot and makes it durable, syncing the directory if the file is new.
    pub(super) fn write(
        disk: &dyn Disk,
        dir: &Path,
        path: &Path,
        planned: &PlannedSlot,
        created: bool,
    ) -> io::Result<()> {
        disk.write_at(path, planned.offset, &planned.bytes)?;
        disk.sync(path)?;
        if created { disk.sync_dir(dir) } else { Ok(()) }
    }

    /// Whether the next write creates the file (and must sync the directory).
    pub(super) fn needs_create(&self) -> bool {
        !self.exists
    }

    /// Records a planned slot as written and durable.
    pub(super) fn written(&mut self, planned: PlannedSlot) {
        if let Some((slot, record)) = &self.newest {
            assert_ne!(*slot, planned.slot, "the newest valid slot is never overwritten");
            assert!(planned.record.sequence > record.sequence);
        }
        self.exists = true;
        self.newest = Some((planned.slot, planned.record));
    }
}

/// A slot encoded and placed, ready to write.
#[derive(Debug)]
pub(super) struct PlannedSlot {
    slot: usize,
    offset: u64,
    bytes: Vec<u8>,
    record: MetaRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64) -> MetaRecord {
        MetaRecord {
            sequence,
            meta: Some(Bytes::from(format!("vote {sequence}"))),
            committed: Some(Committed { sequence: 3, payload: Bytes::from_static(b"c") }),
            log_end: sequence * 10,
        }
    }

    // Goal: slots round trip, with and without payloads. Method: encode and decode.
    #[test]
    fn meta_slot_round_trips() {
        assert_eq!(decode_slot(&encode_slot(&record(5))), Some(record(5)));
        let empty = MetaRecord { sequence: 1, meta: None, committed: None, log_end: 0 };
        assert_eq!(decode_slot(&encode_slot(&empty)), Some(empty));
    }

    // Goal: a slot cut before its last payload byte, or with a flipped byte, is rejected.
    // Method: cut at every length short of the payloads' end; flip every header and payload byte.
    #[test]
    fn meta_slot_detects_tears_and_flips() {
        let slot = encode_slot(&record(5));
        let used = META_HEADER_BYTES + "vote 5".len() + 1;
        for len in 0..used {
            assert_eq!(decode_slot(&slot[..len]), None, "length {len}");
        }
        for at in 0..used {
            let mut garbled = slot.clone();
            garbled[at] ^= 0x10;
            assert_eq!(decode_slot(&garbled), None, "byte {at}");
        }
    }
}
