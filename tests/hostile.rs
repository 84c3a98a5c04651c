//! Real `cairn serve` processes against what a hostile client, a hostile peer or an unlucky
//! operator sends: each test reproduces one finding of the hostile probe (issue 11) and asserts
//! that the node stays alive and serving and that nothing acknowledged is lost.

#![cfg(not(madsim))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{Exchanger, Method, Outgoing, Reply, Route};
use cairn_node::api::{Consistency, MemberKind};
use cairn_node::raft::{Member, TypeConfig};
use cairn_node::transport::{PeerAuth, PeerClient, PeerRequest};
use hyper::header::{HeaderName, HeaderValue};
use openraft::raft::VoteRequest;
use serde_json::Value;
use support::{Process, client, eventually, free_address, leader_index, start_static_cluster, wait_for_voters};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn send(endpoint: &str, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let headers = headers
        .iter()
        .map(|(name, value)| (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap()))
        .collect();
    let outgoing = Outgoing { method, path_and_query: path, headers, body: Bytes::copy_from_slice(body.as_bytes()) };
    Exchanger::default().send(endpoint, outgoing, Duration::from_secs(20)).await.expect("the node answers")
}

fn error_code(reply: &Reply) -> String {
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    body["error"]["code"].as_str().unwrap_or_default().to_string()
}

/// One write as a client sends it: method, path and body.
struct Write {
    method: Method,
    path: String,
    body: &'static str,
}

fn writes(a: &str, b: &str) -> Vec<Write> {
    let write = |method: Method, path: String, body| Write { method, path, body };
    vec![
        write(Method::PUT, format!("/v1/kv/{a}"), "1"),
        write(Method::PUT, format!("/v1/kv/{b}"), "1"),
        write(Method::PUT, format!("/v1/kv/{a}"), "2"),
        write(Method::DELETE, format!("/v1/kv/{a}"), ""),
        write(Method::PUT, format!("/v1/kv/{a}?prev_revision=0"), "3"),
        write(Method::DELETE, format!("/v1/kv/{a}?prev_revision=999"), ""),
    ]
}

/// Goal: the probe's poison pill (a put then a delete under one client tag panicked `apply` on
/// every replica, again after every restart) and its silent cousins (a reused tag answered with
/// a made-up record). Method: for every ordered pair of different writes, the first is sent
/// under a fresh tag and the second under the same tag; the second must be refused with 409
/// `client_tag_reused` and change nothing, a retry of the first must get the first's answer,
/// and the node must serve after a restart.
#[tokio::test]
async fn a_client_tag_reused_for_any_other_write_is_refused_and_the_node_survives() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Process::start(root.path(), 1, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let mut pair = 0;
    for first in 0..6 {
        for second in (0..6).filter(|second| *second != first) {
            pair += 1;
            let (a, b) = (format!("pair-{pair}-a"), format!("pair-{pair}-b"));
            let writes = writes(&a, &b);
            let tag = [("X-Cairn-Client", format!("{:x}", 1000 + pair)), ("X-Cairn-Serial", "1".to_string())];
            let tag: Vec<(&str, &str)> = tag.iter().map(|(name, value)| (*name, value.as_str())).collect();
            let (w1, w2) = (&writes[first], &writes[second]);
            let answer = send(&node.http, w1.method.clone(), &w1.path, &tag, w1.body).await;
            let reused = send(&node.http, w2.method.clone(), &w2.path, &tag, w2.body).await;
            assert_eq!(reused.status.as_u16(), 409, "pair {first}/{second}: {:?}", reused.body);
            assert_eq!(error_code(&reused), "client_tag_reused");
            let retry = send(&node.http, w1.method.clone(), &w1.path, &tag, w1.body).await;
            assert_eq!((retry.status, &retry.body), (answer.status, &answer.body), "pair {first}/{second} retry");
            if first != 1 {
                let never_written = send(&node.http, Method::GET, &format!("/v1/kv/{b}"), &[], "").await;
                assert_eq!(never_written.status.as_u16(), 404, "pair {first}/{second} made up {b}");
            }
        }
    }
    node.restart();
    leader_index(std::slice::from_ref(&node.http)).await;
    let written = send(&node.http, Method::PUT, "/v1/kv/after-restart", &[], "x").await;
    assert_eq!(written.status.as_u16(), 200, "{}", node.log());
}

