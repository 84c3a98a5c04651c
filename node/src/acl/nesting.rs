//! `Command::Authorized` wraps another command. Nested wrappers mean nothing, but a hostile peer
//! could nest millions of them in one frame and overflow the decoder's stack (each level costs
//! two bytes), so the wrapped command is decoded with the wrapper itself refused: decoding
//! recurses at most once, whatever the input.

use std::cell::Cell;

use serde::{Deserialize, Deserializer};

use crate::command::Command;

thread_local! {
    /// Wrapped commands being decoded on this thread (decoding never awaits, so a decode runs
    /// on one thread from start to end).
    static WRAPPED_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Decodes the command inside `Command::Authorized`, refusing another wrapper inside it.
pub fn flat_command<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Box<Command>, D::Error> {
    let depth = WRAPPED_DEPTH.with(Cell::get);
    if depth > 0 {
        return Err(serde::de::Error::custom("an authorized command cannot wrap another"));
    }
    let _inside = DepthGuard::enter();
    Command::deserialize(deserializer).map(Box::new)
}

struct DepthGuard;

impl DepthGuard {
    fn enter() -> DepthGuard {
        WRAPPED_DEPTH.with(|depth| depth.set(depth.get() + 1));
        DepthGuard
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        WRAPPED_DEPTH.with(|depth| depth.set(depth.get() - 1));
    }
}

#[cfg(test)]
mod tests {
    use crate::acl::Credential;
    use crate::command::{Command, Precondition};

    fn encode(command: &Command) -> Vec<u8> {
        bincode::serde::encode_to_vec(command, bincode::config::standard()).unwrap()
    }

    fn decode(bytes: &[u8]) -> Option<Command> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).ok().map(|(command, _)| command)
    }

    #[test]
    fn a_wrapper_decodes_and_a_nested_one_is_refused_without_recursing() {
        let put = Command::Put { key: "k".into(), value: "v".into(), labels: None, expect: Precondition::Always };
        let wrapped = Command::Authorized { credential: Credential::Anonymous, command: Box::new(put.clone()) };
        assert_eq!(decode(&encode(&wrapped)), Some(wrapped.clone()));
        let nested = Command::Authorized { credential: Credential::Anonymous, command: Box::new(wrapped.clone()) };
        assert_eq!(decode(&encode(&nested)), None);

        // A million levels, as a hostile frame would declare them: refused at the second, so
        // the decoder's stack never grows with the input.
        let (put_bytes, wrapped_bytes) = (encode(&put), encode(&wrapped));
        let level = &wrapped_bytes[..wrapped_bytes.len() - put_bytes.len()];
        let mut hostile = level.repeat(1_000_000);
        hostile.extend_from_slice(&put_bytes);
        assert_eq!(decode(&hostile), None);
    }
}
