//! Deserializers for the store's `imbl` collections that do not trust a declared length.
//!
//! serde's own collections reserve at most 1 MiB up front whatever length the input declares
//! (`size_hint::cautious`) and grow as elements actually arrive. imbl's reserve the declared
//! length in full, so a snapshot whose map declared 2^50 entries aborted the process before a
//! single entry was read. These build the same collections with serde's caution; use them with
//! `#[serde(deserialize_with = "…")]` on every `imbl` field.

use std::fmt;
use std::marker::PhantomData;

use imbl::{OrdMap, Vector};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The most bytes reserved before the elements that fill them have been read.
const RESERVED_BYTES_MAX: usize = 1024 * 1024;

fn cautious_capacity<T>(declared: Option<usize>) -> usize {
    declared.unwrap_or(0).min(RESERVED_BYTES_MAX / std::mem::size_of::<T>().max(1))
}

/// An `OrdMap`, reserving at most [`RESERVED_BYTES_MAX`] before its entries arrive.
pub fn ord_map<'de, D, K, V>(deserializer: D) -> Result<OrdMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    struct Entries<K, V>(PhantomData<(K, V)>);

    impl<'de, K: Deserialize<'de> + Ord + Clone, V: Deserialize<'de> + Clone> Visitor<'de> for Entries<K, V> {
        type Value = OrdMap<K, V>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<OrdMap<K, V>, A::Error> {
            let mut entries = Vec::with_capacity(cautious_capacity::<(K, V)>(access.size_hint()));
            while let Some(entry) = access.next_entry()? {
                entries.push(entry);
            }
            Ok(OrdMap::from(entries))
        }
    }

    deserializer.deserialize_map(Entries(PhantomData))
}

/// A `Vector`, reserving at most [`RESERVED_BYTES_MAX`] before its elements arrive.
pub fn vector<'de, D, T>(deserializer: D) -> Result<Vector<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Clone,
{
    struct Elements<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de> + Clone> Visitor<'de> for Elements<T> {
        type Value = Vector<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Vector<T>, A::Error> {
            let mut elements = Vec::with_capacity(cautious_capacity::<T>(access.size_hint()));
            while let Some(element) = access.next_element()? {
                elements.push(element);
            }
            Ok(Vector::from(elements))
        }
    }

    deserializer.deserialize_seq(Elements(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::bounded_decode::decode_slice;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Collections {
        #[serde(deserialize_with = "ord_map")]
        map: OrdMap<u64, String>,
        #[serde(deserialize_with = "vector")]
        list: Vector<u64>,
    }

    #[test]
    fn collections_round_trip() {
        let value =
            Collections { map: (0..1000u64).map(|i| (i, i.to_string())).collect(), list: (0..1000u64).collect() };
        let bytes = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
        assert_eq!(decode_slice::<Collections>(&bytes).unwrap().0, value);
    }

    #[test]
    fn a_declared_length_of_2_to_the_50_reserves_nothing_unread() {
        for prefix in [vec![], vec![0]] {
            // The map's (or, after an empty map, the vector's) length, then one entry at most.
            let mut bytes = prefix;
            bytes.push(0xFD);
            bytes.extend_from_slice(&(1u64 << 50).to_le_bytes());
            bytes.extend_from_slice(&[1, 1, b'x']);
            assert!(decode_slice::<Collections>(&bytes).is_err());
        }
    }
}
