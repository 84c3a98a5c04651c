//! Test inputs an attacker or a damaged disk could produce, for the decoders' property tests:
//! random bytes, and valid encodings mutated the ways that broke decoders before (a length
//! prefix rewritten to 2^44, flipped bits, a cut-off tail).
//!
//! The case count is proptest's: 256 by default, `PROPTEST_CASES=100000` for a long run.

use proptest::prelude::*;
use proptest::sample::Index;

/// One change to a valid encoding.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// XORs the byte at an index with a non-zero mask.
    Flip(Index, u8),
    /// Replaces the byte at an index (often a length or a tag) with a varint declaring `u64`.
    LyingLength(Index, u64),
    /// Inserts a varint declaring `u64` before an index.
    InsertLength(Index, u64),
    /// Cuts the bytes off from an index on.
    Truncate(Index),
}

/// A declared length: huge ones (the probe's 2^44, beyond `isize::MAX`), and plausible ones.
fn declared_length() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64 << 44), Just(u64::MAX), (1u64 << 62)..=u64::MAX, (1u64 << 16)..(1u64 << 40), 0u64..1024,]
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..=u8::MAX).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        (any::<Index>(), declared_length()).prop_map(|(at, length)| Mutation::LyingLength(at, length)),
        (any::<Index>(), declared_length()).prop_map(|(at, length)| Mutation::InsertLength(at, length)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// bincode's varint encoding of `value` (standard configuration).
pub fn varint(value: u64) -> Vec<u8> {
    match value {
        0..=250 => vec![value as u8],
        251..=0xFFFF => [vec![0xFB], (value as u16).to_le_bytes().to_vec()].concat(),
        0x1_0000..=0xFFFF_FFFF => [vec![0xFC], (value as u32).to_le_bytes().to_vec()].concat(),
        _ => [vec![0xFD], value.to_le_bytes().to_vec()].concat(),
    }
}

pub fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        match mutation {
            Mutation::Flip(at, mask) => {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            Mutation::LyingLength(at, length) => {
                let at = at.index(bytes.len());
                bytes.splice(at..at + 1, varint(*length));
            }
            Mutation::InsertLength(at, length) => {
                let at = at.index(bytes.len());
                bytes.splice(at..at, varint(*length));
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        }
    }
    bytes
}

/// Random bytes up to `max_len` long, or one of `valid` mutated one to four times.
pub fn hostile(valid: Vec<Vec<u8>>, max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..max_len),
        3 => (proptest::sample::select(valid), proptest::collection::vec(mutation(), 1..=4))
            .prop_map(|(bytes, mutations)| apply(&bytes, &mutations)),
    ]
}

#[test]
fn varints_match_bincode() {
    for value in [0u64, 250, 251, 0xFFFF, 0x1_0000, 0xFFFF_FFFF, 1 << 44, u64::MAX] {
        let encoded = bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap();
        assert_eq!(varint(value), encoded, "{value}");
    }
}
