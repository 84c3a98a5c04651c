//! The replicated ACL state and the commands that change it. Pure and total, like the rest of
//! the store's state: any command, however malformed, yields the same outcome on every replica
//! and never panics.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::policy::{ANONYMOUS, Authority, MANAGEMENT, Policy};
use super::{Credential, Denial, SecretHash};

/// Policies a cluster may hold.
pub const POLICIES_MAX: usize = 1_024;
/// Tokens a cluster may hold.
pub const TOKENS_MAX: usize = 65_536;
/// Bytes the policies and tokens together may take (by [`policy_bytes`] and [`token_bytes`]):
/// the counts alone would allow a gigabyte of rules, held by every replica and in every snapshot.
pub const ACL_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A token as stored: never its secret, only the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub accessor: Arc<str>,
    pub secret: SecretHash,
    pub policies: Vec<String>,
    pub description: String,
}

/// A token as listings show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub accessor: String,
    pub policies: Vec<String>,
    pub description: String,
}

/// A change to the ACL state. Only `Bootstrap` is allowed without the management policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclCommand {
    /// Turns enforcement on and creates the management token, unless already done.
    Bootstrap {
        accessor: String,
        secret: SecretHash,
    },
    /// Creates (`create`) or replaces a policy.
    PutPolicy {
        policy: Policy,
        create: bool,
    },
    DeletePolicy {
        name: String,
    },
    CreateToken {
        accessor: String,
        secret: SecretHash,
        policies: Vec<String>,
        description: String,
    },
    UpdateToken {
        accessor: String,
        policies: Vec<String>,
        description: String,
    },
    DeleteToken {
        accessor: String,
    },
}

/// What an ACL command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclOutcome {
    Bootstrapped,
    AlreadyBootstrapped,
    NotBootstrapped,
    Written,
    Deleted,
    PolicyExists,
    PolicyNotFound,
    TokenExists,
    TokenNotFound,
    /// A token named a policy that does not exist.
    UnknownPolicy {
        name: String,
    },
    /// The management policy is built in: it cannot be created, changed or deleted.
    ReservedPolicy,
    /// The cluster holds as many policies or tokens, or as many bytes of them, as it may.
    LimitReached,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredAcl")]
pub struct AclState {
    bootstrapped: bool,
    /// Counts changes, so that resolved authorities can be cached until the next one.
    generation: u64,
    policies: OrdMap<String, Policy>,
    tokens: OrdMap<Arc<str>, Token>,
    by_secret: OrdMap<SecretHash, Arc<str>>,
    /// What the policies and tokens take, for [`ACL_BYTES_MAX`]; counted again when decoded.
    #[serde(skip)]
    bytes: usize,
}

/// [`AclState`] as it is decoded: the same fields without the derived count, each map read
/// cautiously (its length is input).
#[derive(Deserialize)]
struct StoredAcl {
    bootstrapped: bool,
    generation: u64,
    #[serde(deserialize_with = "crate::store::cautious::ord_map")]
    policies: OrdMap<String, Policy>,
    #[serde(deserialize_with = "crate::store::cautious::ord_map")]
    tokens: OrdMap<Arc<str>, Token>,
    #[serde(deserialize_with = "crate::store::cautious::ord_map")]
    by_secret: OrdMap<SecretHash, Arc<str>>,
}

impl From<StoredAcl> for AclState {
    fn from(stored: StoredAcl) -> AclState {
        let StoredAcl { bootstrapped, generation, policies, tokens, by_secret } = stored;
        let bytes = policies.values().map(policy_bytes).chain(tokens.values().map(token_bytes)).sum();
        AclState { bootstrapped, generation, policies, tokens, by_secret, bytes }
    }
}

/// What a policy takes in the ACL state, roughly: its text and a word per rule.
fn policy_bytes(policy: &Policy) -> usize {
    policy.name.len() + policy.rules.iter().map(|rule| rule.prefix.len() + 16).sum::<usize>() + 32
}

/// What a token takes: its text, its secret's hash, and a word per policy.
fn token_bytes(token: &Token) -> usize {
    token.accessor.len()
        + token.description.len()
        + token.policies.iter().map(|name| name.len() + 16).sum::<usize>()
        + 64
}