/// The first handshake frame a peer sends, encoded by hand as bincode's standard configuration
/// lays it out: protocol and node id as varints, then the 32-byte nonce.
fn hello_frame(protocol: u8, from: u8) -> Vec<u8> {
    let mut body = vec![protocol, from];
    body.extend_from_slice(&[7u8; 32]);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Goal: the probe's peer-port attack (a raw client claiming any node id forwarded writes and
/// removed members). Method: with `--cluster-secret`, a raw client sends a Hello claiming node
/// 1, reads the challenge, answers with a proof it cannot know and then a request; the node
/// closes the connection without answering, logs why, and keeps serving.
#[tokio::test]
async fn a_peer_that_cannot_prove_the_cluster_secret_is_closed_unanswered() {
    let root = tempfile::tempdir().unwrap();
    let node = Process::start(root.path(), 1, &["--cluster-secret".into(), "s3cret".into()]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let mut stream = TcpStream::connect(&node.peer).await.unwrap();
    stream.write_all(&hello_frame(3, 1)).await.unwrap();
    let mut challenge = [0u8; 4 + 32 + 32];
    stream.read_exact(&mut challenge).await.expect("a challenge");
    let mut proof = 32u32.to_be_bytes().to_vec();
    proof.extend_from_slice(&[0u8; 32]);
    stream.write_all(&proof).await.unwrap();
    let _ = stream.write_all(&[0, 0, 0, 3, 1, 4, 0]).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection must close unanswered: {read:?} {rest:?}");
    let written = client(vec![node.http.clone()]).put(Route::Any, "still-serving", Bytes::from("1"), None).await;
    assert!(written.is_ok(), "{written:?}");
    eventually(Duration::from_secs(5), "the refusal in the log", || async {
        node.log().contains("does not know the cluster secret").then_some(())
    })
    .await;
}

/// Goal: one process counted as several voters (the probe added ids 5 and 6 with node 1's
/// addresses, and then node 1 acknowledged a write alone with two of five nodes down). Method:
/// adding a member with another member's peer or HTTP address is refused with 400
/// `invalid_member`, and the membership is unchanged.
#[tokio::test]
async fn a_member_with_another_members_address_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let node = Process::start(root.path(), 1, &[]);
    leader_index(std::slice::from_ref(&node.http)).await;
    let cluster = client(vec![node.http.clone()]);
    for (peer, http) in [(node.peer.clone(), free_address()), (free_address(), node.http.clone())] {
        let added = cluster.add_member(Route::Any, 5, &Member { peer, http }, MemberKind::Voter).await;
        let error = added.expect_err("an address in use is refused");
        assert!(error.to_string().contains("invalid_member"), "{error}");
    }
    assert_eq!(cluster.members(Route::Any).await.unwrap().len(), 1);
}

/// Goal: a voter added where nothing listens was promoted in 18 ms, and one real follower's
/// death then stopped the cluster. Method: in a three-node cluster, adding node 4 at addresses
/// where nothing listens is refused with 409 (it stays a learner), and with one follower killed
/// the other two still commit writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_never_caught_up_is_not_promoted() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let cluster = client(endpoints.clone());
    wait_for_voters(&cluster, 3).await;
    let nowhere = Member { peer: free_address(), http: free_address() };
    let added = cluster.add_member(Route::Any, 4, &nowhere, MemberKind::Voter).await;
    let error = added.expect_err("a voter that cannot catch up is not promoted");
    assert!(error.to_string().contains("membership_change_refused"), "{error}");
    let members = cluster.members(Route::Any).await.unwrap();
    assert!(members.iter().any(|member| member.id == 4 && !member.voter), "{members:?}");
    let leader = leader_index(&endpoints).await;
    nodes[(leader + 1) % 3].kill();
    let written = cluster.put(Route::Only(leader), "with-one-follower-down", Bytes::from("1"), None).await;
    assert!(written.is_ok(), "{written:?}");
}

/// Goal: removing a voter of a two-voter cluster once left it unable to commit for good (the
/// removed node stopped as soon as its retirement applied, before the joint configuration it
/// was needed for had committed). Method: node 2 joins node 1, node 1 (the leader) is removed;
/// the call succeeds and node 2 then leads and commits writes alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_of_a_two_voter_cluster_completes() {
    let root = tempfile::tempdir().unwrap();
    let first = Process::start(root.path(), 1, &[]);
    let second = Process::start(root.path(), 2, &["--join".into(), first.http.clone()]);
    let both = client(vec![first.http.clone(), second.http.clone()]);
    wait_for_voters(&both, 2).await;
    assert_eq!(leader_index(std::slice::from_ref(&first.http)).await, 0);
    let removed = both.remove_member(Route::Only(0), 1).await;
    assert!(removed.is_ok(), "{removed:?}\n{}", first.log());
    let survivor = client(vec![second.http.clone()]);
    leader_index(std::slice::from_ref(&second.http)).await;
    let written = survivor.put(Route::Any, "after-removal", Bytes::from("1"), None).await;
    assert!(written.is_ok(), "{written:?}\n{}", second.log());
    let read = survivor.get(Route::Any, "after-removal", Consistency::Linearizable).await.unwrap();
    assert_eq!(read.value.map(|record| record.value), Some("1".to_string()));
}

