//! The HTTP API of a real single-node `cairn serve` process: records, compare-and-swap,
//! deletes, and a clear error (status plus JSON code) for every kind of bad input.

#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{Exchanger, HeaderName, HeaderValue, Method, Outgoing, Reply};
use serde_json::Value;
use support::{Process, leader_index};

struct Api {
    endpoint: String,
    exchanger: Exchanger,
}

impl Api {
    async fn send(&self, method: Method, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send_with(method, path, &[], body).await
    }

    async fn send_with(&self, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap())
            })
            .collect();
        let outgoing = Outgoing { method, path_and_query: path, headers, body: body.into() };
        self.exchanger.send(&self.endpoint, outgoing, Duration::from_secs(10)).await.expect("the node answers")
    }

    /// Sends `request` as raw bytes and returns the status code and the body of the answer (the
    /// node closes the connection after answering a request whose body it could not read).
    async fn send_raw(&self, request: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&self.endpoint).await.expect("the node accepts");
        stream.write_all(request.as_bytes()).await.expect("the request is sent");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the node closes the connection: {:?}", String::from_utf8_lossy(&answer));
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.get(9..12).and_then(|code| code.parse().ok()).expect("a status line");
        let body = answer.split_once("\r\n\r\n").map_or(String::new(), |(_, body)| body.to_string());
        (status, body)
    }
}

fn json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {:?}", reply.status, reply.body))
}

fn error_code(reply: &Reply) -> String {
    json(reply)["error"]["code"].as_str().expect("an error code").to_string()
}

async fn single_node() -> (tempfile::TempDir, Process, Api) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let api = Api { endpoint: node.http.clone(), exchanger: Exchanger::default() };
    (root, node, api)
}

/// Goal: records carry etcd's revision fields, text stays text, binary is base64, and every
/// answer carries the store revision and the leader. Method: put, get, put again, get raw.
#[tokio::test]
async fn records_show_revisions_and_values_as_text_or_base64() {
    let (_root, _node, api) = single_node().await;
    let put = api.send(Method::PUT, "/v1/kv/config/app", "hello").await;
    assert_eq!(put.status, 200);
    let record = json(&put);
    assert_eq!(record["key"], "config/app");
    assert_eq!(record["value"], "hello");
    assert_eq!(record["version"], 1);
    assert_eq!(record["create_revision"], record["mod_revision"]);
    assert_eq!(put.header("x-cairn-revision").unwrap(), record["revision"].to_string());
    assert_eq!(put.header("x-cairn-leader"), Some("1"));

    let again = json(&api.send(Method::PUT, "/v1/kv/config/app", "world").await);
    assert_eq!(again["version"], 2);
    assert_eq!(again["create_revision"], record["create_revision"]);
    assert!(again["mod_revision"].as_u64() > record["mod_revision"].as_u64());

    let raw = api.send(Method::GET, "/v1/kv/config/app?raw", Bytes::new()).await;
    assert_eq!(raw.body, "world");
    let binary = json(&api.send(Method::PUT, "/v1/kv/bin", vec![0xffu8, 0, 0xfe]).await);
    assert_eq!(binary["value_encoding"], "base64");
    assert_eq!(binary["value"], "/wD+");
    for consistency in ["linearizable", "lease", "stale"] {
        let read = api.send(Method::GET, &format!("/v1/kv/config/app?consistency={consistency}"), Bytes::new()).await;
        assert_eq!(json(&read)["value"], "world", "consistency={consistency}");
    }
}

/// Goal: compare-and-swap and deletes behave as documented. Method: create-if-absent twice,
/// swap on the right and a wrong revision, delete twice, read the deleted key.
#[tokio::test]
async fn compare_and_swap_and_delete_report_what_happened() {
    let (_root, _node, api) = single_node().await;
    let created = api.send(Method::PUT, "/v1/kv/lock?prev_revision=0", "a").await;
    assert_eq!(created.status, 200);
    let revision = json(&created)["mod_revision"].as_u64().unwrap();
    let refused = api.send(Method::PUT, "/v1/kv/lock?prev_revision=0", "b").await;
    assert_eq!(refused.status, 412);
    assert_eq!(error_code(&refused), "revision_mismatch");
    assert_eq!(json(&refused)["current"]["value"], "a");
    let swapped = api.send(Method::PUT, &format!("/v1/kv/lock?prev_revision={revision}"), "c").await;
    assert_eq!(json(&swapped)["value"], "c");
    let stale_swap = api.send(Method::DELETE, &format!("/v1/kv/lock?prev_revision={revision}"), Bytes::new()).await;
    assert_eq!(stale_swap.status, 412);

    let deleted = json(&api.send(Method::DELETE, "/v1/kv/lock", Bytes::new()).await);
    assert_eq!(deleted["deleted"], true);
    let again = json(&api.send(Method::DELETE, "/v1/kv/lock", Bytes::new()).await);
    assert_eq!(again["deleted"], false);
    assert_eq!(again["revision"], deleted["revision"], "deleting nothing changes no revision");
    let missing = api.send(Method::GET, "/v1/kv/lock", Bytes::new()).await;
    assert_eq!(missing.status, 404);
    assert_eq!(error_code(&missing), "key_not_found");
}

