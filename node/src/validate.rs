//! The node's contract for what it will propose: every client command and membership change is
//! checked here, whichever door it came through (the HTTP actor, a follower's forward, a peer
//! pretending to be one), so a command that breaks the store's rules never reaches the log.
//! The HTTP actor checks the same rules first, with these functions, for its error messages.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::acl::{AclCommand, Policy};
use crate::command::{Command, NodeId};
use crate::config::Limits;
use crate::raft::Member;
use crate::record::{KIE_PREFIX, Labels};

/// Labels on one record.
pub const LABELS_MAX: usize = 32;
/// Bytes in a label name, from `A-Z a-z 0-9 . _ - /`.
pub const LABEL_NAME_BYTES_MAX: usize = 63;
/// Characters in a label value, none of them control characters.
pub const LABEL_VALUE_CHARS_MAX: usize = 255;
/// kie value types and statuses; the first of each is the default.
pub const KIE_VALUE_TYPES: [&str; 6] = ["text", "json", "yaml", "properties", "ini", "xml"];
pub const KIE_STATUSES: [&str; 2] = ["enabled", "disabled"];
/// kie kvs one delete may name.
pub const KIE_DELETE_IDS_MAX: usize = 1_000;
/// kie project names that would collide with native routes under `/v1/`.
const RESERVED_PROJECTS: [&str; 4] = ["kv", "cluster", "status", "watch"];
const KIE_NAME_BYTES_MAX: usize = 64;
/// Rules in one ACL policy.
pub const ACL_RULES_MAX: usize = 256;
/// Policies one token carries.
pub const ACL_TOKEN_POLICIES_MAX: usize = 32;
/// Bytes of a policy name, from `A-Z a-z 0-9 _ . -`.
const ACL_NAME_BYTES_MAX: usize = 128;
/// Characters of a token's description, none of them control characters.
const ACL_DESCRIPTION_CHARS_MAX: usize = 256;
/// Bytes of an accessor id (a UUID's 36, with room).
const ACL_ACCESSOR_BYTES_MAX: usize = 64;
/// Bytes of a member address (`ip:port` needs far fewer).
const ADDRESS_BYTES_MAX: usize = 256;

/// Which rule a request broke; the HTTP actor turns it into a status and a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rule {
    Key,
    /// A native write under the kie prefix, or a command only the node itself may propose.
    Reserved,
    Value,
    Label,
    Project,
    KieId,
    KieField,
    Member,
    /// An ACL policy or token that breaks the ACL rules.
    Acl,
}

/// A refused request: nothing was proposed.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[error("{message}")]
pub struct Invalid {
    pub rule: Rule,
    pub message: String,
}

fn invalid(rule: Rule, message: impl Into<String>) -> Invalid {
    Invalid { rule, message: message.into() }
}

/// Checks a command a client asked for. Internal commands (retiring a node, setting the cluster
/// id) are refused: only the leader proposes them, and never through this door.
pub fn client_command(command: &Command, limits: &Limits) -> Result<(), Invalid> {
    match command {
        Command::Put { key, value, labels, .. } => {
            native_key(key, limits)?;
            value_size(value.len(), limits)?;
            labels.as_ref().map_or(Ok(()), label_map)
        }
        Command::Delete { key, .. } => native_key(key, limits),
        Command::RetireNode { .. } => Err(invalid(Rule::Reserved, "retiring a node is not a client command")),
        Command::SetClusterId { .. } => Err(invalid(Rule::Reserved, "setting the cluster id is not a client command")),
        Command::KieCreate { project, id, key, labels, value, value_type, status } => {
            kie_project(project)?;
            kie_id(id)?;
            kie_key_name(key, limits)?;
            label_map(labels)?;
            value_size(value.len(), limits)?;
            one_of("value_type", value_type, &KIE_VALUE_TYPES)?;
            one_of("status", status, &KIE_STATUSES)
        }
        Command::KieUpdate { project, id, value, status } => {
            kie_project(project)?;
            kie_id(id)?;
            value.as_ref().map_or(Ok(()), |value| value_size(value.len(), limits))?;
            status.as_ref().map_or(Ok(()), |status| one_of("status", status, &KIE_STATUSES))
        }
        Command::KieDelete { project, ids } => {
            kie_project(project)?;
            if ids.len() > KIE_DELETE_IDS_MAX {
                return Err(invalid(Rule::KieId, format!("at most {KIE_DELETE_IDS_MAX} ids in one delete")));
            }
            ids.iter().try_for_each(|id| kie_id(id))
        }
        Command::Acl(change) => acl_command(change, limits),
        Command::Authorized { command, .. } => match **command {
            Command::Authorized { .. } => Err(invalid(Rule::Reserved, "an authorized command cannot wrap another")),
            ref command => client_command(command, limits),
        },
    }
}

