//! The byte layout of segments: a header, then records. Pure functions, no I/O.
//!
//! Segment header ([`SEGMENT_HEADER_BYTES`]):
//! `[magic 8 = "CAIRNWAL"][format u32][first_index u64][crc32c u32]`, the CRC covering the
//! bytes before it. The file is named after `first_index`, so a misnamed or misplaced segment
//! is caught.
//!
//! Record: `[len u32][crc32c u32][kind u8][body: len bytes]`, little-endian, the CRC covering
//! `len`, `kind` and `body` (in that order). Bodies:
//! - [`RecordKind::Entry`]: `[index u64][payload]`;
//! - [`RecordKind::Committed`]: `[sequence u64][payload]`, the sequence ordering markers
//!   against each other and against the copy kept in the meta file.

use std::fmt;

/// Identifies a segment file.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"CAIRNWAL";
/// Bumped on any incompatible change to segments or records.
pub(super) const FORMAT_VERSION: u32 = 1;
pub(super) const SEGMENT_HEADER_BYTES: u64 = 8 + 4 + 8 + 4;
pub(super) const RECORD_HEADER_BYTES: usize = 4 + 4 + 1;
/// Entry and committed bodies start with a u64 (index or sequence).
const BODY_PREFIX_BYTES: usize = 8;
/// The largest record body; a larger `len` on disk is garbage, never a record.
pub(super) const RECORD_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The largest entry payload the WAL accepts; callers must reject bigger ones before appending.
pub const ENTRY_PAYLOAD_BYTES_MAX: usize = RECORD_BODY_BYTES_MAX - BODY_PREFIX_BYTES;

const _: () = assert!(RECORD_BODY_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(ENTRY_PAYLOAD_BYTES_MAX > 0);
const _: () = assert!(SEGMENT_HEADER_BYTES as usize >= RECORD_HEADER_BYTES);

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecordKind {
    Entry = 1,
    Committed = 2,
}

/// A decoded record, borrowing its payload from the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Record<'a> {
    /// A log entry.
    Entry { index: u64, payload: &'a [u8] },
    /// A committed marker; the newest `sequence` wins.
    Committed { sequence: u64, payload: &'a [u8] },
}

/// Why bytes are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecordError {
    /// The buffer ends inside the record: a torn write if at the end of the log.
    Truncated,
    /// The length field is larger than any record: garbage.
    TooLong,
    /// The checksum does not match: torn, garbled or corrupted bytes.
    Checksum,
    /// The checksum matches but the record makes no sense: a bug or a newer format, never a
    /// torn write.
    Malformed,
}

impl RecordError {
    /// Whether the bytes can be an interrupted or garbled write rather than a well-formed
    /// record this version cannot read.
    pub(super) fn is_damage(self) -> bool {
        self != RecordError::Malformed
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordError::Truncated => "record cut short",
            RecordError::TooLong => "record length out of range",
            RecordError::Checksum => "record checksum mismatch",
            RecordError::Malformed => "record well-formed but not understood",
        })
    }
}

impl Record<'_> {
    const fn kind(&self) -> RecordKind {
        match self {
            Record::Entry { .. } => RecordKind::Entry,
            Record::Committed { .. } => RecordKind::Committed,
        }
    }

    const fn prefix_and_payload(&self) -> (u64, &[u8]) {
        match *self {
            Record::Entry { index, payload } => (index, payload),
            Record::Committed { sequence, payload } => (sequence, payload),
        }
    }

    /// The encoded size of this record.
    pub(super) const fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + BODY_PREFIX_BYTES + self.prefix_and_payload().1.len()
    }
}

/// Appends the encoding of `record` to `buffer`, returning its length.
pub(super) fn encode_record(buffer: &mut Vec<u8>, record: &Record<'_>) -> usize {
    let (prefix, payload) = record.prefix_and_payload();
    let body_len = BODY_PREFIX_BYTES + payload.len();
    assert!(body_len <= RECORD_BODY_BYTES_MAX, "record body of {body_len} bytes is over the limit");
    let start = buffer.len();
    let len_bytes = (body_len as u32).to_le_bytes();
    let kind = record.kind() as u8;
    let prefix_bytes = prefix.to_le_bytes();
    let mut crc = crc32c::crc32c(&len_bytes);
    crc = crc32c::crc32c_append(crc, &[kind]);
    crc = crc32c::crc32c_append(crc, &prefix_bytes);
    crc = crc32c::crc32c_append(crc, payload);
    buffer.extend_from_slice(&len_bytes);
    buffer.extend_from_slice(&crc.to_le_bytes());
    buffer.push(kind);
    buffer.extend_from_slice(&prefix_bytes);
    buffer.extend_from_slice(payload);
    let encoded = &buffer[start..];
    debug_assert_eq!(decode_record(encoded), Ok((*record, encoded.len())));
    encoded.len()
}

