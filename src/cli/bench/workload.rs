//! What the clients send: which key, which value, and in `mixed` whether the next request reads.
//! Everything here is pure and seeded, so a run's request sequence is repeatable.

use bytes::Bytes;

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny seeded generator, enough to pick keys and
/// operations, so the benchmark needs no RNG crate and every run with the same seed repeats.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (Lemire's multiply-shift; the bias is below 2^-64 per draw).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "a range to draw from is not empty");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A number in `[0, 1)` with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The keys a run touches: `count` keys of exactly `key_size` bytes each, the prefix followed by
/// the key's number in decimal, zero-padded (`bench/000042`). Decimal digits keep every key valid
/// UTF-8 and safe in a URL path, so no key needs escaping for either system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
    count: u64,
    /// Digits after the prefix: `key_size - prefix.len()`.
    width: usize,
}

impl KeySpace {
    pub fn new(prefix: &str, count: u64, key_size: usize) -> Result<KeySpace, String> {
        if let Some(bad) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || "/-_.".contains(*c))) {
            return Err(format!("--key-prefix may hold only ASCII letters, digits and / - _ . (found {bad:?})"));
        }
        if count == 0 {
            return Err("--key-space must be at least 1".to_string());
        }
        let digits = (count - 1).checked_ilog10().map_or(1, |log| log as usize + 1);
        let needed = prefix.len() + digits;
        if key_size < needed {
            return Err(format!(
                "--key-size {key_size} is too small: {count} keys need {needed} bytes \
                 ({} of prefix and {digits} digits)",
                prefix.len()
            ));
        }
        Ok(KeySpace { prefix: prefix.to_string(), count, width: key_size - prefix.len() })
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key numbered `index` (`index < count`).
    pub fn key(&self, index: u64) -> String {
        assert!(index < self.count, "key {index} is outside a key space of {}", self.count);
        format!("{}{index:0width$}", self.prefix, width = self.width)
    }
}

/// How each request's key is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrder {
    /// Uniformly at random, from each client's own seeded generator.
    Random,
    /// Request number modulo the key space, as etcd's `--sequential-keys`.
    Sequential,
}

/// One kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Put,
    Get,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
        }
    }
}

/// Which operations a run sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mix {
    Puts,
    Gets,
    /// Reads with this probability (in `[0, 1]`), writes otherwise.
    Mixed {
        read_ratio: f64,
    },
}

/// What one client sends next, drawn from its own generator.
pub struct Picker {
    rng: SplitMix64,
    order: KeyOrder,
    mix: Mix,
}

impl Picker {
    /// The picker of client `client`: each client's generator is derived from the run's seed and
    /// its number, so clients do not send the same sequence.
    pub fn new(seed: u64, client: u32, order: KeyOrder, mix: Mix) -> Picker {
        let mut mixer = SplitMix64::new(seed ^ (u64::from(client) << 32));
        Picker { rng: SplitMix64::new(mixer.next_u64()), order, mix }
    }

    /// The operation and key number of the run's request number `sequence`.
    pub fn next(&mut self, sequence: u64, keys: &KeySpace) -> (Op, u64) {
        let op = match self.mix {
            Mix::Puts => Op::Put,
            Mix::Gets => Op::Get,
            Mix::Mixed { read_ratio } if self.rng.unit() < read_ratio => Op::Get,
            Mix::Mixed { .. } => Op::Put,
        };
        let key = match self.order {
            KeyOrder::Random => self.rng.below(keys.count()),
            KeyOrder::Sequential => sequence % keys.count(),
        };
        (op, key)
    }
}

/// A value of `size` printable bytes: valid UTF-8, so cairn stores and echoes it as a JSON
/// string (no base64 on its side), and the same bytes go to etcd.
pub fn value(size: usize) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    Bytes::from((0..size).map(|i| ALPHABET[i % ALPHABET.len()]).collect::<Vec<u8>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_exactly_the_key_size_and_keep_their_prefix() {
        let keys = KeySpace::new("bench/", 1000, 12).unwrap();
        assert_eq!(keys.key(0), "bench/000000");
        assert_eq!(keys.key(999), "bench/000999");
        assert!((0..1000).all(|index| keys.key(index).len() == 12));
        assert_eq!(KeySpace::new("", 1, 8).unwrap().key(0), "00000000");
    }

    #[test]
    fn a_key_size_too_small_for_the_key_space_is_refused_with_the_size_needed() {
        let error = KeySpace::new("k", 1001, 4).unwrap_err();
        assert!(error.contains("need 5 bytes"), "{error}");
        assert!(KeySpace::new("k", 1000, 4).is_ok());
        assert!(KeySpace::new("", 10, 1).is_ok());
        assert!(KeySpace::new("", 11, 1).is_err());
    }

    #[test]
    fn an_empty_key_space_and_prefixes_needing_escapes_are_refused() {
        assert!(KeySpace::new("", 0, 8).unwrap_err().contains("--key-space"));
        assert!(KeySpace::new("a b", 1, 8).unwrap_err().contains("--key-prefix"));
        assert!(KeySpace::new("a?", 1, 8).is_err());
        assert!(KeySpace::new("a/b-c_d.e", 1, 12).is_ok());
    }

    #[test]
    fn sequential_keys_follow_the_request_number_around_the_key_space() {
        let keys = KeySpace::new("", 3, 1).unwrap();
        let mut picker = Picker::new(7, 0, KeyOrder::Sequential, Mix::Puts);
        let picked: Vec<u64> = (0..7).map(|sequence| picker.next(sequence, &keys).1).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn random_keys_stay_in_the_key_space_and_cover_it() {
        let keys = KeySpace::new("", 10, 2).unwrap();
        let mut picker = Picker::new(7, 3, KeyOrder::Random, Mix::Gets);
        let mut seen = [0u32; 10];
        for sequence in 0..10_000 {
            let (op, key) = picker.next(sequence, &keys);
            assert_eq!(op, Op::Get);
            seen[key as usize] += 1;
        }
        assert!(seen.iter().all(|&count| (800..1200).contains(&count)), "{seen:?}");
    }

    #[test]
    fn the_same_seed_and_client_repeat_the_same_requests_and_clients_differ() {
        let keys = KeySpace::new("", 1000, 3).unwrap();
        let draw = |client| {
            let mut picker = Picker::new(42, client, KeyOrder::Random, Mix::Mixed { read_ratio: 0.5 });
            (0..20).map(|sequence| picker.next(sequence, &keys)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn the_read_ratio_sets_the_share_of_reads() {
        let keys = KeySpace::new("", 1, 1).unwrap();
        let reads = |read_ratio| {
            let mut picker = Picker::new(1, 0, KeyOrder::Random, Mix::Mixed { read_ratio });
            (0..10_000).filter(|&sequence| picker.next(sequence, &keys).0 == Op::Get).count()
        };
        assert_eq!(reads(0.0), 0);
        assert_eq!(reads(1.0), 10_000);
        assert!((8_800..9_200).contains(&reads(0.9)), "{}", reads(0.9));
    }

    #[test]
    fn values_have_the_asked_size_and_are_printable() {
        assert_eq!(value(0).len(), 0);
        let value = value(256);
        assert_eq!(value.len(), 256);
        assert!(value.iter().all(u8::is_ascii_alphanumeric));
    }
}
