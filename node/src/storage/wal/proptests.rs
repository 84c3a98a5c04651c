//! Property tests: random and mutated bytes through every WAL decoder (records, segment
//! headers, meta slots, whole-segment recovery) never panic and never read or claim more than
//! they were given. Case counts are CI-sized; `PROPTEST_CASES=100000 cargo test -p cairn-node
//! proptests` runs them longer.

use std::path::{Path, PathBuf};

use proptest::collection::vec;
use proptest::prelude::*;

use super::format::{Record, decode_record, decode_segment_header, encode_record, encode_segment_header};
use super::meta::{META_SLOT_BYTES, MetaRecord, decode_slot, encode_slot};
use super::recovery::recover_log;
use super::state::{Committed, segment_path};
use crate::storage::{Disk, SimDisk};

/// A valid segment holding `payloads` as entries from `first`, then a committed marker.
fn segment(first: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = encode_segment_header(first);
    for (offset, payload) in payloads.iter().enumerate() {
        encode_record(&mut bytes, &Record::Entry { index: first + offset as u64, payload });
    }
    encode_record(&mut bytes, &Record::Committed { sequence: 1, payload: b"c" });
    bytes
}

/// Applies `(position, xor mask)` flips, positions taken modulo the length.
fn mutate(bytes: &mut [u8], flips: &[(usize, u8)]) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    for &(at, mask) in flips {
        bytes[at % len] ^= mask;
    }
}

proptest! {
    // Goal: any bytes decode to a record no longer than the input, or to an error.
    #[test]
    fn random_bytes_never_panic_the_record_decoder(bytes in vec(any::<u8>(), 0..4096)) {
        if let Ok((record, len)) = decode_record(&bytes) {
            prop_assert!(len <= bytes.len());
            prop_assert_eq!(record.encoded_len(), len);
        }
        let _ = decode_segment_header(&bytes);
    }

    // Goal: flipped bits in a valid record (its length field included) are caught or decode
    // within the buffer. Method: encode, flip, decode.
    #[test]
    fn mutated_records_never_panic_or_overrun(
        payload in vec(any::<u8>(), 0..600),
        flips in vec((any::<usize>(), 1..=u8::MAX), 1..4),
    ) {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, &Record::Entry { index: 7, payload: &payload });
        mutate(&mut bytes, &flips);
        if let Ok((_, len)) = decode_record(&bytes) {
            prop_assert!(len <= bytes.len());
        }
    }

    // Goal: random and mutated meta slots are rejected or decode to payloads within their
    // limits, never a panic.
    #[test]
    fn random_and_mutated_meta_slots_never_panic(
        random in vec(any::<u8>(), 0..META_SLOT_BYTES + 64),
        meta in vec(any::<u8>(), 0..200),
        flips in vec((any::<usize>(), 1..=u8::MAX), 1..4),
    ) {
        let _ = decode_slot(&random);
        let record = MetaRecord {
            sequence: 3,
            meta: Some(meta.into()),
            committed: Some(Committed { sequence: 2, payload: bytes::Bytes::from_static(b"c") }),
            log_end: 9,
        };
        let mut slot = encode_slot(&record);
        mutate(&mut slot, &flips);
        if let Some(decoded) = decode_slot(&slot) {
            prop_assert!(decoded.meta.map_or(0, |meta| meta.len()) < META_SLOT_BYTES);
        }
    }

    // Goal: recovery of a damaged or garbage segment either succeeds with a consecutive log
    // or refuses with an error; it never panics. Method: write a valid segment, mutate it (or
    // cut it, or append garbage), recover with a random recorded log end.
    #[test]
    fn damaged_segments_never_panic_recovery(
        payloads in vec(vec(any::<u8>(), 0..80), 0..12),
        flips in vec((any::<usize>(), 1..=u8::MAX), 0..3),
        cut in any::<usize>(),
        garbage in vec(any::<u8>(), 0..64),
        log_end in 0u64..20,
    ) {
        let disk = SimDisk::new(1);
        let dir = PathBuf::from("/wal");
        disk.create_dir_all(&dir).unwrap();
        let mut bytes = segment(3, &payloads);
        mutate(&mut bytes, &flips);
        bytes.truncate(cut % (bytes.len() + 1));
        bytes.extend_from_slice(&garbage);
        let path: &Path = &segment_path(&dir, 3);
        disk.write_at(path, 0, &bytes).unwrap();
        if let Ok(log) = recover_log(&disk, &dir, log_end) {
            let next = log.positions.next_index();
            prop_assert!(log.segments.is_empty() || next >= log_end, "a log short of its recorded end must be refused");
            prop_assert!(next <= 3 + payloads.len() as u64);
        }
    }
}