fn acl_command(command: &AclCommand, limits: &Limits) -> Result<(), Invalid> {
    match command {
        AclCommand::Bootstrap { accessor, .. } | AclCommand::DeleteToken { accessor } => acl_accessor(accessor),
        AclCommand::PutPolicy { policy, .. } => acl_policy(policy, limits),
        AclCommand::DeletePolicy { name } => acl_name(name),
        AclCommand::CreateToken { accessor, policies, description, .. }
        | AclCommand::UpdateToken { accessor, policies, description } => {
            acl_accessor(accessor)?;
            acl_token_policies(policies)?;
            acl_description(description)
        }
    }
}

/// A policy: a valid name, at most [`ACL_RULES_MAX`] rules on prefixes no longer than a key.
pub fn acl_policy(policy: &Policy, limits: &Limits) -> Result<(), Invalid> {
    acl_name(&policy.name)?;
    if policy.rules.len() > ACL_RULES_MAX {
        return Err(invalid(Rule::Acl, format!("a policy has at most {ACL_RULES_MAX} rules")));
    }
    match policy.rules.iter().find(|rule| rule.prefix.len() > limits.key_bytes_max) {
        Some(_) => Err(invalid(Rule::Acl, format!("a rule's prefix is at most {} bytes", limits.key_bytes_max))),
        None => Ok(()),
    }
}

/// The policies of a token: valid names, at most [`ACL_TOKEN_POLICIES_MAX`], none twice.
pub fn acl_token_policies(names: &[String]) -> Result<(), Invalid> {
    if names.len() > ACL_TOKEN_POLICIES_MAX {
        return Err(invalid(Rule::Acl, format!("a token carries at most {ACL_TOKEN_POLICIES_MAX} policies")));
    }
    names.iter().try_for_each(|name| acl_name(name))?;
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    if distinct.len() != names.len() {
        return Err(invalid(Rule::Acl, "a token names each policy once"));
    }
    Ok(())
}

/// A policy name: 1 to 128 of `A-Z a-z 0-9 _ . -`.
pub fn acl_name(name: &str) -> Result<(), Invalid> {
    let valid = !name.is_empty()
        && name.len() <= ACL_NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        return Err(invalid(Rule::Acl, format!("policy name {name:?} must be 1 to 128 of A-Z a-z 0-9 _ . -")));
    }
    Ok(())
}

/// A token description: at most 256 characters, no control characters.
pub fn acl_description(description: &str) -> Result<(), Invalid> {
    if description.chars().count() > ACL_DESCRIPTION_CHARS_MAX || description.chars().any(char::is_control) {
        let message = format!("a description is at most {ACL_DESCRIPTION_CHARS_MAX} characters, none of them control");
        return Err(invalid(Rule::Acl, message));
    }
    Ok(())
}

/// An accessor id: 1 to 64 of `0-9 a-f -`.
pub fn acl_accessor(accessor: &str) -> Result<(), Invalid> {
    let valid = !accessor.is_empty()
        && accessor.len() <= ACL_ACCESSOR_BYTES_MAX
        && accessor.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
    if !valid {
        return Err(invalid(Rule::Acl, format!("{accessor:?} is not a token accessor")));
    }
    Ok(())
}

/// A key: 1 to `limits.key_bytes_max` bytes (UTF-8 is guaranteed by its type).
pub fn key(key: &str, limits: &Limits) -> Result<(), Invalid> {
    if key.is_empty() {
        return Err(invalid(Rule::Key, "the key is empty"));
    }
    if key.len() > limits.key_bytes_max {
        return Err(invalid(
            Rule::Key,
            format!("the key is {} bytes; the limit is {}", key.len(), limits.key_bytes_max),
        ));
    }
    Ok(())
}

