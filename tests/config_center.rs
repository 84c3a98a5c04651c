//! The config-center API over real processes: labels, listing, long polls, the streaming watch
//! (across a leader kill and a restart of the node it is connected to), kie's routes with its
//! long-polling session, and clear errors for bad input.

#![cfg(not(madsim))]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_http::client::{ClientError, Exchanger, Method, Outgoing, Reply, Route, WatchItem};
use hyper::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use support::{Process, client, leader_index, start_static_cluster};

struct Api {
    endpoint: String,
    exchanger: Exchanger,
}

impl Api {
    fn new(endpoint: &str) -> Api {
        Api { endpoint: endpoint.to_string(), exchanger: Exchanger::default() }
    }

    async fn send(&self, method: Method, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send_with(method, path, body, &[]).await
    }

    async fn send_json(&self, method: Method, path: &str, body: Value) -> Reply {
        self.send_with(method, path, body.to_string(), &[("content-type", "application/json")]).await
    }

    async fn send_with(&self, method: Method, path: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Reply {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap())
            })
            .collect();
        let outgoing = Outgoing { method, path_and_query: path, headers, body: body.into() };
        self.exchanger.send(&self.endpoint, outgoing, Duration::from_secs(30)).await.expect("the node answers")
    }
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {:?}", reply.status, reply.body))
}

fn code(reply: &Reply) -> String {
    json_of(reply)["error"]["code"].as_str().unwrap_or_default().to_string()
}

async fn single_node(extra: &[&str]) -> (tempfile::TempDir, Process, Api) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let extra: Vec<String> = extra.iter().map(|flag| flag.to_string()).collect();
    let node = Process::start(root.path(), 1, &extra);
    leader_index(std::slice::from_ref(&node.http)).await;
    let api = Api::new(&node.http);
    (root, node, api)
}

/// Goal: labels are stored with values, listings filter by prefix and labels, in key order, and
/// paginate with a continuation token. Method: JSON puts, then lists page by page.
#[tokio::test]
async fn listings_filter_by_prefix_and_labels_and_paginate_in_key_order() {
    let (_root, _node, api) = single_node(&[]).await;
    for (key, env) in [("cfg/d", "prod"), ("cfg/a", "prod"), ("cfg/c", "test"), ("cfg/b", "prod"), ("other/x", "prod")]
    {
        let body = json!({"value": format!("value of {key}"), "labels": {"app": "order", "env": env}});
        let put = api.send_json(Method::PUT, &format!("/v1/kv/{key}"), body).await;
        assert_eq!(put.status, 200, "{:?}", put.body);
        assert_eq!(json_of(&put)["labels"]["env"], env);
    }
    let mut keys = Vec::new();
    let mut path = "/v1/kv?prefix=cfg/&label=env:prod&label=app:order&limit=2".to_string();
    loop {
        let page = json_of(&api.send(Method::GET, &path, Bytes::new()).await);
        assert_eq!(page["total"], 3);
        keys.extend(page["data"].as_array().unwrap().iter().map(|record| record["key"].as_str().unwrap().to_string()));
        match page["continue"].as_str() {
            Some(token) => path = format!("/v1/kv?prefix=cfg/&label=env:prod&label=app:order&limit=2&continue={token}"),
            None => break,
        }
    }
    assert_eq!(keys, ["cfg/a", "cfg/b", "cfg/d"]);
    let stale = json_of(&api.send(Method::GET, "/v1/kv?prefix=cfg/c&consistency=stale", Bytes::new()).await);
    assert_eq!(stale["data"][0]["labels"]["env"], "test");
    let relabel = api.send(Method::PUT, "/v1/kv/cfg/c", "raw body keeps the labels").await;
    assert_eq!(json_of(&relabel)["labels"]["env"], "test");
}

/// Goal: a long poll answers 304 with an empty body when nothing changes, returns at once when
/// something changed after the given revision, and wakes as soon as a change arrives. Method:
/// polls on a key and on a prefix with and without `revision`.
#[tokio::test]
async fn long_polls_time_out_with_304_and_wake_on_a_change() {
    let (_root, node, api) = single_node(&[]).await;
    let first = json_of(&api.send(Method::PUT, "/v1/kv/poll/a", "1").await);
    let revision = first["revision"].as_u64().unwrap();

    let started = Instant::now();
    let quiet = api.send(Method::GET, "/v1/kv/poll/a?wait=1s", Bytes::new()).await;
    assert_eq!(quiet.status, 304);
    assert!(quiet.body.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited");
    assert!(quiet.header("x-cairn-revision").is_some());

    let behind =
        api.send(Method::GET, &format!("/v1/kv/poll/a?wait=20s&revision={}", revision - 1), Bytes::new()).await;
    assert_eq!(json_of(&behind)["value"], "1", "a change after the given revision answers at once");

    let writer = Api::new(&node.http);
    let waker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.send(Method::PUT, "/v1/kv/poll/b", "2").await
    });
    let started = Instant::now();
    let woken = api.send(Method::GET, &format!("/v1/kv?prefix=poll/&wait=20s&revision={revision}"), Bytes::new()).await;
    waker.await.unwrap();
    assert_eq!(woken.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the change, not the timeout");
    assert_eq!(json_of(&woken)["total"], 2);
}