impl AclState {
    /// What the policies and tokens take (see [`ACL_BYTES_MAX`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn enabled(&self) -> bool {
        self.bootstrapped
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What a request with `credential` may do.
    pub fn authority(&self, credential: &Credential) -> Result<Authority, Denial> {
        if !self.bootstrapped {
            return Ok(Authority::Open);
        }
        match credential {
            Credential::Token(secret) => {
                let token = self.by_secret.get(secret).and_then(|accessor| self.tokens.get(accessor));
                let token = token.ok_or(Denial::Unauthenticated)?;
                if token.policies.iter().any(|name| name == MANAGEMENT) {
                    return Ok(Authority::Management);
                }
                Ok(Authority::limited(token.policies.iter().filter_map(|name| self.policies.get(name)), false))
            }
            Credential::Anonymous => match self.policies.get(ANONYMOUS) {
                Some(policy) => Ok(Authority::limited([policy], true)),
                None => Err(Denial::Unauthenticated),
            },
        }
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.values()
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    pub fn tokens(&self) -> impl Iterator<Item = TokenView> + '_ {
        self.tokens.values().map(view)
    }

    pub fn token(&self, accessor: &str) -> Option<TokenView> {
        self.tokens.get(accessor).map(view)
    }

    /// Applies an ACL command the caller was allowed to make (see `KvState::apply`).
    pub fn apply(&mut self, command: &AclCommand) -> AclOutcome {
        let outcome = match command {
            AclCommand::Bootstrap { accessor, secret } => {
                if self.bootstrapped {
                    return AclOutcome::AlreadyBootstrapped;
                }
                self.bootstrapped = true;
                self.insert_token(Token {
                    accessor: accessor.as_str().into(),
                    secret: *secret,
                    policies: vec![MANAGEMENT.to_string()],
                    description: "bootstrap token".to_string(),
                });
                AclOutcome::Bootstrapped
            }
            _ if !self.bootstrapped => return AclOutcome::NotBootstrapped,
            AclCommand::PutPolicy { policy, create } => self.put_policy(policy, *create),
            AclCommand::DeletePolicy { name } => {
                if name == MANAGEMENT {
                    return AclOutcome::ReservedPolicy;
                }
                match self.policies.remove(name) {
                    Some(policy) => {
                        self.bytes -= policy_bytes(&policy);
                        AclOutcome::Deleted
                    }
                    None => return AclOutcome::PolicyNotFound,
                }
            }
            AclCommand::CreateToken { accessor, secret, policies, description } => {
                if self.tokens.contains_key(accessor.as_str()) || self.by_secret.contains_key(secret) {
                    return AclOutcome::TokenExists;
                }
                if self.tokens.len() >= TOKENS_MAX {
                    return AclOutcome::LimitReached;
                }
                if let Some(unknown) = self.unknown_policy(policies) {
                    return unknown;
                }
                let token = Token {
                    accessor: accessor.as_str().into(),
                    secret: *secret,
                    policies: policies.clone(),
                    description: description.clone(),
                };
                if self.bytes + token_bytes(&token) > ACL_BYTES_MAX {
                    return AclOutcome::LimitReached;
                }
                self.insert_token(token);
                AclOutcome::Written
            }
            AclCommand::UpdateToken { accessor, policies, description } => {
                if let Some(unknown) = self.unknown_policy(policies) {
                    return unknown;
                }
                let Some(token) = self.tokens.get(accessor.as_str()) else { return AclOutcome::TokenNotFound };
                let updated = Token { policies: policies.clone(), description: description.clone(), ..token.clone() };
                let bytes = self.bytes - token_bytes(token) + token_bytes(&updated);
                if bytes > ACL_BYTES_MAX {
                    return AclOutcome::LimitReached;
                }
                self.bytes = bytes;
                self.tokens.insert(updated.accessor.clone(), updated);
                AclOutcome::Written
            }
            AclCommand::DeleteToken { accessor } => match self.tokens.remove(accessor.as_str()) {
                Some(token) => {
                    self.bytes -= token_bytes(&token);
                    self.by_secret.remove(&token.secret);
                    AclOutcome::Deleted
                }
                None => return AclOutcome::TokenNotFound,
            },
        };
        if matches!(outcome, AclOutcome::Written | AclOutcome::Deleted | AclOutcome::Bootstrapped) {
            self.generation += 1;
        }
        outcome
    }

    fn put_policy(&mut self, policy: &Policy, create: bool) -> AclOutcome {
        if policy.name == MANAGEMENT {
            return AclOutcome::ReservedPolicy;
        }
        match (self.policies.contains_key(&policy.name), create) {
            (true, true) => return AclOutcome::PolicyExists,
            (false, false) => return AclOutcome::PolicyNotFound,
            (false, true) if self.policies.len() >= POLICIES_MAX => return AclOutcome::LimitReached,
            _ => {}
        }
        let replaced = self.policies.get(&policy.name).map_or(0, policy_bytes);
        let bytes = self.bytes - replaced + policy_bytes(policy);
        if bytes > ACL_BYTES_MAX {
            return AclOutcome::LimitReached;
        }
        self.bytes = bytes;
        self.policies.insert(policy.name.clone(), policy.clone());
        AclOutcome::Written
    }

