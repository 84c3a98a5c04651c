//! etcd's v3 JSON gateway (grpc-gateway in front of the KV service): keys and values travel as
//! base64 strings inside JSON, 64-bit integers as strings, and empty fields are left out, so a
//! range that found nothing has no `kvs` at all.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::json;

pub const PUT_PATH: &str = "/v3/kv/put";
pub const RANGE_PATH: &str = "/v3/kv/range";
/// Answers any member's status; used to check that an endpoint is an etcd gateway.
pub const STATUS_PATH: &str = "/v3/maintenance/status";

pub fn base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// `{"key": …, "value": …}`; the value is given already base64-encoded, so a run encodes its
/// value once rather than once per request.
pub fn put_body(key: &str, value_base64: &str) -> Bytes {
    Bytes::from(json!({ "key": base64(key.as_bytes()), "value": value_base64 }).to_string())
}

/// `{"key": …}`, with `"serializable": true` for a read the asked member answers from its own
/// state, without a quorum round.
pub fn range_body(key: &str, serializable: bool) -> Bytes {
    let mut body = json!({ "key": base64(key.as_bytes()) });
    if serializable {
        body["serializable"] = json!(true);
    }
    Bytes::from(body.to_string())
}

/// Whether a successful range answer holds any key. A substring test, not a JSON parse, because
/// it runs on every read and the client's CPU is shared with the servers under test; a value
/// cannot contain `"kvs"` because values are base64.
pub fn range_found(body: &[u8]) -> bool {
    body.windows(5).any(|window| window == b"\"kvs\"")
}

/// The message of a gateway error (`{"error": …, "code": N, "message": …}`), for the report.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed.as_ref().and_then(|value| value.get("message").or_else(|| value.get("error")));
    match message.and_then(serde_json::Value::as_str) {
        Some(message) => message.to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &Bytes) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn a_put_carries_the_key_and_value_in_base64() {
        let body = parse(&put_body("00000000", &base64(b"hello")));
        assert_eq!(body, json!({ "key": "MDAwMDAwMDA=", "value": "aGVsbG8=" }));
    }

    #[test]
    fn a_range_is_linearizable_unless_asked_to_be_serializable() {
        assert_eq!(parse(&range_body("k", false)), json!({ "key": "aw==" }));
        assert_eq!(parse(&range_body("k", true)), json!({ "key": "aw==", "serializable": true }));
    }

    #[test]
    fn a_range_answer_without_kvs_is_a_miss() {
        let found = br#"{"header":{"revision":"7"},"kvs":[{"key":"aw==","value":"dg=="}],"count":"1"}"#;
        assert!(range_found(found));
        assert!(!range_found(br#"{"header":{"cluster_id":"1","revision":"7"}}"#));
    }

    #[test]
    fn gateway_errors_are_reported_by_their_message() {
        let body = br#"{"error":"etcdserver: request timed out","code":14,"message":"etcdserver: request timed out"}"#;
        assert_eq!(error_message(body), "etcdserver: request timed out");
        assert_eq!(error_message(b"404 page not found"), "404 page not found");
    }
}