/// A key native writes may change: the kie routes own everything under the kie prefix.
pub fn native_key(name: &str, limits: &Limits) -> Result<(), Invalid> {
    key(name, limits)?;
    if name.starts_with(KIE_PREFIX) {
        return Err(invalid(
            Rule::Reserved,
            format!("keys under {KIE_PREFIX} belong to the kie routes; write them there"),
        ));
    }
    Ok(())
}

pub fn value_size(len: usize, limits: &Limits) -> Result<(), Invalid> {
    if len > limits.value_bytes_max {
        return Err(invalid(Rule::Value, format!("the value exceeds the {}-byte limit", limits.value_bytes_max)));
    }
    Ok(())
}

/// One label: a name of 1 to 63 of `A-Z a-z 0-9 . _ - /`, a value of at most 255 characters
/// without control characters.
pub fn label(name: &str, value: &str) -> Result<(), Invalid> {
    let name_ok = !name.is_empty()
        && name.len() <= LABEL_NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if !name_ok {
        let message = format!("label name {name:?} must be 1 to {LABEL_NAME_BYTES_MAX} of A-Z a-z 0-9 . _ - /");
        return Err(invalid(Rule::Label, message));
    }
    if value.chars().count() > LABEL_VALUE_CHARS_MAX || value.chars().any(char::is_control) {
        let message =
            format!("label {name:?} has a value longer than {LABEL_VALUE_CHARS_MAX} or with control characters");
        return Err(invalid(Rule::Label, message));
    }
    Ok(())
}

/// Every label of a record, and at most [`LABELS_MAX`] of them.
pub fn label_map(labels: &Labels) -> Result<(), Invalid> {
    if labels.len() > LABELS_MAX {
        return Err(invalid(Rule::Label, format!("at most {LABELS_MAX} labels")));
    }
    labels.iter().try_for_each(|(name, value)| label(name, value))
}

/// A kie project: 1 to 64 of `A-Z a-z 0-9 _ . -`, not a native route's name.
pub fn kie_project(project: &str) -> Result<(), Invalid> {
    let valid = !project.is_empty()
        && project.len() <= KIE_NAME_BYTES_MAX
        && project.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !RESERVED_PROJECTS.contains(&project);
    if !valid {
        let message =
            format!("project {project:?} must be 1 to 64 of A-Z a-z 0-9 _ . - and not one of {RESERVED_PROJECTS:?}");
        return Err(invalid(Rule::Project, message));
    }
    Ok(())
}

/// A kie kv id: 1 to 64 of `A-Z a-z 0-9 -`.
pub fn kie_id(id: &str) -> Result<(), Invalid> {
    if id.is_empty() || id.len() > KIE_NAME_BYTES_MAX || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid(Rule::KieId, format!("{id:?} is not a kv id")));
    }
    Ok(())
}

fn kie_key_name(name: &str, limits: &Limits) -> Result<(), Invalid> {
    key(name, limits).map_err(|error| invalid(Rule::KieField, format!("kie key: {}", error.message)))
}

fn one_of(field: &str, given: &str, allowed: &[&str]) -> Result<(), Invalid> {
    if !allowed.contains(&given) {
        return Err(invalid(Rule::KieField, format!("{field} {given:?} is not one of {allowed:?}")));
    }
    Ok(())
}

/// A member to add: a positive id and `ip:port` addresses, neither used by another member
/// (one process counted as several voters would let it acknowledge writes alone).
pub fn new_member<'a>(
    id: NodeId,
    member: &Member,
    others: impl IntoIterator<Item = (NodeId, &'a Member)>,
) -> Result<(), Invalid> {
    if id == 0 {
        return Err(invalid(Rule::Member, "node ids start at 1"));
    }
    for (name, address) in [("peer", &member.peer), ("http", &member.http)] {
        if address.len() > ADDRESS_BYTES_MAX || address.parse::<SocketAddr>().is_err() {
            return Err(invalid(Rule::Member, format!("the {name} address {address:?} is not an ip:port address")));
        }
    }
    for (other_id, other) in others {
        if other_id == id {
            continue;
        }
        let shared = [&member.peer, &member.http]
            .into_iter()
            .find(|address| [&other.peer, &other.http].into_iter().any(|taken| same_address(address, taken)));
        if let Some(address) = shared {
            return Err(invalid(Rule::Member, format!("{address} is already an address of member {other_id}")));
        }
    }
    Ok(())
}

