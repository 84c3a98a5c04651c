//! The bytes on the wire: foca's messages in bincode, wrapped in an envelope that names the
//! cluster and carries an HMAC-SHA256 tag.
//!
//! ```text
//! [magic "CG" | version 1][cluster id: u64 BE][tag: 32 bytes][foca packet]
//! ```
//! The tag covers the cluster id and the packet. Without a cluster secret it is all zeros, and
//! such a packet is only accepted by a node without a secret either.

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::hmac::{self, TAG_BYTES};
use crate::bounded_decode::{self, CLAIM_PER_ENCODED_BYTE_MAX};

const CONFIG: bincode::config::Configuration = bincode::config::standard();
const MAGIC: [u8; 3] = [b'C', b'G', 1];
/// Bytes the envelope adds in front of foca's packet.
pub const ENVELOPE_BYTES: usize = MAGIC.len() + 8 + TAG_BYTES;
/// The largest datagram sent or accepted, envelope included (fits a 1500-byte MTU).
pub const DATAGRAM_BYTES_MAX: usize = 1400;
/// The in-memory bytes one decode may claim. foca refuses a packet longer than its
/// `max_packet_size` (the datagram less the envelope) before decoding it, and every header,
/// member and fact is decoded from within one packet, so no valid one claims more than this
/// (see [`crate::bounded_decode`]); a lying length prefix is refused before anything is
/// allocated for it.
pub const DECODE_LIMIT: usize = CLAIM_PER_ENCODED_BYTE_MAX * DATAGRAM_BYTES_MAX;

/// Decodes a `T` from the start of `bytes` (part of one received packet) within [`DECODE_LIMIT`].
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), bincode::error::DecodeError> {
    bounded_decode::decode_slice_within::<T, DECODE_LIMIT>(bytes)
}

/// foca's codec: every header and member in bincode's standard configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct BincodeCodec;

/// A value that did not fit the buffer or did not decode. Foca drops the packet; nothing changed.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("the encoded value does not fit the packet")]
    BufferFull,
    #[error("cannot encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

fn encode<T: Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, CONFIG)?;
    if buf.remaining_mut() < bytes.len() {
        return Err(CodecError::BufferFull);
    }
    buf.put_slice(&bytes);
    Ok(())
}

fn decode<T: DeserializeOwned>(mut buf: impl Buf) -> Result<T, CodecError> {
    // foca always hands over one contiguous slice.
    let (value, used) = decode_prefix(buf.chunk())?;
    buf.advance(used);
    Ok(value)
}

impl<T: Serialize + DeserializeOwned> Codec<T> for BincodeCodec {
    type Error = CodecError;

    fn encode_header(&mut self, header: &Header<T>, buf: impl BufMut) -> Result<(), CodecError> {
        encode(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<T>, CodecError> {
        decode(buf)
    }

    fn encode_member(&mut self, member: &Member<T>, buf: impl BufMut) -> Result<(), CodecError> {
        encode(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<T>, CodecError> {
        decode(buf)
    }
}

/// Whether foca's `packet` is a `TurnUndead` (telling its target the cluster declared it down).
pub fn is_turn_undead<T: DeserializeOwned>(packet: &[u8]) -> bool {
    decode_prefix::<Header<T>>(packet).is_ok_and(|(header, _)| matches!(header.message, foca::Message::TurnUndead))
}

/// Why a received datagram was dropped before foca saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Too short or not a cairn gossip packet.
    Malformed,
    /// A packet of another cluster.
    ForeignCluster,
    /// The tag does not match: a wrong secret, or tampering.
    BadTag,
}

/// Seals and opens packets for one cluster.
#[derive(Clone)]
pub struct Envelope {
    cluster_id: u64,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("cluster_id", &self.cluster_id)
            .field("secret", &self.secret.is_some())
            .finish()
    }
}

impl Envelope {
    /// An envelope for the cluster `name`, authenticated with `secret` if there is one.
    pub fn new(name: &str, secret: Option<&[u8]>) -> Envelope {
        let digest = Sha256::digest(name.as_bytes());
        let cluster_id = u64::from_be_bytes(digest[..8].try_into().expect("a digest has 32 bytes"));
        Envelope { cluster_id, secret: secret.map(<[u8]>::to_vec) }
    }

    fn tag(&self, cluster: &[u8], packet: &[u8]) -> [u8; TAG_BYTES] {
        match &self.secret {
            Some(secret) => hmac::tag(secret, &[cluster, packet]),
            None => [0; TAG_BYTES],
        }
    }

    pub fn seal(&self, packet: &[u8]) -> Vec<u8> {
        let cluster = self.cluster_id.to_be_bytes();
        let mut sealed = Vec::with_capacity(ENVELOPE_BYTES + packet.len());
        sealed.extend_from_slice(&MAGIC);
        sealed.extend_from_slice(&cluster);
        sealed.extend_from_slice(&self.tag(&cluster, packet));
        sealed.extend_from_slice(packet);
        sealed
    }

    /// The foca packet inside `datagram`, if it belongs to this cluster and its tag checks.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Result<&'a [u8], Rejected> {
        if datagram.len() <= ENVELOPE_BYTES || datagram[..MAGIC.len()] != MAGIC {
            return Err(Rejected::Malformed);
        }
        let cluster = &datagram[MAGIC.len()..MAGIC.len() + 8];
        if cluster != self.cluster_id.to_be_bytes() {
            return Err(Rejected::ForeignCluster);
        }
        let (tag, packet) = datagram[MAGIC.len() + 8..].split_at(TAG_BYTES);
        if !hmac::tags_equal(tag, &self.tag(cluster, packet)) {
            return Err(Rejected::BadTag);
        }
        Ok(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_packet_opens_only_in_its_cluster_with_its_secret() {
        let ours = Envelope::new("cairn", Some(b"secret"));
        let sealed = ours.seal(b"hello");
        assert_eq!(ours.open(&sealed), Ok(&b"hello"[..]));
        assert_eq!(Envelope::new("other", Some(b"secret")).open(&sealed), Err(Rejected::ForeignCluster));
        assert_eq!(Envelope::new("cairn", Some(b"wrong")).open(&sealed), Err(Rejected::BadTag));
        assert_eq!(Envelope::new("cairn", None).open(&sealed), Err(Rejected::BadTag));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(ours.open(&tampered), Err(Rejected::BadTag));
        assert_eq!(ours.open(&sealed[..10]), Err(Rejected::Malformed));
    }

    #[test]
    fn without_secrets_packets_of_the_same_cluster_open() {
        let open = Envelope::new("cairn", None);
        assert_eq!(open.open(&open.seal(b"x")), Ok(&b"x"[..]));
        assert_eq!(Envelope::new("cairn", Some(b"s")).open(&open.seal(b"x")), Err(Rejected::BadTag));
    }
}
