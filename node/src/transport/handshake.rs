//! The peer handshake: each side proves it knows the cluster secret over a nonce the other side
//! just chose, so a recorded handshake never replays, and the caller's node id and both sides'
//! cluster ids are bound into the proofs, so a node cannot claim another's id or cluster.
//!
//! ```text
//! caller                                   answerer
//!   Hello { protocol, from, cluster_c, nonce_c }  ──▶
//!                  ◀──  Challenge { cluster_a, nonce_a, proof_a = HMAC(k, "answer", from, cluster_c, cluster_a, nonce_c, nonce_a) }
//!   Proof { proof_c = HMAC(k, "call", from, cluster_c, cluster_a, nonce_a, nonce_c) }  ──▶
//! ```
//! Without a cluster secret the key is empty: anyone can compute the proofs, and the handshake
//! only checks the protocol version and the cluster ids (the node warns about this at start).
//! Either side closes the connection on a wrong proof, and on a peer that belongs to another
//! cluster (both sides know their cluster's id and the ids differ: a node whose data directory
//! came from elsewhere, or an address that reaches the wrong cluster). A side that does not know
//! its cluster's id yet (a joiner before it has the replicated state) is not refused for it. The
//! frames after the handshake are not authenticated one by one; that is what TLS adds.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::message::PROTOCOL;
use crate::command::{ClusterId, NodeId};
use crate::gossip::hmac::{self, TAG_BYTES};
use crate::rt;
use crate::tls::PeerTls;

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
    pub cluster: Option<ClusterId>,
    pub nonce: Nonce,
}

/// The answerer's proof, its cluster, and its own nonce for the caller to prove itself over.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Challenge {
    pub cluster: Option<ClusterId>,
    pub nonce: Nonce,
    pub proof: Tag,
}

/// The caller's proof.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Proof {
    pub proof: Tag,
}

/// Where a node reads its cluster's id, which it may learn while it runs (a joiner learns it
/// from the replicated state).
pub type ClusterSource = Arc<dyn Fn() -> Option<ClusterId> + Send + Sync>;

/// Why a handshake failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The other side's proof is wrong: it has no secret or another one.
    WrongSecret,
    /// The other side proved itself but belongs to another cluster.
    OtherCluster { ours: ClusterId, theirs: ClusterId },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WrongSecret => write!(f, "it does not know the cluster secret (or it has another one)"),
            Refusal::OtherCluster { ours, theirs } => write!(
                f,
                "it belongs to cluster {theirs}, this node to cluster {ours}: a node's data directory \
                 belongs to one cluster (wipe it and join the node again to move it)"
            ),
        }
    }
}

/// What a node needs to take part in handshakes: its id, its cluster's id, the cluster secret,
/// and the peer TLS the handshake runs inside when the node has one.
#[derive(Clone)]
pub struct PeerAuth {
    id: NodeId,
    /// Empty without a cluster secret.
    secret: Vec<u8>,
    cluster: ClusterSource,
    tls: Option<Arc<PeerTls>>,
}

impl fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerAuth").field("id", &self.id).field("cluster", &(self.cluster)()).finish_non_exhaustive()
    }
}

impl PeerAuth {
    pub fn new(id: NodeId, secret: Option<&[u8]>, cluster: ClusterSource) -> PeerAuth {
        PeerAuth { id, secret: secret.unwrap_or_default().to_vec(), cluster, tls: None }
    }

    /// Runs every peer connection inside mutual TLS.
    pub fn with_tls(self, tls: Arc<PeerTls>) -> PeerAuth {
        PeerAuth { tls: Some(tls), ..self }
    }

    pub(super) fn tls(&self) -> Option<&PeerTls> {
        self.tls.as_deref()
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether a peer that named `theirs` in its handshake still belongs with this node. A
    /// node that did not know its cluster at the handshake may have learned it since: a
    /// connection is checked again before each request, not only when it opens.
    pub(super) fn admits(&self, theirs: Option<ClusterId>) -> Result<(), Refusal> {
        same_cluster((self.cluster)(), theirs)
    }

    pub(super) fn hello(&self) -> Hello {
        Hello { protocol: PROTOCOL, from: self.id, cluster: (self.cluster)(), nonce: fresh_nonce() }
    }

    /// The answerer's side: its challenge for `hello`.
    pub(super) fn challenge(&self, hello: &Hello) -> Challenge {
        let mut challenge = Challenge { cluster: (self.cluster)(), nonce: fresh_nonce(), proof: [0; TAG_BYTES] };
        challenge.proof = self.tag(b"answer", hello, &challenge, &hello.nonce, &challenge.nonce);
        challenge
    }

    /// The caller's side: checks the answerer's proof and cluster, and proves itself.
    pub(super) fn prove(&self, hello: &Hello, challenge: &Challenge) -> Result<Proof, Refusal> {
        let expected = self.tag(b"answer", hello, challenge, &hello.nonce, &challenge.nonce);
        if !hmac::tags_equal(&expected, &challenge.proof) {
            return Err(Refusal::WrongSecret);
        }
        same_cluster(hello.cluster, challenge.cluster)?;
        Ok(Proof { proof: self.tag(b"call", hello, challenge, &challenge.nonce, &hello.nonce) })
    }

    /// The answerer's side: whether the caller's proof is right for this exchange and the caller
    /// belongs to the cluster the challenge named.
    pub(super) fn verify(&self, hello: &Hello, challenge: &Challenge, proof: &Proof) -> Result<(), Refusal> {
        let expected = self.tag(b"call", hello, challenge, &challenge.nonce, &hello.nonce);
        if !hmac::tags_equal(&expected, &proof.proof) {
            return Err(Refusal::WrongSecret);
        }
        same_cluster(challenge.cluster, hello.cluster)
    }

    fn tag(&self, role: &[u8], hello: &Hello, challenge: &Challenge, first: &Nonce, second: &Nonce) -> Tag {
        let (caller_cluster, answerer_cluster) = (cluster_bytes(hello.cluster), cluster_bytes(challenge.cluster));
        hmac::tag(
            &self.secret,
            &[b"cairn-peer-v2", role, &hello.from.to_be_bytes(), &caller_cluster, &answerer_cluster, first, second],
        )
    }
}

/// Refuses two different known cluster ids; a side that does not know its id yet is not refused.
fn same_cluster(ours: Option<ClusterId>, theirs: Option<ClusterId>) -> Result<(), Refusal> {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours != theirs => Err(Refusal::OtherCluster { ours, theirs }),
        _ => Ok(()),
    }
}