/// Goal: the kie long-polling session works against cairn: create a kv, a poll that times out
/// with 304, and an update that wakes a waiting poll at once with the new value and an advanced
/// update_revision; plus kie's other routes and errors. Method: the session with a short wait.
#[tokio::test]
async fn the_kie_long_polling_session_and_routes_work() {
    let (_root, node, api) = single_node(&[]).await;
    let created = api
        .send_json(
            Method::POST,
            "/v1/default/kie/kv",
            json!({"key": "timeout", "value": "1s", "labels": {"app": "default"}}),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let kv = json_of(&created);
    let id = kv["id"].as_str().unwrap().to_string();
    for field in [
        "id",
        "key",
        "value",
        "value_type",
        "create_revision",
        "update_revision",
        "status",
        "create_time",
        "update_time",
        "labels",
    ] {
        assert!(!kv[field].is_null(), "a kie kv has {field}: {kv}");
    }

    let quiet = api.send(Method::GET, "/v1/default/kie/kv?label=app:default&wait=2s", Bytes::new()).await;
    assert_eq!(quiet.status, 304);
    assert!(quiet.body.is_empty());
    let revision: u64 = quiet.header("x-kie-revision").expect("X-Kie-Revision").parse().unwrap();
    let unchanged =
        api.send(Method::GET, &format!("/v1/default/kie/kv?label=app:default&revision={revision}"), Bytes::new()).await;
    assert_eq!(unchanged.status, 304, "an unchanged revision is 304 at once");

    let writer = Api::new(&node.http);
    let update_path = format!("/v1/default/kie/kv/{id}");
    let waker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.send_json(Method::PUT, &update_path, json!({"value": "2s"})).await
    });
    let started = Instant::now();
    let woken = api
        .send(Method::GET, &format!("/v1/default/kie/kv?label=app:default&wait=20s&revision={revision}"), Bytes::new())
        .await;
    assert_eq!(waker.await.unwrap().status, 200);
    assert!(started.elapsed() < Duration::from_secs(5), "the update woke the poll");
    let listing = json_of(&woken);
    assert_eq!(listing["total"], 1);
    assert_eq!(listing["data"][0]["value"], "2s");
    assert!(listing["data"][0]["update_revision"].as_u64() > kv["update_revision"].as_u64());
    assert!(woken.header("x-kie-revision").is_some());

    let duplicate = api
        .send_json(
            Method::POST,
            "/v1/default/kie/kv",
            json!({"key": "timeout", "value": "3s", "labels": {"app": "default"}}),
        )
        .await;
    assert_eq!((duplicate.status.as_u16(), code(&duplicate)), (409, "kv_exists".to_string()));
    assert_eq!(json_of(&api.send(Method::GET, &format!("/v1/default/kie/kv/{id}"), Bytes::new()).await)["value"], "2s");
    let native = json_of(&api.send(Method::GET, &format!("/v1/kv/.kie/default/{id}"), Bytes::new()).await);
    assert_eq!(native["kie"]["key"], "timeout", "one store, two views");

    let second =
        json_of(&api.send_json(Method::POST, "/v1/default/kie/kv", json!({"key": "retries", "value": "3"})).await);
    let batch = json!({"ids": [id.clone(), second["id"].clone()]});
    assert_eq!(api.send_json(Method::DELETE, "/v1/default/kie/kv", batch).await.status, 204);
    let gone = api.send(Method::GET, &format!("/v1/default/kie/kv/{id}"), Bytes::new()).await;
    assert_eq!((gone.status.as_u16(), code(&gone)), (404, "project_not_found".to_string()));
    api.send_json(Method::POST, "/v1/default/kie/kv", json!({"key": "keep", "value": "x"})).await;
    let missing = api.send(Method::DELETE, &format!("/v1/default/kie/kv/{id}"), Bytes::new()).await;
    assert_eq!((missing.status.as_u16(), code(&missing)), (404, "kv_not_found".to_string()));
}

