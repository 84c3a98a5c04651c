//! Policies and what a set of them allows: rules on key prefixes (longest prefix wins, `deny`
//! beats an allow of the same length, no matching rule denies) and an access level on the
//! cluster (membership and status).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Denial;

/// The built-in policy of the bootstrap token: everything, including managing ACLs. It cannot
/// be created, changed or deleted.
pub const MANAGEMENT: &str = "management";
/// When a policy of this name exists, requests without a token get what it allows.
pub const ANONYMOUS: &str = "anonymous";

/// What a rule grants. `write` includes `read`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    #[default]
    Deny,
    Read,
    Write,
}

/// Access to every key starting with `prefix` (the empty prefix is every key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub prefix: String,
    pub access: Access,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub rules: Vec<Rule>,
    /// Membership and status: `read` lists members and shows status, `write` also adds and
    /// removes members.
    pub cluster: Access,
}

/// What one request may do, resolved from its token's policies at one state of the store.
#[derive(Clone, Debug)]
pub enum Authority {
    /// ACLs are not bootstrapped: nothing is enforced.
    Open,
    /// The management token: everything.
    Management,
    Limited(Arc<Grants>),
}

/// The rules of a token's policies together, longest prefix first.
#[derive(Debug)]
pub struct Grants {
    rules: Vec<Rule>,
    cluster: Access,
    /// Granted to a request without a token (through the anonymous policy): refusals say
    /// "unauthenticated", since a token might help.
    anonymous: bool,
}

impl Authority {
    pub fn limited<'a>(policies: impl IntoIterator<Item = &'a Policy>, anonymous: bool) -> Authority {
        let mut rules = Vec::new();
        let mut cluster = Access::Deny;
        for policy in policies {
            rules.extend(policy.rules.iter().cloned());
            cluster = cluster.max(policy.cluster);
        }
        rules.sort_by(|a, b| b.prefix.len().cmp(&a.prefix.len()).then(a.access.cmp(&b.access)));
        Authority::Limited(Arc::new(Grants { rules, cluster, anonymous }))
    }

    /// The access this authority has to `key`.
    pub fn access(&self, key: &str) -> Access {
        let grants = match self {
            Authority::Open | Authority::Management => return Access::Write,
            Authority::Limited(grants) => grants,
        };
        // Sorted by length, longest first, and deny first within a length: the first match of
        // the longest matching length decides unless a write of that length follows a read.
        let mut matching = grants.rules.iter().filter(|rule| key.starts_with(rule.prefix.as_str()));
        let Some(first) = matching.next() else { return Access::Deny };
        if first.access == Access::Deny {
            return Access::Deny;
        }
        matching.take_while(|rule| rule.prefix.len() == first.prefix.len()).fold(first.access, |a, r| a.max(r.access))
    }

    pub fn can_read(&self, key: &str) -> bool {
        self.access(key) >= Access::Read
    }

    pub fn can_write(&self, key: &str) -> bool {
        self.access(key) == Access::Write
    }

    pub fn cluster(&self) -> Access {
        match self {
            Authority::Open | Authority::Management => Access::Write,
            Authority::Limited(grants) => grants.cluster,
        }
    }

    /// Whether ACL tokens and policies may be read and changed with this authority.
    pub fn manages_acl(&self) -> bool {
        matches!(self, Authority::Management)
    }

    /// `Ok` when `allowed`, else the refusal this authority gets.
    pub fn check(&self, allowed: bool) -> Result<(), Denial> {
        match self {
            _ if allowed => Ok(()),
            Authority::Limited(grants) if grants.anonymous => Err(Denial::Unauthenticated),
            _ => Err(Denial::PermissionDenied),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, access: Access) -> Rule {
        Rule { prefix: prefix.into(), access }
    }

    fn policy(rules: Vec<Rule>) -> Policy {
        Policy { name: "p".into(), rules, cluster: Access::Deny }
    }

    #[test]
    fn the_longest_matching_prefix_decides_and_no_match_denies() {
        let authority = Authority::limited(
            &[policy(vec![rule("app/", Access::Write), rule("app/secret/", Access::Deny), rule("", Access::Read)])],
            false,
        );
        assert_eq!(authority.access("app/x"), Access::Write);
        assert_eq!(authority.access("app/secret/k"), Access::Deny);
        assert_eq!(authority.access("other"), Access::Read);
        assert!(authority.can_read("app/x") && authority.can_write("app/x"));
        let narrow = Authority::limited(&[policy(vec![rule("a/", Access::Read)])], false);
        assert_eq!(narrow.access("b"), Access::Deny);
        assert_eq!(narrow.access("a"), Access::Deny, "the prefix a/ does not cover the key a");
    }

    #[test]
    fn deny_beats_allow_at_equal_length_across_policies_and_write_beats_read() {
        let denying = policy(vec![rule("k/", Access::Deny)]);
        let writing = policy(vec![rule("k/", Access::Write)]);
        let reading = policy(vec![rule("k/", Access::Read)]);
        assert_eq!(Authority::limited([&writing, &denying], false).access("k/1"), Access::Deny);
        assert_eq!(Authority::limited([&denying, &writing], false).access("k/1"), Access::Deny);
        assert_eq!(Authority::limited([&reading, &writing], false).access("k/1"), Access::Write);
        assert_eq!(Authority::limited([&writing, &reading], false).access("k/1"), Access::Write);
    }

    #[test]
    fn refusals_say_unauthenticated_only_to_requests_without_a_token() {
        let nothing: [&Policy; 0] = [];
        assert_eq!(Authority::limited(nothing, true).check(false), Err(Denial::Unauthenticated));
        assert_eq!(Authority::limited(nothing, false).check(false), Err(Denial::PermissionDenied));
        assert_eq!(Authority::limited(nothing, false).check(true), Ok(()));
        assert!(Authority::Management.manages_acl() && !Authority::Open.manages_acl());
    }
}