/// Goal: bad input gets a 4xx with a machine-readable code, never a panic or a silent default.
/// Method: one request per kind of mistake; the node still serves afterwards.
#[tokio::test]
async fn bad_input_gets_a_clear_error_code() {
    let (_root, _node, api) = single_node().await;
    let long_key = "k".repeat(4097);
    let cases: Vec<(Method, String, Bytes, u16, &str)> = vec![
        (Method::GET, "/v1/kv/a?colour=red".into(), Bytes::new(), 400, "unknown_parameter"),
        (Method::GET, "/v1/kv/a?consistency=eventual".into(), Bytes::new(), 400, "invalid_parameter"),
        (Method::PUT, "/v1/kv/a?prev_revision=minus".into(), Bytes::new(), 400, "invalid_parameter"),
        (Method::PUT, format!("/v1/kv/{long_key}"), Bytes::new(), 400, "invalid_key"),
        (Method::PUT, "/v1/kv/".into(), Bytes::new(), 400, "invalid_key"),
        (Method::PUT, "/v1/kv/%FF%FE".into(), Bytes::new(), 400, "invalid_key"),
        (Method::PUT, "/v1/kv/big".into(), Bytes::from(vec![b'x'; 1024 * 1024 + 1]), 413, "value_too_large"),
        (Method::GET, "/v1/nothing-here".into(), Bytes::new(), 404, "not_found"),
        (Method::POST, "/v1/kv/a".into(), Bytes::new(), 405, "method_not_allowed"),
        (Method::POST, "/v1/cluster/members".into(), Bytes::from("{not json"), 400, "invalid_json"),
        (
            Method::POST,
            "/v1/cluster/members".into(),
            Bytes::from(r#"{"id":0,"peer":"127.0.0.1:1","http":"127.0.0.1:2"}"#),
            400,
            "invalid_member",
        ),
        (
            Method::POST,
            "/v1/cluster/members".into(),
            Bytes::from(r#"{"id":5,"peer":"nowhere","http":"127.0.0.1:2"}"#),
            400,
            "invalid_member",
        ),
        (Method::DELETE, "/v1/cluster/members/abc".into(), Bytes::new(), 400, "invalid_member"),
        (Method::DELETE, "/v1/cluster/members/1".into(), Bytes::new(), 409, "membership_change_refused"),
        (Method::DELETE, "/v1/cluster/members/9".into(), Bytes::new(), 404, "member_not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let reply = api.send(method.clone(), &path, body).await;
        let shown = &path[..path.len().min(60)];
        assert_eq!(reply.status.as_u16(), status, "{method} {shown}: {:?}", reply.body);
        assert_eq!(error_code(&reply), code, "{method} {shown}");
    }
    let still = api.send(Method::PUT, "/v1/kv/a", "fine").await;
    assert_eq!(still.status, 200);
}

/// Goal: the edge cases issue 18 found get the right answer, each a wrong answer before:
/// media types are case-insensitive, a malformed chunked body is 400 `invalid_body` (not 413),
/// `Last-Event-ID` past the node's revision (or at u64::MAX, which wrapped) is 400, and client
/// tags and query numbers are plain digits only (`+a` was taken). Method: one request each;
/// the well-formed neighbours still work.
#[tokio::test]
async fn http_edge_cases_get_the_right_answer() {
    let (_root, _node, api) = single_node().await;
    let body = r#"{"value":"5s","labels":{"app":"order"}}"#;
    for content_type in ["APPLICATION/JSON", "Application/Json; charset=utf-8", "application/json ;charset=UTF-8"] {
        let put = api.send_with(Method::PUT, "/v1/kv/json", &[("content-type", content_type)], body).await;
        let record = json(&put);
        assert_eq!(
            (record["value"].as_str(), record["labels"]["app"].as_str()),
            (Some("5s"), Some("order")),
            "{content_type}"
        );
    }
    let raw = api.send_with(Method::PUT, "/v1/kv/text", &[("content-type", "application/jsonl")], body).await;
    assert_eq!(json(&raw)["value"], body, "another media type is a raw value");

    for size in ["zz", "10000000000000000", "ffffffffffffffffff"] {
        let request = format!(
            "PUT /v1/kv/chunked HTTP/1.1\r\nHost: cairn\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\n"
        );
        let (status, answer) = api.send_raw(&request).await;
        assert_eq!(status, 400, "chunk size {size}: {answer}");
        assert!(answer.contains("\"invalid_body\""), "chunk size {size}: {answer}");
    }

    let revision: u64 = json(&api.send(Method::GET, "/v1/status", Bytes::new()).await)["revision"].as_u64().unwrap();
    for last in ["18446744073709551615", &(revision + 1).to_string(), "+1", "-1", " 1x"] {
        let watch = api.send_with(Method::GET, "/v1/watch", &[("last-event-id", last)], Bytes::new()).await;
        assert_eq!(
            (watch.status.as_u16(), error_code(&watch).as_str()),
            (400, "invalid_header"),
            "Last-Event-ID {last}"
        );
    }

    for (client, serial) in [("+a", "1"), ("+5", "1"), ("a", "+1"), ("a", "1 2"), ("0x1", "1"), (&"f".repeat(33), "1")]
    {
        let headers = [("x-cairn-client", client), ("x-cairn-serial", serial)];
        let put = api.send_with(Method::PUT, "/v1/kv/tagged", &headers, "v").await;
        assert_eq!((put.status.as_u16(), error_code(&put).as_str()), (400, "invalid_header"), "{client} {serial}");
    }
    let tagged =
        api.send_with(Method::PUT, "/v1/kv/tagged", &[("x-cairn-client", "aB0"), ("x-cairn-serial", "7")], "v").await;
    assert_eq!(tagged.status, 200);
    let plus = api.send(Method::PUT, "/v1/kv/tagged?prev_revision=+0", "v").await;
    assert_eq!((plus.status.as_u16(), error_code(&plus).as_str()), (400, "invalid_parameter"));
}

/// Goal: the status, members and health routes describe the node. Method: read them on a
/// single-node cluster.
#[tokio::test]
async fn status_members_and_health_describe_the_node() {
    let (_root, node, api) = single_node().await;
    let status = json(&api.send(Method::GET, "/v1/status", Bytes::new()).await);
    assert_eq!(status["id"], 1);
    assert_eq!(status["role"], "leader");
    assert_eq!(status["leader"], 1);
    for field in ["term", "commit_index", "applied_index", "revision", "snapshot_index", "purged_index"] {
        assert!(status[field].is_u64(), "status.{field} is a number: {status}");
    }
    let members = json(&api.send(Method::GET, "/v1/cluster/members", Bytes::new()).await);
    assert_eq!(members["members"][0]["id"], 1);
    assert_eq!(members["members"][0]["http"], node.http);
    assert_eq!(members["members"][0]["peer"], node.peer);
    assert_eq!(members["members"][0]["voter"], true);
    assert_eq!(members["members"][0]["leader"], true);
    assert_eq!(api.send(Method::GET, "/healthz", Bytes::new()).await.status, 200);
}

/// Goal: a single node, the only voter, needs no quorum to vouch for its state, so an idle one
/// still answers stale reads within a tight `max_stale`. Method: one write, two idle seconds, a
/// stale read bounded at 500 ms.
#[tokio::test]
async fn an_idle_single_node_answers_stale_reads_within_max_stale() {
    let (_root, _node, api) = single_node().await;
    assert_eq!(api.send(Method::PUT, "/v1/kv/idle", "v").await.status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = api.send(Method::GET, "/v1/kv/idle?consistency=stale&max_stale=500ms", Bytes::new()).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    let contact: u64 = read.header("x-cairn-last-contact").expect("a last contact").parse().expect("milliseconds");
    assert!(contact <= 500, "last contact {contact} ms ago");
}