    fn unknown_policy(&self, names: &[String]) -> Option<AclOutcome> {
        let unknown = names.iter().find(|name| *name != MANAGEMENT && !self.policies.contains_key(*name))?;
        Some(AclOutcome::UnknownPolicy { name: unknown.clone() })
    }

    fn insert_token(&mut self, token: Token) {
        self.bytes += token_bytes(&token);
        self.by_secret.insert(token.secret, token.accessor.clone());
        self.tokens.insert(token.accessor.clone(), token);
    }

    /// Why this state could not have been built by [`AclState::apply`], if it could not.
    pub fn inconsistency(&self) -> Option<&'static str> {
        if !self.bootstrapped && (!self.tokens.is_empty() || !self.policies.is_empty()) {
            return Some("ACL tokens or policies exist before the bootstrap");
        }
        if self.policies.len() > POLICIES_MAX || self.tokens.len() > TOKENS_MAX || self.bytes > ACL_BYTES_MAX {
            return Some("more ACL policies or tokens than a cluster may hold");
        }
        let indexed = self.by_secret.len() == self.tokens.len()
            && self.tokens.iter().all(|(accessor, token)| {
                token.accessor == *accessor && self.by_secret.get(&token.secret) == Some(accessor)
            });
        let named = self.policies.iter().all(|(name, policy)| *name == policy.name && name != MANAGEMENT);
        (!indexed || !named).then_some("the ACL state's indexes disagree")
    }
}

