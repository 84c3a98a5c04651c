//! Access control with real `cairn serve` processes: the bootstrap, 401 and 403, prefix rules
//! with deny, cluster and kie rules, listings and watches filtered, the anonymous policy, a
//! revoked token losing its open watch and long poll, ACLs surviving a restart from a snapshot,
//! and the `stale-acl-cache` bug caught by the revocation check.

#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{CairnClient, ClientError, Route, WatchItem};
use cairn_http::wire::{PolicyBody, RuleBody, TokenRequestBody};
use cairn_node::acl::Access;
use cairn_node::api::Consistency;
use support::{Process, client, leader_index, start_static_cluster};

fn as_token(endpoints: &[String], secret: &str) -> CairnClient {
    client(endpoints.to_vec()).with_token(Some(secret)).expect("a token is a header value")
}

fn rule(prefix: &str, access: Access) -> RuleBody {
    RuleBody { prefix: Some(prefix.to_string()), project: None, access }
}

fn policy(name: &str, rules: Vec<RuleBody>, cluster: Access) -> PolicyBody {
    PolicyBody { name: name.to_string(), rules, cluster }
}

/// The code of a refusal, or a panic naming what came instead.
fn refusal<T: std::fmt::Debug>(answer: Result<T, ClientError>) -> (u16, String) {
    match answer {
        Err(ClientError::Rejected { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn token_with(management: &CairnClient, policies: &[&str]) -> String {
    let body = TokenRequestBody {
        policies: policies.iter().map(|name| name.to_string()).collect(),
        description: String::new(),
    };
    management.acl_create_token(Route::Any, &body).await.expect("the management token creates tokens").secret
}

/// Goal: the whole ACL matrix on a three-node cluster, through followers as well as the
/// leader. Method: bootstrap, then check each door with tokens of different policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_policies_decide_every_read_write_listing_and_watch() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let nodes = start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let leader = leader_index(&endpoints).await;
    let follower = (leader + 1) % endpoints.len();
    let open = client(endpoints.clone());

    // Before the bootstrap nothing changes for existing users.
    open.put(Route::Any, "before", Bytes::from("1"), None).await.expect("writes work before the bootstrap");
    let (status, code) = refusal(open.acl_policies(Route::Any).await);
    assert_eq!((status, code.as_str()), (409, "acl_not_bootstrapped"));

    let root_token = open.acl_bootstrap(Route::Any).await.expect("the first bootstrap succeeds");
    assert_eq!(root_token.policies, ["management"]);
    assert_eq!(root_token.secret.len(), 32);
    let (status, code) = refusal(open.acl_bootstrap(Route::Any).await);
    assert_eq!((status, code.as_str()), (409, "acl_bootstrapped"));

    // Without a token, or with a made-up one: 401 everywhere but the health probe.
    assert_eq!(refusal(open.put(Route::Any, "k", Bytes::from("v"), None).await), (401, "unauthenticated".into()));
    assert_eq!(refusal(open.get(Route::Any, "before", Consistency::Linearizable).await).0, 401);
    assert_eq!(refusal(open.status(Route::Any).await).0, 401);
    let guess = as_token(&endpoints, "0123456789abcdef0123456789abcdef");
    assert_eq!(refusal(guess.get(Route::Any, "before", Consistency::Stale).await).0, 401);

    let management = as_token(&endpoints, &root_token.secret);
    let app = policy("app", vec![rule("app/", Access::Write), rule("app/secret/", Access::Deny)], Access::Read);
    management.acl_put_policy(Route::Any, &app, false).await.expect("a policy is created");
    let reader = policy("reader", vec![rule("public/", Access::Read)], Access::Deny);
    management.acl_put_policy(Route::Any, &reader, false).await.expect("a second policy is created");
    let (status, code) = refusal(management.acl_put_policy(Route::Any, &reader, false).await);
    assert_eq!((status, code.as_str()), (409, "policy_exists"));
    let unknown = TokenRequestBody { policies: vec!["nope".into()], description: String::new() };
    assert_eq!(refusal(management.acl_create_token(Route::Any, &unknown).await).1, "unknown_policy");

    let app_client = as_token(&endpoints, &token_with(&management, &["app"]).await);
    let reader_client = as_token(&endpoints, &token_with(&management, &["reader"]).await);
    for key in ["public/1", "public/2", "app/a", "secret/s"] {
        management.put(Route::Any, key, Bytes::from("v"), None).await.expect("management writes anything");
    }

    // Prefix rules, longest first, deny beating the write on app/; through a follower too.
    app_client.put(Route::Prefer(follower), "app/x", Bytes::from("1"), None).await.expect("app/ is writable");
    assert_eq!(
        refusal(app_client.put(Route::Any, "other", Bytes::from("1"), None).await),
        (403, "permission_denied".into())
    );
    assert_eq!(refusal(app_client.put(Route::Any, "app/secret/k", Bytes::from("1"), None).await).0, 403);
    let read =
        app_client.get(Route::Only(follower), "app/x", Consistency::Linearizable).await.expect("a forwarded read");
    assert_eq!(read.value.map(|record| record.value), Some("1".to_string()));
    assert_eq!(refusal(reader_client.get(Route::Any, "app/x", Consistency::Linearizable).await).0, 403);
    assert_eq!(refusal(reader_client.delete(Route::Any, "public/1", None).await).0, 403);

    // Cluster rules: read shows status and members, only write changes membership.
    app_client.status(Route::Any).await.expect("cluster: read shows the status");
    assert_eq!(refusal(app_client.remove_member(Route::Any, 3).await).0, 403);
    assert_eq!(refusal(reader_client.members(Route::Any).await).0, 403);
    assert_eq!(refusal(app_client.acl_tokens(Route::Any).await).0, 403, "only management manages ACLs");

    // Listings show and count only readable keys.
    let listed =
        reader_client.list(Route::Any, "", &[], 100, None, Consistency::Linearizable).await.expect("a listing");
    let keys: Vec<&str> = listed.value.data.iter().map(|record| record.key.as_str()).collect();
    assert_eq!(keys, ["public/1", "public/2"]);
    assert_eq!(listed.value.total, 2);

    // A watch over everything delivers only the readable events, history included.
    let mut watch = reader_client.watch(Route::Only(follower), "", &[], Some(1)).await.expect("a watch opens");
    management.put(Route::Any, "secret/t", Bytes::from("v"), None).await.expect("a write nobody may read");
    management.put(Route::Any, "public/3", Bytes::from("v"), None).await.expect("a readable write");
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("public/3") {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Ok(Some(WatchItem::Event(event)))) => seen.push(event.key),
            Ok(Ok(Some(WatchItem::Progress(_)))) => {}
            other => panic!("the watch ended early: {other:?}; saw {seen:?}"),
        }
    }
    assert_eq!(seen, ["public/1", "public/2", "public/3"], "no event of an unreadable key");

    // The anonymous policy covers requests without a token.
    let anonymous = policy("anonymous", vec![rule("public/", Access::Read)], Access::Deny);
    management.acl_put_policy(Route::Any, &anonymous, false).await.expect("the anonymous policy");
    let public = open.get(Route::Any, "public/1", Consistency::Linearizable).await.expect("anonymous reads public/");
    assert!(public.value.is_some());
    assert_eq!(refusal(open.get(Route::Any, "secret/s", Consistency::Linearizable).await).0, 401);

    // kie projects map to their prefixes.
    let kie = PolicyBody {
        name: "kie".into(),
        rules: vec![RuleBody { prefix: None, project: Some("shop".into()), access: Access::Write }],
        cluster: Access::Deny,
    };
    let shown = management.acl_put_policy(Route::Any, &kie, false).await.expect("a project policy").value;
    assert_eq!(shown.rules[0].project.as_deref(), Some("shop"), "shown as the project rule it was written as");
    let kie_secret = token_with(&management, &["kie"]).await;
    let create = |project: &str| {
        let (endpoint, secret, project) = (endpoints[leader].clone(), kie_secret.clone(), project.to_string());
        async move { raw_kie_create(&endpoint, &secret, &project).await }
    };
    assert_eq!(create("shop").await, 200);
    assert_eq!(create("bank").await, 403);

    // ACLs survive a restart of every node.
    let mut nodes = nodes;
    for node in &mut nodes {
        node.restart();
    }
    support::eventually(Duration::from_secs(30), "a leader after the restart", || async {
        let status = management.status(Route::Any).await.ok()?;
        status.value.leader.map(|_| ())
    })
    .await;
    assert_eq!(refusal(open.put(Route::Any, "after", Bytes::from("1"), None).await).0, 401, "still enforced");
    app_client.put(Route::Any, "app/after", Bytes::from("1"), None).await.expect("tokens survive the restart");
}

async fn raw_kie_create(endpoint: &str, secret: &str, project: &str) -> u16 {
    use cairn_http::client::{Exchanger, Method, Outgoing};
    use hyper::header::{HeaderName, HeaderValue};
    let headers = vec![
        (HeaderName::from_static("authorization"), HeaderValue::from_str(&format!("Bearer {secret}")).unwrap()),
        (HeaderName::from_static("content-type"), HeaderValue::from_static("application/json")),
    ];
    let path = format!("/v1/{project}/kie/kv");
    let body = Bytes::from(r#"{"key":"timeout","value":"3s","labels":{"env":"prod"}}"#);
    let outgoing = Outgoing { method: Method::POST, path_and_query: &path, headers, body };
    let reply = Exchanger::default().send(endpoint, outgoing, Duration::from_secs(10)).await.expect("the node answers");
    reply.status.as_u16()
}

/// Deletes a token that holds an open watch and a long poll, and narrows a policy under a
/// reader; `Err` says what still let the token read.
async fn revocation_reaches_open_requests(endpoint: &str) -> Result<(), String> {
    let endpoints = vec![endpoint.to_string()];
    let open = client(endpoints.clone());
    let root_token = open.acl_bootstrap(Route::Any).await.map_err(|e| format!("bootstrap: {e}"))?;
    let management = as_token(&endpoints, &root_token.secret);
    let reader = policy("reader", vec![rule("public/", Access::Read)], Access::Deny);
    management.acl_put_policy(Route::Any, &reader, false).await.map_err(|e| format!("policy: {e}"))?;
    let body = TokenRequestBody { policies: vec!["reader".into()], description: "doomed".into() };
    let doomed = management.acl_create_token(Route::Any, &body).await.map_err(|e| format!("token: {e}"))?;
    let doomed_client = as_token(&endpoints, &doomed.secret);
    management.put(Route::Any, "public/a", Bytes::from("1"), None).await.map_err(|e| format!("put: {e}"))?;
    doomed_client.get(Route::Any, "public/a", Consistency::Linearizable).await.map_err(|e| format!("read: {e}"))?;
    let mut watch = doomed_client.watch(Route::Any, "public/", &[], None).await.map_err(|e| format!("watch: {e}"))?;
    let revision = management.status(Route::Any).await.map_err(|e| format!("status: {e}"))?.value.revision;
    let poll = {
        let doomed_client = as_token(&endpoints, &doomed.secret);
        tokio::spawn(async move {
            doomed_client
                .poll(Route::Any, "public/never", Duration::from_secs(20), revision, Consistency::Linearizable)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let accessor = doomed.accessor.clone();
    management.acl_delete_token(Route::Any, &accessor).await.map_err(|e| format!("delete: {e}"))?;
    let revoked_at = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match watch.next().await {
                Ok(Some(WatchItem::Denied { code })) => return Ok(code),
                Ok(Some(WatchItem::Progress(_))) => {}
                other => return Err(format!("the watch went on with {other:?}")),
            }
        }
    })
    .await;
    match ended {
        Ok(Ok(code)) if code == "unauthenticated" => {}
        Ok(Ok(code)) => return Err(format!("the watch ended with {code}")),
        Ok(Err(why)) => return Err(why),
        Err(_) => return Err("the revoked token's watch stayed open 3 s after the revocation".into()),
    }
    let polled = tokio::time::timeout(Duration::from_secs(3), poll).await;
    match polled {
        Ok(Ok(Err(ClientError::Rejected { status: 401, .. }))) => {}
        Ok(other) => return Err(format!("the revoked token's long poll ended with {other:?}")),
        Err(_) => return Err("the revoked token's long poll was still waiting 3 s after the revocation".into()),
    }
    if revoked_at.elapsed() > Duration::from_secs(3) {
        return Err(format!("revocation took {:?} to reach open requests", revoked_at.elapsed()));
    }
    match doomed_client.get(Route::Any, "public/a", Consistency::Linearizable).await {
        Err(ClientError::Rejected { status: 401, .. }) => Ok(()),
        other => Err(format!("a deleted token still reads: {other:?}")),
    }
}

/// Goal: deleting a token ends its open watch (with an `unauthenticated` error event) and its
/// long poll (401) within about a second, and later requests are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_loses_its_open_watch_and_long_poll_within_a_second() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    if let Err(why) = revocation_reaches_open_requests(&node.http).await {
        panic!("{why}\n{}", node.log());
    }
}