/// Goal: a watch delivers every mutation once, in revision order, across a leader kill and a
/// restart of the node it is connected to, resuming from the last revision it saw. Method: a
/// watcher on a follower collects events while 60 keys are written; the leader is killed after
/// 20 writes and the watcher's node restarted after 40; the watcher reconnects with
/// `start_revision = last + 1`; every revision must arrive exactly once and match its write.
/// Goal: the session of kie's own "after running" document works as written, trailing slash
/// included, and every collection route takes a trailing slash. Method: the document's POST to
/// `/v1/default/kie/kv/` and its GET of the list, then the other collections with a slash.
#[tokio::test]
async fn the_kie_documents_session_works_verbatim_and_collections_take_a_trailing_slash() {
    let (_root, _node, api) = single_node(&[]).await;
    let created = api
        .send_json(
            Method::POST,
            "/v1/default/kie/kv/",
            json!({"key": "timeout", "value": "2s", "labels": {"service": "order"}}),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let created = json_of(&created);
    assert_eq!((created["key"].as_str(), created["value"].as_str()), (Some("timeout"), Some("2s")));
    assert_eq!(created["labels"], json!({"service": "order"}));
    for field in ["id", "create_revision", "update_revision", "value_type", "status", "create_time", "update_time"] {
        assert!(!created[field].is_null(), "the document's answer has {field}: {created}");
    }
    let listed = json_of(&api.send(Method::GET, "/v1/default/kie/kv", Bytes::new()).await);
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["data"][0]["id"], created["id"]);
    let with_slash = json_of(&api.send(Method::GET, "/v1/default/kie/kv/", Bytes::new()).await);
    assert_eq!(with_slash, listed);

    api.send(Method::PUT, "/v1/kv/app/a", "1").await;
    let native = json_of(&api.send(Method::GET, "/v1/kv/?prefix=app/", Bytes::new()).await);
    assert_eq!(native["data"][0]["key"], "app/a", "{native}");
    let members = api.send(Method::GET, "/v1/cluster/members/", Bytes::new()).await;
    assert_eq!(json_of(&members)["members"][0]["id"], 1);
    for collection in ["/v1/acl/policies/", "/v1/acl/tokens/"] {
        let answer = api.send(Method::GET, collection, Bytes::new()).await;
        assert_eq!((answer.status.as_u16(), code(&answer)), (409, "acl_not_bootstrapped".into()), "{collection}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_across_a_leader_kill_and_a_restart_without_gaps_or_duplicates() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut nodes = start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let leader = leader_index(&endpoints).await;
    let watched = (leader + 1) % 3;

    let watcher_endpoints = endpoints.clone();
    let (done, mut finished) = tokio::sync::watch::channel(0u64);
    let watcher = tokio::spawn(async move {
        let client = client(watcher_endpoints);
        let mut seen: Vec<(u64, String, String)> = Vec::new();
        let mut next = 1;
        loop {
            let Ok(mut stream) = client.watch(Route::Prefer(watched), "w/", &[], Some(next)).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            loop {
                match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                    Ok(Ok(Some(WatchItem::Event(event)))) => {
                        let value = event.record.map(|record| record.value).unwrap_or_default();
                        seen.push((event.revision, event.key, value));
                        next = event.revision + 1;
                    }
                    Ok(Ok(Some(WatchItem::Progress(_)))) => {}
                    _ => break,
                }
                if *finished.borrow_and_update() != 0 && next > *finished.borrow() {
                    return seen;
                }
            }
        }
    });

    let writer = client(endpoints.clone());
    let mut acknowledged = BTreeMap::new();
    for i in 0..60 {
        if i == 20 {
            nodes[leader].kill();
        }
        if i == 40 {
            nodes[watched].restart();
        }
        let (key, value) = (format!("w/{i:02}"), format!("v{i}"));
        match writer.put(Route::Any, &key, Bytes::from(value.clone()), None).await {
            Ok(answer) => {
                acknowledged.insert(answer.value.mod_revision, (key, value));
            }
            Err(error) => assert!(matches!(error, ClientError::OutcomeUnknown { .. }), "{error}"),
        }
    }
    nodes[leader].restart();
    let last = writer.put(Route::Any, "w/zz", Bytes::from("end"), None).await.expect("a last write").value.mod_revision;
    done.send(last).unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(60), watcher).await.expect("the watcher catches up").unwrap();

    let revisions: Vec<u64> = seen.iter().map(|(revision, _, _)| *revision).collect();
    let expected: Vec<u64> = (1..=last).collect();
    assert_eq!(revisions, expected, "every revision once, in order");
    for (revision, (key, value)) in acknowledged {
        let event = &seen[(revision - 1) as usize];
        assert_eq!((&event.1, &event.2), (&key, &value), "the event at revision {revision} is its write");
    }
}