/// Whether two addresses name the same socket (`127.0.0.1:1` and `127.0.0.1:01` do).
fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::Precondition;

    fn put(key: &str, value_len: usize) -> Command {
        Command::Put {
            key: key.into(),
            value: Bytes::from(vec![0; value_len]),
            labels: None,
            expect: Precondition::Always,
        }
    }

    #[test]
    fn client_puts_keep_to_keys_values_and_the_reserved_prefix() {
        let limits = Limits { key_bytes_max: 8, value_bytes_max: 4 };
        assert_eq!(client_command(&put("a", 4), &limits), Ok(()));
        assert_eq!(client_command(&put("", 1), &limits).unwrap_err().rule, Rule::Key);
        assert_eq!(client_command(&put("123456789", 1), &limits).unwrap_err().rule, Rule::Key);
        assert_eq!(client_command(&put("a", 5), &limits).unwrap_err().rule, Rule::Value);
        assert_eq!(client_command(&put(".kie/p/1", 1), &limits).unwrap_err().rule, Rule::Reserved);
    }

    #[test]
    fn retiring_a_node_is_never_a_client_command() {
        let error = client_command(&Command::RetireNode { id: 1 }, &Limits::default()).unwrap_err();
        assert_eq!(error.rule, Rule::Reserved);
    }

    #[test]
    fn kie_commands_are_checked_field_by_field() {
        let limits = Limits::default();
        let create = |project: &str, id: &str, value_type: &str| Command::KieCreate {
            project: project.into(),
            id: id.into(),
            key: "k".into(),
            labels: Labels::new(),
            value: Bytes::new(),
            value_type: value_type.into(),
            status: "enabled".into(),
        };
        assert_eq!(client_command(&create("default", "a-1", "text"), &limits), Ok(()));
        assert_eq!(client_command(&create("kv", "a-1", "text"), &limits).unwrap_err().rule, Rule::Project);
        assert_eq!(client_command(&create("default", "a/1", "text"), &limits).unwrap_err().rule, Rule::KieId);
        assert_eq!(client_command(&create("default", "a-1", "exe"), &limits).unwrap_err().rule, Rule::KieField);
        let many = Command::KieDelete { project: "p".into(), ids: vec!["a".into(); KIE_DELETE_IDS_MAX + 1] };
        assert_eq!(client_command(&many, &limits).unwrap_err().rule, Rule::KieId);
    }

    #[test]
    fn labels_keep_to_names_values_and_count() {
        assert_eq!(label("team/env", "prod-1"), Ok(()));
        assert!(label("", "x").is_err());
        assert!(label("bad name", "x").is_err());
        assert!(label("ok", "line\nbreak").is_err());
        let many: Labels = (0..=LABELS_MAX).map(|i| (format!("l{i}"), String::new())).collect();
        assert!(label_map(&many).is_err());
    }

    #[test]
    fn a_new_member_needs_its_own_addresses() {
        let member = |peer: &str, http: &str| Member { peer: peer.into(), http: http.into() };
        let one = member("127.0.0.1:7711", "127.0.0.1:7710");
        let others = [(1, &one)];
        assert_eq!(new_member(2, &member("127.0.0.1:7721", "127.0.0.1:7720"), others), Ok(()));
        assert!(new_member(5, &member("127.0.0.1:7711", "127.0.0.1:7750"), others).is_err());
        assert!(new_member(6, &member("127.0.0.1:7761", "127.0.0.1:7710"), others).is_err());
        assert!(
            new_member(6, &member("127.0.0.1:7710", "127.0.0.1:7760"), others).is_err(),
            "peer of one, http of other"
        );
        assert_eq!(new_member(1, &one, others), Ok(()), "a member re-added with its own addresses");
        assert!(new_member(0, &member("127.0.0.1:1", "127.0.0.1:2"), []).is_err());
        assert!(new_member(7, &member("nowhere", "127.0.0.1:2"), []).is_err());
    }
}