fn view(token: &Token) -> TokenView {
    TokenView {
        accessor: token.accessor.to_string(),
        policies: token.policies.clone(),
        description: token.description.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Access, Rule};

    fn bootstrapped(secret: &str) -> AclState {
        let mut acl = AclState::default();
        let bootstrap = AclCommand::Bootstrap { accessor: "root".into(), secret: SecretHash::of(secret) };
        assert_eq!(acl.apply(&bootstrap), AclOutcome::Bootstrapped);
        assert_eq!(acl.apply(&bootstrap), AclOutcome::AlreadyBootstrapped);
        acl
    }

    fn reader_of(prefix: &str) -> Policy {
        Policy {
            name: "reader".into(),
            rules: vec![Rule { prefix: prefix.into(), access: Access::Read }],
            cluster: Access::Deny,
        }
    }

    #[test]
    fn nothing_is_enforced_before_the_bootstrap_and_then_only_known_tokens_pass() {
        let open = AclState::default();
        assert!(matches!(open.authority(&Credential::Anonymous), Ok(Authority::Open)));
        let create = AclCommand::PutPolicy { policy: reader_of("a/"), create: true };
        assert_eq!(open.clone().apply(&create), AclOutcome::NotBootstrapped);

        let mut acl = bootstrapped("root-secret");
        assert!(matches!(acl.authority(&Credential::from_secret("root-secret")), Ok(Authority::Management)));
        assert_eq!(acl.authority(&Credential::from_secret("guess")).err(), Some(Denial::Unauthenticated));
        assert_eq!(acl.authority(&Credential::Anonymous).err(), Some(Denial::Unauthenticated));
        assert_eq!(acl.apply(&create), AclOutcome::Written);
        assert_eq!(acl.apply(&create), AclOutcome::PolicyExists);
        let token = AclCommand::CreateToken {
            accessor: "t".into(),
            secret: SecretHash::of("t-secret"),
            policies: vec!["reader".into()],
            description: String::new(),
        };
        assert_eq!(acl.apply(&token), AclOutcome::Written);
        let reader = acl.authority(&Credential::from_secret("t-secret")).unwrap();
        assert!(reader.can_read("a/1") && !reader.can_write("a/1") && !reader.can_read("b"));
        assert_eq!(acl.inconsistency(), None);

        assert_eq!(acl.apply(&AclCommand::DeleteToken { accessor: "t".into() }), AclOutcome::Deleted);
        assert_eq!(acl.authority(&Credential::from_secret("t-secret")).err(), Some(Denial::Unauthenticated));
        assert_eq!(acl.inconsistency(), None);
    }

    #[test]
    fn a_narrowed_or_deleted_policy_narrows_its_tokens_at_once() {
        let mut acl = bootstrapped("root");
        acl.apply(&AclCommand::PutPolicy { policy: reader_of(""), create: true });
        let create = AclCommand::CreateToken {
            accessor: "t".into(),
            secret: SecretHash::of("s"),
            policies: vec!["reader".into()],
            description: String::new(),
        };
        acl.apply(&create);
        let before = acl.generation();
        acl.apply(&AclCommand::PutPolicy { policy: reader_of("public/"), create: false });
        assert!(acl.generation() > before, "a change moves the generation, so cached authorities are dropped");
        let narrowed = acl.authority(&Credential::from_secret("s")).unwrap();
        assert!(narrowed.can_read("public/x") && !narrowed.can_read("private"));
        acl.apply(&AclCommand::DeletePolicy { name: "reader".into() });
        assert!(!acl.authority(&Credential::from_secret("s")).unwrap().can_read("public/x"));
    }

    #[test]
    fn management_is_reserved_and_unknown_policies_are_refused() {
        let mut acl = bootstrapped("root");
        let mut management = reader_of("");
        management.name = MANAGEMENT.into();
        assert_eq!(acl.apply(&AclCommand::PutPolicy { policy: management, create: true }), AclOutcome::ReservedPolicy);
        assert_eq!(acl.apply(&AclCommand::DeletePolicy { name: MANAGEMENT.into() }), AclOutcome::ReservedPolicy);
        let token = AclCommand::CreateToken {
            accessor: "t".into(),
            secret: SecretHash::of("s"),
            policies: vec!["nope".into()],
            description: String::new(),
        };
        assert_eq!(acl.apply(&token), AclOutcome::UnknownPolicy { name: "nope".into() });
        let reused = AclCommand::CreateToken {
            accessor: "other".into(),
            secret: SecretHash::of("root"),
            policies: vec![],
            description: String::new(),
        };
        assert_eq!(acl.apply(&reused), AclOutcome::TokenExists, "two tokens never share a secret");
    }

    #[test]
    fn the_anonymous_policy_covers_requests_without_a_token() {
        let mut acl = bootstrapped("root");
        let mut anonymous = reader_of("public/");
        anonymous.name = ANONYMOUS.into();
        acl.apply(&AclCommand::PutPolicy { policy: anonymous, create: true });
        let authority = acl.authority(&Credential::Anonymous).unwrap();
        assert!(authority.can_read("public/a") && !authority.can_read("secret"));
        assert_eq!(authority.check(false), Err(Denial::Unauthenticated));
    }

    /// Goal: the ACL state is bounded in bytes, not only in counts, and a decoded state counts
    /// its bytes again. Method: policies of 256 rules on 4 KiB prefixes until one is refused.
    #[test]
    fn policies_and_tokens_are_bounded_in_bytes() {
        use crate::acl::policy::{Access, Rule};
        let mut acl = bootstrapped("root");
        let big = |name: &str| Policy {
            name: name.into(),
            rules: (0..256)
                .map(|i| Rule { prefix: format!("{i:04}{}", "x".repeat(4092)), access: Access::Read })
                .collect(),
            cluster: Access::Deny,
        };
        let mut created = 0;
        while acl.apply(&AclCommand::PutPolicy { policy: big(&format!("p{created}")), create: true })
            == AclOutcome::Written
        {
            created += 1;
            assert!(created < POLICIES_MAX, "never refused");
        }
        assert_eq!(created, 15, "16 MiB hold 15 policies of a bit over 1 MiB");
        assert!(acl.bytes() <= ACL_BYTES_MAX);
        let token = AclCommand::CreateToken {
            accessor: "t".into(),
            secret: SecretHash::of("t"),
            policies: vec!["p0".into()],
            description: "d".repeat(200),
        };
        assert_eq!(acl.apply(&token), AclOutcome::Written, "a small token still fits");
        assert_eq!(acl.apply(&AclCommand::DeletePolicy { name: "p1".into() }), AclOutcome::Deleted);
        assert_eq!(acl.apply(&AclCommand::PutPolicy { policy: big("again"), create: true }), AclOutcome::Written);
        let encoded = bincode::serde::encode_to_vec(&acl, bincode::config::standard()).unwrap();
        let (decoded, _): (AclState, usize) =
            bincode::serde::decode_from_slice(&encoded, bincode::config::standard()).unwrap();
        assert_eq!(decoded, acl, "the byte count is derived, so it comes back equal");
        assert_eq!(decoded.inconsistency(), None);
    }
}