/// A cluster id as MAC input: a presence byte and the id, so "unknown" never equals an id.
fn cluster_bytes(cluster: Option<ClusterId>) -> [u8; 9] {
    let mut bytes = [0u8; 9];
    if let Some(ClusterId(id)) = cluster {
        bytes[0] = 1;
        bytes[1..].copy_from_slice(&id.to_be_bytes());
    }
    bytes
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

    fn auth(id: NodeId, secret: &[u8], cluster: Option<u64>) -> PeerAuth {
        PeerAuth::new(id, Some(secret), Arc::new(move || cluster.map(ClusterId)))
    }

    fn exchange(caller: &PeerAuth, answerer: &PeerAuth) -> (Hello, Challenge, Result<Proof, Refusal>) {
        let hello = caller.hello();
        let challenge = answerer.challenge(&hello);
        let proof = caller.prove(&hello, &challenge);
        (hello, challenge, proof)
    }

    #[tokio::test]
    async fn members_sharing_the_secret_prove_themselves_to_each_other() {
        let (a, b) = (auth(1, b"s3cret", Some(7)), auth(2, b"s3cret", Some(7)));
        let (hello, challenge, proof) = exchange(&a, &b);
        assert_eq!(b.verify(&hello, &challenge, &proof.expect("the answerer proved itself")), Ok(()));
    }

    #[tokio::test]
    async fn a_caller_without_the_secret_cannot_prove_itself() {
        let (outsider, member) = (auth(1, b"guess", None), auth(2, b"s3cret", None));
        let (hello, challenge, proof) = exchange(&outsider, &member);
        assert_eq!(proof.err(), Some(Refusal::WrongSecret), "the caller sees the answerer's proof fail under its key");
        let forged = Proof { proof: outsider.tag(b"call", &hello, &challenge, &challenge.nonce, &hello.nonce) };
        assert_eq!(member.verify(&hello, &challenge, &forged), Err(Refusal::WrongSecret));
    }

    #[tokio::test]
    async fn a_recorded_proof_does_not_replay_and_does_not_move_to_another_id_or_cluster() {
        let (a, b) = (auth(1, b"s3cret", Some(7)), auth(2, b"s3cret", Some(7)));
        let (hello, challenge, proof) = exchange(&a, &b);
        let proof = proof.expect("members prove themselves");
        let fresh_challenge = b.challenge(&hello);
        assert_eq!(
            b.verify(&hello, &fresh_challenge, &proof),
            Err(Refusal::WrongSecret),
            "a new challenge needs a new proof"
        );
        let claimed = Hello { from: 3, ..hello };
        assert_eq!(
            b.verify(&claimed, &challenge, &proof),
            Err(Refusal::WrongSecret),
            "the proof names the caller's id"
        );
        let unclaimed = Hello { from: 1, cluster: None, ..claimed };
        assert_eq!(
            b.verify(&unclaimed, &challenge, &proof),
            Err(Refusal::WrongSecret),
            "the proof names the caller's cluster"
        );
    }

    #[tokio::test]
    async fn nodes_of_two_clusters_refuse_each_other_in_both_directions() {
        let (a, b) = (auth(1, b"s3cret", Some(7)), auth(2, b"s3cret", Some(8)));
        let (hello, challenge, proof) = exchange(&a, &b);
        let other = Refusal::OtherCluster { ours: ClusterId(7), theirs: ClusterId(8) };
        assert_eq!(proof.err(), Some(other), "the caller refuses the answerer");
        let honest = Proof { proof: a.tag(b"call", &hello, &challenge, &challenge.nonce, &hello.nonce) };
        let other = Refusal::OtherCluster { ours: ClusterId(8), theirs: ClusterId(7) };
        assert_eq!(b.verify(&hello, &challenge, &honest), Err(other), "the answerer refuses the caller");
    }

    #[tokio::test]
    async fn a_node_that_does_not_know_its_cluster_yet_is_not_refused_for_it() {
        let (joiner, member) = (auth(4, b"s3cret", None), auth(1, b"s3cret", Some(7)));
        for (caller, answerer) in [(&joiner, &member), (&member, &joiner)] {
            let (hello, challenge, proof) = exchange(caller, answerer);
            assert_eq!(answerer.verify(&hello, &challenge, &proof.expect("no cluster conflict")), Ok(()));
        }
    }
}