/// Goal: a follower that fell behind while 1 MiB values (the documented limit) were written
/// never caught up: the leader's batch exceeded the frame limit forever. Method: with one
/// follower killed, 80 values of 1 MiB are written; the follower restarts and must apply
/// everything the leader committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_by_many_large_values_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let cluster = client(endpoints.clone());
    wait_for_voters(&cluster, 3).await;
    let leader = leader_index(&endpoints).await;
    let lagging = (leader + 1) % 3;
    nodes[lagging].kill();
    let value = Bytes::from(vec![b'v'; 1024 * 1024]);
    for i in 0..80 {
        let written = cluster.put(Route::Only(leader), &format!("large-{i}"), value.clone(), None).await;
        assert!(written.is_ok(), "write {i}: {written:?}");
    }
    let committed = cluster.status(Route::Only(leader)).await.unwrap().value.commit_index;
    nodes[lagging].restart();
    eventually(Duration::from_secs(60), "the lagging follower to catch up", || async {
        let status = cluster.status(Route::Only(lagging)).await.ok()?;
        (status.value.applied_index >= committed).then_some(())
    })
    .await;
    let read = cluster.get(Route::Only(lagging), "large-79", Consistency::Stale).await.unwrap();
    assert_eq!(read.value.map(|record| record.value.len()), Some(1024 * 1024));
}

/// Goal: the probe's vote storm (`Vote` requests flagged as a leadership transfer, which voters
/// grant despite a live leader's lease, drove the term from 1 to 5,098 in 20 s and failed
/// writes). Method: without a cluster secret, a client claiming a member's id sends every node
/// 100 such votes with ever higher terms and a longer log; the leader keeps its term and its
/// leadership, and writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_claiming_a_leadership_transfer_do_not_unseat_a_live_leader() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    let cluster = client(endpoints.clone());
    wait_for_voters(&cluster, 3).await;
    let leader = leader_index(&endpoints).await;
    let term = cluster.status(Route::Only(leader)).await.unwrap().value.term;
    let claimed = nodes[(leader + 1) % 3].id;
    let attackers: Vec<PeerClient> =
        nodes.iter().map(|node| PeerClient::new(Arc::new(PeerAuth::new(claimed, None)), node.peer.clone())).collect();
    for round in 1..=100u64 {
        for attacker in &attackers {
            let leader_id = openraft::vote::leader_id_adv::CommittedLeaderId { term: term + round, node_id: claimed };
            let vote = VoteRequest::<TypeConfig> {
                vote: openraft::Vote::new(term + round, claimed),
                last_log_id: Some(openraft::LogId::new(leader_id, 1_000_000)),
                leadership_transfer: true,
            };
            let _ = attacker.call(PeerRequest::Vote(vote), Duration::from_secs(1)).await;
        }
    }
    let status = cluster.status(Route::Only(leader)).await.unwrap().value;
    assert_eq!((status.term, status.role), (term, cairn_node::api::Role::Leader), "the leader was unseated");
    let written = cluster.put(Route::Any, "after-the-storm", Bytes::from("1"), None).await;
    assert!(written.is_ok(), "{written:?}");
}

/// Goal: the probe held 256 connections per peer port (a Hello and a partial frame each), and
/// a killed leader's followers could then elect no one for as long as they were held. Method:
/// 300 connections that send a Hello and part of a proof are held to each follower's peer port, the
/// leader is killed, and the followers must still elect a leader that commits writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connections_do_not_keep_followers_from_electing_a_leader() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_static_cluster(root.path(), &[]);
    let endpoints: Vec<String> = nodes.iter().map(|node| node.http.clone()).collect();
    wait_for_voters(&client(endpoints.clone()), 3).await;
    let leader = leader_index(&endpoints).await;
    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    let mut held = Vec::new();
    for &follower in &followers {
        for _ in 0..300 {
            let mut stream = TcpStream::connect(&nodes[follower].peer).await.unwrap();
            let mut hello_and_part_of_a_proof = hello_frame(3, 9);
            hello_and_part_of_a_proof.extend_from_slice(&[0, 0, 0, 32, 1, 2]);
            let _ = stream.write_all(&hello_and_part_of_a_proof).await;
            held.push(stream);
        }
    }
    nodes[leader].kill();
    let survivors: Vec<String> = followers.iter().map(|&index| endpoints[index].clone()).collect();
    leader_index(&survivors).await;
    let written = client(survivors).put(Route::Any, "after-the-flood", Bytes::from("1"), None).await;
    assert!(written.is_ok(), "{written:?}");
    drop(held);
}