/// Goal: the revocation check catches a store that keeps serving revoked tokens from a stale
/// cache (the deliberate `stale-acl-cache` bug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bug_stale_acl_cache_is_caught_by_the_revocation_check() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &["--inject-bugs".to_string(), "stale-acl-cache".to_string()]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let caught = revocation_reaches_open_requests(&node.http).await;
    assert!(caught.is_err(), "the revocation check passed against a node serving revoked tokens from a stale cache");
}

/// Raw header names and values, values as bytes so that they can be hostile.
type RawHeaders<'a> = &'a [(&'a str, &'a [u8])];

/// One raw request: its status and the error code of its JSON body (a panic if the body is not
/// an error in the API's shape).
async fn raw_error(endpoint: &str, method: &str, path: &str, headers: RawHeaders<'_>, body: Vec<u8>) -> (u16, String) {
    use cairn_http::client::{Exchanger, Method, Outgoing};
    use hyper::header::{HeaderName, HeaderValue};
    let headers = headers
        .iter()
        .map(|(name, value)| {
            (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_bytes(value).expect("a header value"))
        })
        .collect();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let outgoing = Outgoing { method, path_and_query: path, headers, body: Bytes::from(body) };
    let reply = Exchanger::default().send(endpoint, outgoing, Duration::from_secs(10)).await.expect("the node answers");
    let json: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{method_path}: not JSON ({e}): {:?}", reply.body, method_path = path));
    let code = json["error"]["code"].as_str().unwrap_or_else(|| panic!("{path}: no error code in {json}"));
    (reply.status.as_u16(), code.to_string())
}

