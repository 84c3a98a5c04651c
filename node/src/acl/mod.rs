//! Access control, Consul style: tokens carry policies, policies grant `read`, `write` or `deny`
//! on key prefixes and on the cluster. The ACL state is part of the replicated state
//! ([`AclState`], changed only by raft commands), so every check is made against the state at a
//! known revision: a write is authorized when it is applied, a read by the store that serves it.
//!
//! Before `POST /v1/acl/bootstrap` nothing is enforced. A token's secret is 128 random bits shown
//! once; the state keeps only its SHA-256, which is all a request check costs (no password
//! hashing on the request path, etcd's bcrypt-per-request lesson).

mod nesting;
mod past;
mod policy;
mod state;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::Command;
use crate::record::kie_key;

pub use nesting::flat_command;
pub use past::{AclPast, Governed};
pub use policy::{ANONYMOUS, Access, Authority, MANAGEMENT, Policy, Rule};
pub use state::{AclCommand, AclOutcome, AclState, Token, TokenView};

/// Whether `authority` may have `command` applied: writes need `write` on every key they
/// change, ACL changes the management policy (the bootstrap is checked by the ACL state
/// itself), internal commands are never a client's.
pub fn permits(authority: &Authority, command: &Command) -> bool {
    match command {
        Command::Put { key, .. } | Command::Delete { key, .. } => authority.can_write(key),
        Command::KieCreate { project, id, .. } | Command::KieUpdate { project, id, .. } => {
            authority.can_write(&kie_key(project, id))
        }
        Command::KieDelete { project, ids } => ids.iter().all(|id| authority.can_write(&kie_key(project, id))),
        Command::Acl(AclCommand::Bootstrap { .. }) => true,
        Command::Acl(_) => authority.manages_acl(),
        Command::RetireNode { .. } | Command::SetClusterId { .. } | Command::Authorized { .. } => false,
    }
}

/// Hex digits of a token secret: 128 bits.
pub const SECRET_HEX_DIGITS: usize = 32;

/// The SHA-256 of a token's secret: what the replicated state and the log hold instead of it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> SecretHash {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// A token's secret held by a node to present to others (the token a joining node asks with).
/// Its `Debug` never shows it, so configurations can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// A secret as a flag or a file gives it: 1 to 256 visible ASCII characters (anything else
    /// could not travel in a header).
    pub fn parse(text: &str) -> Result<TokenSecret, String> {
        let text = text.trim();
        if text.is_empty() || text.len() > 256 || !text.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err("a token is 1 to 256 visible ASCII characters".to_string());
        }
        Ok(TokenSecret(text.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(…)")
    }
}

/// Who a request says it is: no token, or the hash of the secret it presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Credential {
    Anonymous,
    Token(SecretHash),
}

impl Credential {
    pub fn from_secret(secret: &str) -> Credential {
        Credential::Token(SecretHash::of(secret))
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Denial {
    /// No token where one is needed, or a token the cluster does not know (never created, or
    /// deleted): HTTP 401.
    #[error("a valid token is required")]
    Unauthenticated,
    /// A known token whose policies do not allow this: HTTP 403.
    #[error("the token's policies do not allow this")]
    PermissionDenied,
}

/// A fresh token secret: 128 bits from the OS (the simulation's generator under madsim), as 32
/// lowercase hex digits.
pub fn fresh_secret() -> String {
    hex_of(&random_bytes())
}

/// A fresh accessor id, written like a UUID (version 4 layout) so it reads as one in listings.
pub fn fresh_accessor() -> String {
    let mut bytes = random_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex_of(&bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if crate::tls::seam::fill_random(&mut bytes).is_err() {
        // The OS generator failed (it practically never does); the runtime's generator is the
        // best that is left, and a secret must never be a constant.
        bytes[..8].copy_from_slice(&crate::rt::random_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&crate::rt::random_u64().to_le_bytes());
    }
    bytes
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secrets_and_accessors_are_fresh_and_well_formed() {
        let (a, b) = (fresh_secret(), fresh_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), SECRET_HEX_DIGITS);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase()));
        let accessor = fresh_accessor();
        assert_eq!(accessor.len(), 36);
        assert_eq!(accessor.as_bytes()[14], b'4');
        assert_ne!(SecretHash::of(&a), SecretHash::of(&b));
        assert!(!format!("{:?}", SecretHash::of(&a)).contains(&a[..8]), "Debug never shows the secret");
    }
}