/// Decodes the record at the start of `bytes`, returning it and its encoded length.
pub(super) fn decode_record(bytes: &[u8]) -> Result<(Record<'_>, usize), RecordError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(RecordError::Truncated);
    }
    let body_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    if body_len > RECORD_BODY_BYTES_MAX {
        return Err(RecordError::TooLong);
    }
    let total = RECORD_HEADER_BYTES + body_len;
    if bytes.len() < total {
        return Err(RecordError::Truncated);
    }
    let stored_crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..4]), &bytes[8..total]);
    if crc != stored_crc {
        return Err(RecordError::Checksum);
    }
    let body = &bytes[RECORD_HEADER_BYTES..total];
    if body.len() < BODY_PREFIX_BYTES {
        return Err(RecordError::Malformed);
    }
    let prefix = u64::from_le_bytes(body[..BODY_PREFIX_BYTES].try_into().expect("8 bytes"));
    let payload = &body[BODY_PREFIX_BYTES..];
    let record = match bytes[8] {
        kind if kind == RecordKind::Entry as u8 => Record::Entry { index: prefix, payload },
        kind if kind == RecordKind::Committed as u8 => Record::Committed { sequence: prefix, payload },
        _ => return Err(RecordError::Malformed),
    };
    Ok((record, total))
}

/// Why a segment header is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeaderError {
    /// Shorter than a header: its first write never completed.
    Truncated,
    /// Not a cairn segment, or a garbled header.
    Magic,
    /// The checksum does not match.
    Checksum,
    /// A valid header of a format this version does not read.
    Version(u32),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Truncated => f.write_str("segment header cut short"),
            HeaderError::Magic => f.write_str("segment magic mismatch"),
            HeaderError::Checksum => f.write_str("segment header checksum mismatch"),
            HeaderError::Version(version) => write!(f, "unknown segment format version {version}"),
        }
    }
}

/// The header of a segment whose first entry is `first_index`.
pub(super) fn encode_segment_header(first_index: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    header.extend_from_slice(&SEGMENT_MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(header.len() as u64, SEGMENT_HEADER_BYTES);
    debug_assert_eq!(decode_segment_header(&header), Ok(first_index));
    header
}

/// The first index a segment header declares.
pub(super) fn decode_segment_header(bytes: &[u8]) -> Result<u64, HeaderError> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES as usize) else {
        return Err(HeaderError::Truncated);
    };
    if header[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::Magic);
    }
    let stored_crc = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
    if crc32c::crc32c(&header[0..20]) != stored_crc {
        return Err(HeaderError::Checksum);
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(u64::from_le_bytes(header[12..20].try_into().expect("8 bytes")))
}

/// The file name of the segment starting at `first_index`; zero-padded so names sort by index.
pub(super) fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}.wal")
}

/// The first index encoded in a segment file name, if `name` is one.
pub(super) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: records decode to what was encoded, back to back. Method: encode an entry and a
    // committed marker into one buffer and decode them in turn.
    #[test]
    fn records_round_trip() {
        let mut buffer = Vec::new();
        let entry = Record::Entry { index: 42, payload: b"hello" };
        let marker = Record::Committed { sequence: 7, payload: b"" };
        let entry_len = encode_record(&mut buffer, &entry);
        encode_record(&mut buffer, &marker);
        assert_eq!(decode_record(&buffer), Ok((entry, entry_len)));
        assert_eq!(decode_record(&buffer[entry_len..]), Ok((marker, marker.encoded_len())));
        assert_eq!(entry.encoded_len(), entry_len);
    }

    // Goal: every single-byte corruption and every truncation is detected as damage. Method:
    // flip each byte of an encoded record in turn, and cut it at every length.
    #[test]
    fn record_corruption_and_truncation_are_detected() {
        let mut buffer = Vec::new();
        encode_record(&mut buffer, &Record::Entry { index: 3, payload: b"payload" });
        for at in 0..buffer.len() {
            let mut garbled = buffer.clone();
            garbled[at] ^= 0x40;
            let error = decode_record(&garbled).unwrap_err();
            assert!(error.is_damage(), "byte {at}: {error}");
        }
        for len in 0..buffer.len() {
            assert_eq!(decode_record(&buffer[..len]), Err(RecordError::Truncated), "length {len}");
        }
    }

    // Goal: a record whose checksum matches but whose kind is unknown is not mistaken for a torn
    // write. Method: change the kind and recompute the CRC.
    #[test]
    fn unknown_record_kind_is_malformed_not_damage() {
        let mut buffer = Vec::new();
        encode_record(&mut buffer, &Record::Entry { index: 3, payload: b"x" });
        buffer[8] = 9;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&buffer[0..4]), &buffer[8..]);
        buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_record(&buffer), Err(RecordError::Malformed));
    }

    // Goal: segment headers round trip and reject damage. Method: encode, decode, then corrupt
    // the magic, the index and the length.
    #[test]
    fn segment_header_round_trips_and_detects_damage() {
        let header = encode_segment_header(1234);
        assert_eq!(decode_segment_header(&header), Ok(1234));
        let mut garbled = header.clone();
        garbled[0] = b'X';
        assert_eq!(decode_segment_header(&garbled), Err(HeaderError::Magic));
        let mut garbled = header.clone();
        garbled[13] ^= 1;
        assert_eq!(decode_segment_header(&garbled), Err(HeaderError::Checksum));
        assert_eq!(decode_segment_header(&header[..10]), Err(HeaderError::Truncated));
    }

    // Goal: names sort numerically and parse back. Method: compare and parse a few names.
    #[test]
    fn segment_file_names_sort_by_index_and_parse_back() {
        assert!(segment_file_name(9) < segment_file_name(10));
        assert_eq!(parse_segment_file_name(&segment_file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_file_name("meta"), None);
        assert_eq!(parse_segment_file_name("12.wal"), None);
    }
}
