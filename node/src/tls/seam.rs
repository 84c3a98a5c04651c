//! rustls through the runtime seam: its randomness and its clock come from where the rest of the
//! node's do, so a simulated TLS handshake replays byte for byte under one seed.
//!
//! Setting the provider's `secure_random` is not enough: ring's key exchange draws its ephemeral
//! secret from ring's own `SystemRandom` (getrandom 0.2, a raw syscall madsim cannot see), and
//! ring's random source is sealed. So the provider offers one key-exchange group of our own,
//! X25519 over `x25519-dalek`, whose secret comes through the seam. Ed25519 signatures (the
//! keys `cairn tls init` and the simulator make) need no randomness; ECDSA and RSA keys given by
//! an operator sign with ring's randomness, which is fine outside the simulator.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret, SupportedKxGroup,
};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;
use rustls::{Error, NamedGroup, PeerMisbehaved};

/// Fills `buf` with random bytes: the simulation's seeded generator under madsim, the operating
/// system's otherwise (key material must not come from a user-space generator in production).
pub fn fill_random(buf: &mut [u8]) -> Result<(), GetRandomFailed> {
    #[cfg(madsim)]
    {
        use madsim::rand::RngCore;
        madsim::rand::thread_rng().fill_bytes(buf);
        Ok(())
    }
    #[cfg(not(madsim))]
    {
        base_provider().secure_random.fill(buf)
    }
}

/// ring's provider as rustls builds it. rustls deprecates it only for lacking post-quantum key
/// exchange, which the seam's X25519 replaces anyway (aws-lc-rs, which has it, draws its key
/// exchange from C code that no seam reaches).
#[allow(deprecated)]
fn base_provider() -> &'static CryptoProvider {
    static BASE: OnceLock<CryptoProvider> = OnceLock::new();
    BASE.get_or_init(rustls::crypto::ring::default_provider)
}

/// The provider every TLS configuration of the node and its clients uses, in both runtimes.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                kx_groups: vec![&SEAM_X25519],
                secure_random: &SeamRandom,
                ..base_provider().clone()
            })
        })
        .clone()
}

/// The clock certificates are checked against: `SystemTime`, which madsim virtualises.
pub fn clock() -> Arc<dyn TimeProvider> {
    Arc::new(SeamClock)
}

#[derive(Debug)]
struct SeamRandom;

impl SecureRandom for SeamRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        fill_random(buf)
    }
}

#[derive(Debug)]
struct SeamClock;

impl TimeProvider for SeamClock {
    fn current_time(&self) -> Option<UnixTime> {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok().map(UnixTime::since_unix_epoch)
    }
}

static SEAM_X25519: SeamX25519 = SeamX25519;

/// X25519 (RFC 7748) with its ephemeral secret drawn through the seam.
#[derive(Debug)]
struct SeamX25519;

struct X25519Exchange {
    secret: [u8; 32],
    public: [u8; 32],
}

impl SupportedKxGroup for SeamX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut secret = [0u8; 32];
        fill_random(&mut secret)?;
        let public = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        Ok(Box::new(X25519Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer_public: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer_public.try_into().map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let shared = x25519_dalek::x25519(self.secret, peer);
        // A low-order public key yields all zeros: the peer would choose the secret alone
        // (RFC 7748 section 6.1).
        if shared == [0u8; 32] {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_sides_of_an_exchange_agree_and_a_low_order_key_is_refused() {
        let (a, b) = (SEAM_X25519.start().unwrap(), SEAM_X25519.start().unwrap());
        let (a_public, b_public) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        let (a_shared, b_shared) = (a.complete(&b_public).unwrap(), b.complete(&a_public).unwrap());
        assert_eq!(a_shared.secret_bytes(), b_shared.secret_bytes());
        let low_order = [0u8; 32];
        assert!(SEAM_X25519.start().unwrap().complete(&low_order).is_err());
        assert!(SEAM_X25519.start().unwrap().complete(&[1u8; 31]).is_err(), "a short key is refused");
    }
}