/// Goal: hostile requests to the ACL routes and hostile tokens get a clear refusal (status and
/// JSON code), change nothing, and leave the node serving. Method: malformed and conflicting
/// token headers, oversized and malformed policy and token bodies, a JSON nesting bomb, then a
/// check that the ACL state holds only what was legitimately created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_acl_requests_are_refused_with_a_code_and_change_nothing() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Process::start(root.path(), 1, &[]);
    let endpoint = node.http.clone();
    leader_index(std::slice::from_ref(&endpoint)).await;
    let open = client(vec![endpoint.clone()]);
    let root_token = open.acl_bootstrap(Route::Any).await.expect("the bootstrap succeeds");
    let bearer = format!("Bearer {}", root_token.secret);
    let management: RawHeaders<'_> = &[("authorization", bearer.as_bytes()), ("content-type", b"application/json")];

    let long_token = "a".repeat(4096);
    let tokens: [(RawHeaders<'_>, u16, &str); 6] = [
        (&[("authorization", b"Basic YWxhZGRpbjpvcGVuc2VzYW1l")], 401, "unauthenticated"),
        (&[("authorization", b"Bearer")], 401, "unauthenticated"),
        (&[("authorization", b"Bearer \xff\xfe")], 401, "unauthenticated"),
        (&[("x-cairn-token", b"\xff\xfe")], 401, "unauthenticated"),
        (&[("x-cairn-token", long_token.as_bytes())], 401, "unauthenticated"),
        (&[("authorization", bearer.as_bytes()), ("x-cairn-token", b"other")], 400, "invalid_header"),
    ];
    for (headers, status, code) in tokens {
        assert_eq!(raw_error(&endpoint, "GET", "/v1/acl/tokens", headers, Vec::new()).await, (status, code.into()));
        assert_eq!(raw_error(&endpoint, "GET", "/v1/kv/k", headers, Vec::new()).await, (status, code.into()));
    }

    let many_rules: Vec<String> = (0..257).map(|i| format!(r#"{{"prefix":"p{i}/","access":"read"}}"#)).collect();
    let long_prefix = format!(r#"{{"name":"long","rules":[{{"prefix":"{}","access":"read"}}]}}"#, "x".repeat(70_000));
    let bodies: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/v1/acl/policies", b"{not json".to_vec(), 400, "invalid_json"),
        (
            "POST",
            "/v1/acl/policies",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/acl/policies",
            br#"{"name":"p","rules":[{"prefix":"a","access":"admin"}]}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/acl/policies",
            format!(r#"{{"name":"p","rules":[{}]}}"#, many_rules.join(",")).into_bytes(),
            400,
            "invalid_acl",
        ),
        ("POST", "/v1/acl/policies", long_prefix.into_bytes(), 400, "invalid_acl"),
        (
            "POST",
            "/v1/acl/policies",
            format!(r#"{{"name":"{}","rules":[]}}"#, "n".repeat(1000)).into_bytes(),
            400,
            "invalid_acl",
        ),
        ("POST", "/v1/acl/policies", br#"{"name":"management","rules":[]}"#.to_vec(), 400, "reserved_policy"),
        ("POST", "/v1/acl/policies", vec![b' '; 3 * 1024 * 1024], 413, "body_too_large"),
        ("PUT", "/v1/acl/policies/a", br#"{"name":"b","rules":[]}"#.to_vec(), 400, "invalid_acl"),
        ("POST", "/v1/acl/tokens", br#"{"policies":["nope"]}"#.to_vec(), 400, "unknown_policy"),
        (
            "POST",
            "/v1/acl/tokens",
            format!(r#"{{"policies":[{}]}}"#, vec![r#""x""#; 40].join(",")).into_bytes(),
            400,
            "invalid_acl",
        ),
        ("DELETE", "/v1/acl/tokens/nobody", Vec::new(), 400, "invalid_acl"),
        ("DELETE", "/v1/acl/tokens/0000dead-beef", Vec::new(), 404, "token_not_found"),
        ("POST", "/v1/acl/tokens?surprise=1", br#"{"policies":[]}"#.to_vec(), 400, "unknown_parameter"),
    ];
    for (method, path, body, status, code) in bodies {
        let answer = raw_error(&endpoint, method, path, management, body).await;
        assert_eq!(answer, (status, code.to_string()), "{method} {path}\n{}", node.log());
    }

    let management_client = as_token(std::slice::from_ref(&endpoint), &root_token.secret);
    let policies = management_client.acl_policies(Route::Any).await.expect("the node still serves");
    assert!(policies.is_empty(), "no hostile request created a policy: {policies:?}");
    let tokens = management_client.acl_tokens(Route::Any).await.expect("the node still serves");
    assert_eq!(tokens.len(), 1, "only the bootstrap token exists: {tokens:?}");
    assert!(node.log().to_lowercase().find("panicked").is_none(), "{}", node.log());
}
