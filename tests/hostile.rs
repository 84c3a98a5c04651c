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

/// The peer protocol the nodes speak (`PROTOCOL` in node/src/transport/message.rs).
const PEER_PROTOCOL: u8 = 6;

/// The first handshake frame a peer sends, encoded by hand as bincode's standard configuration
/// lays it out: protocol and node id as varints, no cluster id (a joiner's), then the 32-byte
/// nonce.
fn hello_frame(from: u8) -> Vec<u8> {
    let mut body = vec![PEER_PROTOCOL, from, 0];
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
    stream.write_all(&hello_frame(1)).await.unwrap();
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.expect("a challenge");
    let mut challenge = vec![0u8; u32::from_be_bytes(length) as usize];
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
    let attackers: Vec<PeerClient> = nodes
        .iter()
        .map(|node| PeerClient::new(Arc::new(PeerAuth::new(claimed, None, Arc::new(|| None))), node.peer.clone()))
        .collect();
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
            let mut hello_and_part_of_a_proof = hello_frame(9);
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

/// Decoders never trust lengths: one peer frame or gossip datagram whose bincode declares a
/// 2^44-byte string aborted the process (`memory allocation of 17592186044416 bytes failed`);
/// random and mutated datagrams panicked the gossip actor ("capacity overflow"), after which the
/// node showed `gossip_counters: null` and its peers saw it down for good.
mod decoders {
    use std::io::{Read, Write};
    use std::net::{TcpStream, UdpSocket};
    use std::time::Duration;

    use bytes::Bytes;
    use cairn_http::client::{CairnClient, Route};
    use cairn_node::api::{ClusterView, Consistency};
    use cairn_node::gossip::{GossipCounters, PeerState};

    use crate::support::{Process, client, eventually, wait_for_voters};

    /// Bytes the gossip envelope puts before foca's packet: magic, cluster id, tag.
    const GOSSIP_ENVELOPE_BYTES: usize = 3 + 8 + 32;

    /// The probe's 31-byte frame: envelope id 7, `PeerRequest::Forward(Forward::Read { key, .. })`
    /// (variants 3 and 1) whose key declares 2^44 bytes (varint 0xFD + u64), then 15 bytes of
    /// the "key".
    fn lying_frame() -> Vec<u8> {
        let mut body = vec![7, 3, 1, 0xFD];
        body.extend_from_slice(&(1u64 << 44).to_le_bytes());
        body.extend_from_slice(b"0123456789abcde");
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        assert_eq!(frame.len(), 31);
        frame
    }

    /// Writes through the cluster and reads the write back: the node is alive and serving.
    async fn assert_serving(cluster: &CairnClient, key: &str) {
        cluster.put(Route::Any, key, Bytes::from("still here"), None).await.expect("a write after the attack");
        let read = cluster.get(Route::Any, key, Consistency::Linearizable).await.expect("a read after the attack");
        assert_eq!(read.value.map(|record| record.value), Some("still here".to_string()));
    }

    async fn view(endpoint: &str) -> Option<ClusterView> {
        client(vec![endpoint.to_string()]).cluster(Route::Only(0)).await.ok()
    }

    async fn counters(endpoint: &str) -> Option<GossipCounters> {
        view(endpoint).await?.gossip_counters
    }

    /// Goal: a frame declaring a huge string is refused, not allocated. Method: send the probe's
    /// 31-byte frame after a valid hello, where the handshake expects the caller's proof (the
    /// same frame after a completed handshake is the frame module's unit and property tests);
    /// the node closes that connection and keeps serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_frame_declaring_a_huge_string_leaves_the_node_serving() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let node = Process::start(root.path(), 1, &[]);
        let cluster = client(vec![node.http.clone()]);
        wait_for_voters(&cluster, 1).await;
        assert_serving(&cluster, "before").await;

        let mut stream = TcpStream::connect(&node.peer).expect("the peer port accepts");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        stream.write_all(&super::hello_frame(7)).expect("the hello is sent");
        stream.write_all(&lying_frame()).expect("the frame is sent");
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest);
        // The node's challenge is all it sends before it closes.
        let challenge_bytes = rest.get(..4).map_or(0, |length| 4 + u32::from_be_bytes(length.try_into().unwrap()));
        assert!(
            closed.is_ok() && rest.len() == challenge_bytes as usize,
            "the node closes the connection without answering: {closed:?} {rest:?}"
        );

        assert_serving(&cluster, "after").await;
        assert!(!node.log().contains("memory allocation"), "{}", node.log());
    }

    /// A tiny xorshift generator: the datagrams are the same on every run.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    /// `count` datagrams: random bytes, and `valid` with a byte flipped, cut short, or with a
    /// byte after the envelope replaced by a varint declaring a huge or random length.
    fn hostile_datagrams(valid: &[u8], count: usize) -> Vec<Vec<u8>> {
        let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
        (0..count)
            .map(|_| {
                let mut datagram = valid.to_vec();
                let at = GOSSIP_ENVELOPE_BYTES + random.below(valid.len() - GOSSIP_ENVELOPE_BYTES);
                match random.below(4) {
                    0 => (0..random.below(1400)).map(|_| random.next() as u8).collect(),
                    1 => {
                        datagram[at] ^= (random.below(255) + 1) as u8;
                        datagram
                    }
                    2 => {
                        datagram.truncate(at);
                        datagram
                    }
                    _ => {
                        let declared =
                            if random.below(2) == 0 { u64::MAX - random.next() % 1024 } else { random.next() };
                        let varint = [vec![0xFD], declared.to_le_bytes().to_vec()].concat();
                        datagram.splice(at..at + 1, varint);
                        datagram
                    }
                }
            })
            .collect()
    }

    /// Goal: no datagram crashes a node or its gossip. Method: node 1 is given a test socket as
    /// a gossip seed, so it announces to it; that real datagram, with the sender's peer address
    /// length rewritten to 2^44 (the probe's 154-byte datagram), is sent back, then 3,000 random
    /// and mutated ones. Node 1 keeps serving, its counters stay readable and count the drops,
    /// and node 2 still sees it alive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_gossip_datagrams_leave_the_node_serving_and_gossiping() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let listener = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        listener.set_read_timeout(Some(Duration::from_secs(20))).expect("a read timeout");
        let seed = listener.local_addr().expect("an address").to_string();
        let first = Process::start(root.path(), 1, &["--gossip-seeds".to_string(), seed]);
        let second = Process::start(root.path(), 2, &["--join".to_string(), first.http.clone()]);
        let cluster = client(vec![first.http.clone(), second.http.clone()]);
        wait_for_voters(&cluster, 2).await;
        let node_1_alive_for_node_2 = || async {
            let state = view(&second.http).await?.nodes.iter().find(|node| node.id == 1)?.gossip.as_ref()?.state;
            (state == PeerState::Alive).then_some(())
        };
        eventually(Duration::from_secs(30), "node 2 sees node 1 alive", node_1_alive_for_node_2).await;

        let mut announce = vec![0u8; 1500];
        let (length, gossip) = listener.recv_from(&mut announce).expect("node 1 announces to its seed");
        announce.truncate(length);
        // foca's header starts with the sender's identity: its id (one varint byte for id 1),
        // then the length of its peer address.
        let mut lying = announce[..GOSSIP_ENVELOPE_BYTES + 1].to_vec();
        lying.push(0xFD);
        lying.extend_from_slice(&(1u64 << 44).to_le_bytes());
        lying.extend_from_slice(&announce[GOSSIP_ENVELOPE_BYTES + 2..]);
        let before = counters(&first.http).await.expect("gossip counters before the attack");
        listener.send_to(&lying, gossip).expect("the lying datagram is sent");
        for (sent, datagram) in hostile_datagrams(&announce, 3000).iter().enumerate() {
            listener.send_to(datagram, gossip).expect("a hostile datagram is sent");
            if sent % 200 == 0 {
                // Leave the node's receive buffer room: the point is decoding them, not dropping.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        assert_serving(&cluster, "after-gossip").await;
        let after = eventually(Duration::from_secs(10), "the drops counted", || async {
            let after = counters(&first.http).await?;
            (after.malformed > before.malformed && after.refused > before.refused).then_some(after)
        })
        .await;
        assert_eq!(after.restarts, 0, "no datagram failed the gossip actor");
        eventually(Duration::from_secs(15), "node 2 still sees node 1 alive", node_1_alive_for_node_2).await;
        assert!(!first.log().contains("panicked"), "{}", first.log());
    }
}
