//! bincode decoding that never trusts a declared length.
//!
//! bincode allocates a string or byte buffer of the length its prefix declares before it reads
//! the bytes. Without a limit, a few hostile bytes declaring 2^44 abort the process (the
//! allocation fails), and a length above `isize::MAX` panics ("capacity overflow"). With a limit
//! in its configuration, bincode adds up the in-memory size of everything it decodes (a string's
//! length, 8 bytes for a `u64` however short its varint, 4 for an enum tag) and refuses before
//! allocating once the sum would pass the limit. Sequences and maps decoded through serde claim
//! nothing: serde's own collections reserve at most 1 MiB whatever length is declared
//! (`size_hint::cautious`) and grow only as elements are actually read, so they are bounded by
//! the input. A collection whose `Deserialize` reserves the declared length in full (imbl's do)
//! is not; such fields deserialize through `store::cautious`.
//!
//! # Choosing the limit
//! No encoded byte makes bincode claim more than [`CLAIM_PER_ENCODED_BYTE_MAX`] bytes (a `u128`
//! in a one-byte varint claims 16; a string claims its length plus 8 for a prefix of at least one
//! byte). So a limit of 16 × the input's length never refuses a valid encoding, whatever the
//! type, and needs no per-message reasoning that a later field could break. bincode's limit is a
//! compile-time constant, so [`decode_slice`] and [`decode_reader`] use the smallest limit of a
//! ladder (64 KiB, 1 MiB, 16 MiB, 128 MiB, 1 GiB, 8 GiB, 64 GiB, 1 TiB) that covers 16 × the
//! input's length: a lying input of `n` bytes makes the decoder allocate at most
//! `max(64 KiB, 256 × n)`, and a peer frame (at most 64 MiB) at most 1 GiB, only for a moment
//! (the read of the missing bytes fails at once and the buffer is freed; memory untouched by a
//! read is never even mapped in). [`decode_slice_within`] takes an explicit limit for callers
//! that know a tighter one (a handshake frame, a datagram).

use std::io::Read;

use bincode::config::{Configuration, Limit};
use bincode::error::DecodeError;
use serde::de::DeserializeOwned;

/// Calls `$decode!(limit)` with the smallest rung of the ladder that covers
/// [`CLAIM_PER_ENCODED_BYTE_MAX`] × `$input_len`; an input too long for the top rung (1 TiB,
/// so inputs above 64 GiB) is refused as over the limit. Rungs are 16 apart up to 16 MiB and 8 apart above, so that the
/// largest peer frame's rung is 1 GiB.
macro_rules! on_ladder {
    ($input_len:expr, $decode:ident) => {{
        let claim = ($input_len).saturating_mul(CLAIM_PER_ENCODED_BYTE_MAX);
        if claim <= 1 << 16 {
            $decode!(1 << 16)
        } else if claim <= 1 << 20 {
            $decode!(1 << 20)
        } else if claim <= 1 << 24 {
            $decode!(1 << 24)
        } else if claim <= 1 << 27 {
            $decode!(1 << 27)
        } else if claim <= 1 << 30 {
            $decode!(1 << 30)
        } else if claim <= 1 << 33 {
            $decode!(1 << 33)
        } else if claim <= 1 << 36 {
            $decode!(1 << 36)
        } else if claim <= 1 << 40 {
            $decode!(1 << 40)
        } else {
            Err(DecodeError::LimitExceeded)
        }
    }};
}

/// The most bytes bincode claims against its limit for one encoded byte.
pub const CLAIM_PER_ENCODED_BYTE_MAX: usize = 16;

/// bincode's standard configuration (varint integers, little endian) with a limit of `LIMIT`
/// in-memory bytes per decode; encoders use the same configuration without the limit.
pub const fn config<const LIMIT: usize>()
-> Configuration<bincode::config::LittleEndian, bincode::config::Varint, Limit<LIMIT>> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Decodes a `T` from the start of `bytes` with an explicit limit; returns it and the bytes used.
pub fn decode_slice_within<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<(T, usize), DecodeError> {
    bincode::serde::decode_from_slice(bytes, config::<LIMIT>())
}

/// Decodes a `T` from the start of `bytes`, with the ladder's limit for `bytes.len()` (see the
/// module documentation); returns it and the bytes used.
pub fn decode_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), DecodeError> {
    macro_rules! within {
        ($limit:expr) => {
            decode_slice_within::<T, { $limit }>(bytes)
        };
    }
    on_ladder!(bytes.len(), within)
}

/// Decodes a `T` from `reader`, which holds `input_len` bytes, with the ladder's limit for
/// that length (see the module documentation).
pub fn decode_reader<T: DeserializeOwned, R: Read>(mut reader: R, input_len: u64) -> Result<T, DecodeError> {
    macro_rules! within {
        ($limit:expr) => {
            bincode::serde::decode_from_std_read(&mut reader, config::<{ $limit }>())
        };
    }
    let input_len = usize::try_from(input_len).unwrap_or(usize::MAX);
    on_ladder!(input_len, within)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string whose prefix declares `declared` bytes, followed by a few real ones.
    fn lying_string(declared: u64) -> Vec<u8> {
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&declared.to_le_bytes());
        bytes.extend_from_slice(b"abc");
        bytes
    }

    #[test]
    fn a_declared_length_beyond_the_limit_is_refused_before_allocating() {
        for declared in [1 << 44, u64::MAX, (1 << 16) + 1] {
            let error = decode_slice::<String>(&lying_string(declared)).unwrap_err();
            assert!(matches!(error, DecodeError::LimitExceeded), "{declared}: {error:?}");
        }
        let mut reader = &lying_string(1 << 44)[..];
        assert!(matches!(decode_reader::<String, _>(&mut reader, 12), Err(DecodeError::LimitExceeded)));
    }

    #[test]
    fn the_densest_valid_encodings_fit_the_ladder() {
        // u128s in one-byte varints claim 16 bytes per encoded byte; empty strings 8.
        let dense: Vec<u128> = vec![7; 100_000];
        let bytes = bincode::serde::encode_to_vec(&dense, bincode::config::standard()).unwrap();
        let (decoded, used) = decode_slice::<Vec<u128>>(&bytes).unwrap();
        assert_eq!((decoded, used), (dense, bytes.len()));
        let empties: Vec<String> = vec![String::new(); 100_000];
        let bytes = bincode::serde::encode_to_vec(&empties, bincode::config::standard()).unwrap();
        assert_eq!(decode_reader::<Vec<String>, _>(&bytes[..], bytes.len() as u64).unwrap(), empties);
    }

    #[test]
    fn the_densest_encodings_decode_on_either_side_of_each_rung() {
        for rung in [1usize << 16, 1 << 20, 1 << 24] {
            let edge = rung / CLAIM_PER_ENCODED_BYTE_MAX;
            for elements in [edge - 10, edge - 5, edge, edge + 5] {
                let dense: Vec<u128> = vec![1; elements];
                let bytes = bincode::serde::encode_to_vec(&dense, bincode::config::standard()).unwrap();
                assert_eq!(decode_slice::<Vec<u128>>(&bytes).unwrap().0.len(), elements, "{elements}");
            }
        }
    }

    #[test]
    fn an_explicit_limit_is_honoured() {
        let bytes = bincode::serde::encode_to_vec("a string of some length", bincode::config::standard()).unwrap();
        assert!(decode_slice_within::<String, 64>(&bytes).is_ok());
        assert!(matches!(decode_slice_within::<String, 16>(&bytes), Err(DecodeError::LimitExceeded)));
    }
}
