//! The JSON bodies of the API, shared by the server (which writes them) and the client (which
//! reads them), so both sides agree by construction.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use cairn_node::acl::{Access, Policy, Rule, TokenView};
use cairn_node::api::MemberView;
use cairn_node::record::{KIE_PREFIX, Record};
use serde::{Deserialize, Serialize};

/// A record as the API shows it. Values that are valid UTF-8 are plain JSON strings; others are
/// base64 with `"value_encoding":"base64"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_encoding: Option<String>,
    /// The store's revision when this answer was produced.
    pub revision: u64,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// For records made through the kie-compatible routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kie: Option<KieFieldsBody>,
}

/// A kie kv's own fields, as native reads show them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KieFieldsBody {
    pub project: String,
    pub id: String,
    pub key: String,
    pub value_type: String,
    pub status: String,
}

impl RecordBody {
    pub fn new(record: &Record, revision: u64) -> RecordBody {
        let (value, value_encoding) = match std::str::from_utf8(&record.value) {
            Ok(text) => (text.to_string(), None),
            Err(_) => (BASE64.encode(&record.value), Some("base64".to_string())),
        };
        RecordBody {
            key: record.key.to_string(),
            value,
            value_encoding,
            revision,
            create_revision: record.create_revision,
            mod_revision: record.mod_revision,
            version: record.version,
            labels: record.labels.clone(),
            kie: record.kie.as_ref().map(|kie| KieFieldsBody {
                project: kie.project.to_string(),
                id: kie.id.to_string(),
                key: kie.key.to_string(),
                value_type: kie.value_type.clone(),
                status: kie.status.clone(),
            }),
        }
    }

    /// The value's bytes, decoding base64 when the body says so.
    pub fn value_bytes(&self) -> Result<Bytes, String> {
        match self.value_encoding.as_deref() {
            None => Ok(Bytes::copy_from_slice(self.value.as_bytes())),
            Some("base64") => BASE64.decode(&self.value).map(Bytes::from).map_err(|e| e.to_string()),
            Some(other) => Err(format!("unknown value encoding {other:?}")),
        }
    }
}

/// A `PUT /v1/kv/{key}` body sent as `application/json`: a value and labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `"base64"` when `value` is base64 of the bytes to store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_encoding: Option<String>,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListBody {
    pub revision: u64,
    pub total: usize,
    pub data: Vec<RecordBody>,
    /// Pass as `continue=` to get the next page; absent on the last page.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
}

/// One watch event. The capitalised fields repeat it in the shape of kie's cluster event
/// payload, for clients written against kie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEventBody {
    pub revision: u64,
    /// `put` or `delete`.
    pub action: String,
    pub key: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The new record, on puts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordBody>,
    #[serde(rename = "Key")]
    pub kie_key: String,
    #[serde(rename = "Action")]
    pub kie_action: String,
    #[serde(rename = "Labels")]
    pub kie_labels: BTreeMap<String, String>,
    #[serde(rename = "DomainID")]
    pub domain_id: String,
    #[serde(rename = "Project")]
    pub project: String,
}

/// A progress event: nothing matched up to this revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchProgressBody {
    pub revision: u64,
}

/// A kie kv, as kie's v1 API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KieKvBody {
    pub id: String,
    pub key: String,
    pub value: String,
    pub value_type: String,
    pub create_revision: u64,
    pub update_revision: u64,
    pub status: String,
    /// Unix seconds.
    pub create_time: u64,
    /// Unix seconds.
    pub update_time: u64,
    pub labels: BTreeMap<String, String>,
}

/// A kie listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KieListBody {
    pub total: usize,
    pub data: Vec<KieKvBody>,
}

/// `POST /v1/{project}/kie/kv`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KieCreateBody {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `PUT /v1/{project}/kie/kv/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KieUpdateBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `DELETE /v1/{project}/kie/kv`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KieDeleteBody {
    pub ids: Vec<String>,
}

/// The answer to a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteBody {
    pub deleted: bool,
    pub revision: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersBody {
    pub members: Vec<MemberView>,
}

/// A request to add a member (what `--join` sends).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberBody {
    pub id: u64,
    pub peer: String,
    pub http: String,
    /// Add as a non-voting learner (default false: a voter).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learner: bool,
}