/// Goal: a watch from before the retained history is refused with 410 and the oldest revision,
/// so the client knows to list again. Method: a node keeping 5 events, 10 writes, a watch from 1.
#[tokio::test]
async fn a_watch_from_compacted_history_is_refused_with_the_oldest_revision() {
    let (_root, node, api) = single_node(&["--history-events", "5"]).await;
    for i in 0..10 {
        api.send(Method::PUT, &format!("/v1/kv/h/{i}"), "x").await;
    }
    let refused = api.send(Method::GET, "/v1/watch?start_revision=1", Bytes::new()).await;
    assert_eq!((refused.status.as_u16(), code(&refused)), (410, "revision_compacted".to_string()));
    assert_eq!(json_of(&refused)["oldest_revision"], 6);
    let watcher = client(vec![node.http.clone()]);
    assert!(matches!(watcher.watch(Route::Any, "", &[], Some(2)).await, Err(ClientError::Compacted { oldest: 6 })));
    let mut stream = watcher.watch(Route::Any, "", &[], Some(6)).await.expect("the retained history is served");
    assert!(matches!(stream.next().await, Ok(Some(WatchItem::Event(event))) if event.revision == 6));
}

/// A request that must be refused: method, path, body, headers, expected status and error code.
type BadRequest<'a> = (Method, &'a str, &'a str, &'a [(&'a str, &'a str)], u16, &'a str);

/// Goal: bad config-center input gets a 4xx with a code, never a panic. Method: one request per
/// kind of mistake; the node still serves afterwards.
#[tokio::test]
async fn bad_config_center_input_gets_clear_errors() {
    let (_root, _node, api) = single_node(&[]).await;
    let json = [("content-type", "application/json")];
    let cases: Vec<BadRequest> = vec![
        (Method::PUT, "/v1/kv/a", "{not json", &json, 400, "invalid_json"),
        (Method::PUT, "/v1/kv/a", r#"{"value":"x","labels":{"bad name":"x"}}"#, &json, 400, "invalid_label"),
        (Method::PUT, "/v1/kv/a", r#"{"value":"x","colour":"red"}"#, &json, 400, "invalid_json"),
        (Method::PUT, "/v1/kv/.kie/default/x", "v", &[], 400, "reserved_key"),
        (Method::GET, "/v1/kv?label=app", "", &[], 400, "invalid_label"),
        (Method::GET, "/v1/kv?wait=6m", "", &[], 400, "invalid_parameter"),
        (Method::GET, "/v1/kv/a?wait=forever", "", &[], 400, "invalid_parameter"),
        (Method::GET, "/v1/kv?continue=%%%", "", &[], 400, "invalid_parameter"),
        (Method::GET, "/v1/kv?limit=0", "", &[], 400, "invalid_parameter"),
        (Method::GET, "/v1/watch?progress_interval=1h", "", &[], 400, "invalid_parameter"),
        (Method::POST, "/v1/default/kie/kv", "[]", &json, 400, "invalid_json"),
        (
            Method::POST,
            "/v1/default/kie/kv",
            r#"{"key":"k","value":"v","status":"paused"}"#,
            &json,
            400,
            "invalid_json",
        ),
        (Method::POST, "/v1/bad%20project/kie/kv", r#"{"key":"k","value":"v"}"#, &json, 400, "invalid_project"),
        (Method::GET, "/v1/nowhere/kie/kv/0000", "", &[], 404, "project_not_found"),
        (Method::GET, "/v1/default/kie/kv?match=fuzzy", "", &[], 400, "invalid_parameter"),
        (Method::PUT, "/v1/default/kie/kv/not%2Fan%2Fid", r#"{"value":"v"}"#, &json, 400, "invalid_id"),
    ];
    for (method, path, body, headers, status, expected) in cases {
        let reply = api.send_with(method.clone(), path, body.to_string(), headers).await;
        assert_eq!(reply.status.as_u16(), status, "{method} {path}: {:?}", reply.body);
        assert_eq!(code(&reply), expected, "{method} {path}");
    }
    assert_eq!(api.send(Method::PUT, "/v1/kv/a", "fine").await.status, 200);
}
