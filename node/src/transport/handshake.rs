//! The peer handshake: each side proves it knows the cluster secret over a nonce the other side
//! just chose, so a recorded handshake never replays, and the caller's node id is bound into the
//! proof, so a node cannot claim another's id.
//!
//! ```text
//! caller                                   answerer
//!   Hello { protocol, from, nonce_c }  ──▶
//!                                      ◀──  Challenge { nonce_a, proof_a = HMAC(k, "answer", from, nonce_c, nonce_a) }
//!   Proof { proof_c = HMAC(k, "call", from, nonce_a, nonce_c) }  ──▶
//! ```
//! Without a cluster secret the key is empty: anyone can compute the proofs, and the handshake
//! only checks the protocol version (the node warns about this at start). Either side closes the
//! connection on a wrong proof. The frames after the handshake are not authenticated one by one;
//! that is what TLS adds.

use serde::{Deserialize, Serialize};

use super::message::PROTOCOL;
use crate::command::NodeId;
use crate::gossip::hmac::{self, TAG_BYTES};
use crate::rt;

/// Bytes of a handshake nonce.
const NONCE_BYTES: usize = 32;
/// The largest handshake frame either side accepts: a few hundred bytes are enough, and nothing
/// larger is read from a connection that has not proven itself.
pub(super) const HANDSHAKE_FRAME_BYTES_MAX: usize = 1024;

pub(super) type Nonce = [u8; NONCE_BYTES];
type Tag = [u8; TAG_BYTES];

/// The first frame on every connection: who is calling, which protocol it speaks, and the
/// nonce the answerer must prove its knowledge of the secret over.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Hello {
    pub protocol: u32,
    pub from: NodeId,
    pub nonce: Nonce,
}

/// The answerer's proof, and its own nonce for the caller to prove itself over.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Challenge {
    pub nonce: Nonce,
    pub proof: Tag,
}

/// The caller's proof.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Proof {
    pub proof: Tag,
}

/// What a node needs to take part in handshakes: its id and the cluster secret.
#[derive(Clone, Debug)]
pub struct PeerAuth {
    id: NodeId,
    /// Empty without a cluster secret.
    secret: Vec<u8>,
}

impl PeerAuth {
    pub fn new(id: NodeId, secret: Option<&[u8]>) -> PeerAuth {
        PeerAuth { id, secret: secret.unwrap_or_default().to_vec() }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub(super) fn hello(&self) -> Hello {
        Hello { protocol: PROTOCOL, from: self.id, nonce: fresh_nonce() }
    }

    /// The answerer's side: its challenge for `hello`.
    pub(super) fn challenge(&self, hello: &Hello) -> Challenge {
        let nonce = fresh_nonce();
        Challenge { nonce, proof: self.tag(b"answer", hello.from, &hello.nonce, &nonce) }
    }

    /// The caller's side: checks the answerer's proof over `hello`, and proves itself.
    pub(super) fn prove(&self, hello: &Hello, challenge: &Challenge) -> Option<Proof> {
        let expected = self.tag(b"answer", hello.from, &hello.nonce, &challenge.nonce);
        hmac::tags_equal(&expected, &challenge.proof)
            .then(|| Proof { proof: self.tag(b"call", hello.from, &challenge.nonce, &hello.nonce) })
    }

    /// The answerer's side: whether the caller's proof is right for this exchange.
    pub(super) fn verify(&self, hello: &Hello, challenge: &Challenge, proof: &Proof) -> bool {
        hmac::tags_equal(&self.tag(b"call", hello.from, &challenge.nonce, &hello.nonce), &proof.proof)
    }

    fn tag(&self, role: &[u8], from: NodeId, first: &Nonce, second: &Nonce) -> Tag {
        hmac::tag(&self.secret, &[b"cairn-peer-v1", role, &from.to_be_bytes(), first, second])
    }
}

fn fresh_nonce() -> Nonce {
    let mut nonce = [0u8; NONCE_BYTES];
    for chunk in nonce.chunks_mut(8) {
        chunk.copy_from_slice(&rt::random_u64().to_be_bytes());
    }
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(caller: &PeerAuth, answerer: &PeerAuth) -> (Hello, Challenge, Option<Proof>) {
        let hello = caller.hello();
        let challenge = answerer.challenge(&hello);
        let proof = caller.prove(&hello, &challenge);
        (hello, challenge, proof)
    }

    #[test]
    fn members_sharing_the_secret_prove_themselves_to_each_other() {
        let (a, b) = (PeerAuth::new(1, Some(b"s3cret")), PeerAuth::new(2, Some(b"s3cret")));
        let (hello, challenge, proof) = exchange(&a, &b);
        assert!(b.verify(&hello, &challenge, &proof.expect("the answerer proved itself")));
    }

    #[test]
    fn a_caller_without_the_secret_cannot_prove_itself() {
        let (outsider, member) = (PeerAuth::new(1, Some(b"guess")), PeerAuth::new(2, Some(b"s3cret")));
        let (hello, challenge, proof) = exchange(&outsider, &member);
        assert!(proof.is_none(), "the caller sees the answerer's proof fail under its key");
        let forged = Proof { proof: outsider.tag(b"call", hello.from, &challenge.nonce, &hello.nonce) };
        assert!(!member.verify(&hello, &challenge, &forged));
    }

    #[test]
    fn a_recorded_proof_does_not_replay_and_does_not_move_to_another_id() {
        let (a, b) = (PeerAuth::new(1, Some(b"s3cret")), PeerAuth::new(2, Some(b"s3cret")));
        let (hello, challenge, proof) = exchange(&a, &b);
        let proof = proof.expect("members prove themselves");
        let fresh_challenge = b.challenge(&hello);
        assert!(!b.verify(&hello, &fresh_challenge, &proof), "a new challenge needs a new proof");
        let claimed = Hello { from: 3, ..hello };
        assert!(!b.verify(&claimed, &challenge, &proof), "the proof names the caller's id");
    }
}