/// An error answer's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The current record, on a failed compare-and-swap (`null` if the key is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Option<RecordBody>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Header carrying the store revision an answer was produced at.
pub const REVISION_HEADER: &str = "x-cairn-revision";
/// kie's header for the store revision on its routes.
pub const KIE_REVISION_HEADER: &str = "x-kie-revision";
/// On a backup: the raft log index its state was applied through, and how many keys it holds.
pub const SNAPSHOT_INDEX_HEADER: &str = "x-cairn-snapshot-index";
pub const SNAPSHOT_KEYS_HEADER: &str = "x-cairn-snapshot-keys";
/// Header carrying the id of the node that answered.
pub const NODE_HEADER: &str = "x-cairn-node";
/// Header carrying the id of the leader the answering node knows of.
pub const LEADER_HEADER: &str = "x-cairn-leader";
/// Request headers naming the client and its request serial, for safe retries of writes.
pub const CLIENT_HEADER: &str = "x-cairn-client";
pub const SERIAL_HEADER: &str = "x-cairn-serial";
/// On stale reads: the leader the answering node knows of (from raft, else gossip).
pub const KNOWN_LEADER_HEADER: &str = "x-cairn-known-leader";
/// On stale reads: milliseconds since the answering node last heard from a leader.
pub const LAST_CONTACT_HEADER: &str = "x-cairn-last-contact";
/// On stale reads: revisions between the answer and the newest the node has heard of.
pub const LAG_HEADER: &str = "x-cairn-lag";
/// Request header carrying a token's secret (Consul's `X-Consul-Token`); `Authorization: Bearer`
/// works as well.
pub const TOKEN_HEADER: &str = "x-cairn-token";

/// A token with its secret: the answer to a bootstrap and to a token's creation, the only
/// times the secret is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSecretBody {
    pub accessor: String,
    pub secret: String,
    pub policies: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// `POST /v1/acl/tokens`, `PUT /v1/acl/tokens/{accessor}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequestBody {
    pub policies: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// One rule of a policy as clients write it: on a key `prefix`, or on a kie `project` (the
/// prefix its kvs live under).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub access: Access,
}

/// `POST /v1/acl/policies`, `PUT /v1/acl/policies/{name}`, and how policies are shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<RuleBody>,
    #[serde(default)]
    pub cluster: Access,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoliciesBody {
    pub policies: Vec<PolicyBody>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensBody {
    pub tokens: Vec<TokenView>,
}

impl PolicyBody {
    /// The policy as the store keeps it: project rules become prefix rules.
    pub fn to_policy(&self) -> Result<Policy, String> {
        let rules = self.rules.iter().map(|rule| {
            let prefix = match (&rule.prefix, &rule.project) {
                (Some(prefix), None) => prefix.clone(),
                (None, Some(project)) => format!("{KIE_PREFIX}{project}/"),
                _ => return Err("each rule has a prefix or a project, not both".to_string()),
            };
            Ok(Rule { prefix, access: rule.access })
        });
        Ok(Policy { name: self.name.clone(), rules: rules.collect::<Result<_, _>>()?, cluster: self.cluster })
    }

    /// How a stored policy is shown: rules on a kie project's prefix as project rules.
    pub fn of(policy: &Policy) -> PolicyBody {
        let rules = policy.rules.iter().map(|rule| {
            let project = rule
                .prefix
                .strip_prefix(KIE_PREFIX)
                .and_then(|rest| rest.strip_suffix('/'))
                .filter(|project| !project.is_empty() && !project.contains('/'));
            match project {
                Some(project) => RuleBody { prefix: None, project: Some(project.to_string()), access: rule.access },
                None => RuleBody { prefix: Some(rule.prefix.clone()), project: None, access: rule.access },
            }
        });
        PolicyBody { name: policy.name.clone(), rules: rules.collect(), cluster: policy.cluster }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &[u8]) -> Record {
        Record {
            key: "k".into(),
            value: Bytes::copy_from_slice(value),
            create_revision: 1,
            mod_revision: 2,
            version: 2,
            labels: BTreeMap::new(),
            create_time_ms: 0,
            update_time_ms: 0,
            kie: None,
        }
    }

    #[test]
    fn text_values_are_plain_strings() {
        let body = RecordBody::new(&record(b"hello"), 9);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["value"], "hello");
        assert!(json.get("value_encoding").is_none());
        assert_eq!(json["revision"], 9);
        assert_eq!(body.value_bytes().unwrap(), "hello");
    }

    #[test]
    fn binary_values_are_base64_and_round_trip() {
        let body = RecordBody::new(&record(&[0xff, 0x00, 0xfe]), 9);
        assert_eq!(body.value_encoding.as_deref(), Some("base64"));
        let parsed: RecordBody = serde_json::from_str(&serde_json::to_string(&body).unwrap()).unwrap();
        assert_eq!(parsed.value_bytes().unwrap().as_ref(), &[0xff, 0x00, 0xfe]);
    }
}
