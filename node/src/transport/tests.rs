//! The peer port against callers that do not play by the rules, over real loopback TCP: a
//! wrong secret, a claimed id without a proof, oversized frames before the handshake, and
//! connections held open to crowd members out.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::frame::{self, FRAME_BYTES_MAX};
use super::handshake::{Challenge, PeerAuth, Proof};
use super::message::Envelope;
use super::*;
use crate::api::Forward;
use crate::command::{ClusterId, NodeId};
use crate::rt::{self, Duration};

/// Answers every request with the id the caller proved.
struct Echo;

impl PeerHandler for Echo {
    fn is_member(&self, _id: NodeId) -> bool {
        true
    }

    async fn handle(&self, from: NodeId, _request: PeerRequest) -> PeerResponse {
        PeerResponse::refused(format!("heard {from}"))
    }

    /// Names each request's `prev_log_id` index, so the caller sees the order it was served in.
    async fn serve_stream(&self, _from: NodeId, mut lane: AppendLane) {
        while let Some(append) = lane.requests.recv().await {
            let index = append.rpc.prev_log_id.map_or(0, |id| id.index);
            lane.answers.send(append.id, PeerResponse::refused(index)).await;
        }
    }
}

fn auth(id: NodeId, secret: Option<&[u8]>, cluster: Option<u64>) -> Arc<PeerAuth> {
    Arc::new(PeerAuth::new(id, secret, Arc::new(move || cluster.map(ClusterId))))
}

/// A peer server on a free loopback port with `secret`; it stops when the sender drops.
async fn server(secret: &[u8]) -> (String, rt::watch::Sender<bool>) {
    server_of_cluster(secret, None).await
}

/// A peer server that knows its cluster's id.
async fn server_of_cluster(secret: &[u8], cluster: Option<u64>) -> (String, rt::watch::Sender<bool>) {
    server_with_auth(auth(100, Some(secret), cluster)).await
}

async fn server_with_auth(auth: Arc<PeerAuth>) -> (String, rt::watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = rt::watch::channel(false);
    rt::spawn(serve(listener, auth, Arc::new(Echo), stopped));
    (address, stop)
}

fn request() -> PeerRequest {
    PeerRequest::Forward(Forward::RemoveMember { id: 2 })
}

async fn call_as(id: NodeId, secret: &[u8], address: &str) -> Result<PeerResponse, RpcError> {
    let client = PeerClient::new(auth(id, Some(secret), None), address.to_string());
    client.call(request(), Duration::from_secs(2)).await
}

/// Reads until the server closes the connection; fails if it answers anything or stays open.
async fn assert_closed_without_answer(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    let read = rt::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "expected the server to close the connection, got {read:?}");
}

/// Goal: callers that know the secret are served under the id they proved; one with another
/// secret never gets a request through.
#[tokio::test]
async fn members_with_the_secret_are_served_and_a_caller_without_it_is_refused() {
    let (address, _stop) = server(b"s3cret").await;
    let answer = call_as(1, b"s3cret", &address).await.unwrap();
    assert!(matches!(answer, PeerResponse::Refused(text) if text == "heard 1"));
    let outsider = call_as(1, b"guess", &address).await;
    assert!(matches!(outsider, Err(RpcError::Unreachable(_))), "{outsider:?}");
}

/// Goal: the probe's attack. A raw client sends a Hello claiming a member's id, cannot prove it,
/// and sends a request anyway: the connection is closed and nothing is answered.
#[tokio::test]
async fn a_caller_that_claims_an_id_without_proving_it_is_closed_unanswered() {
    let (address, _stop) = server(b"s3cret").await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let hello = auth(1, Some(b"guess"), None).hello();
    stream.write_all(&frame::encode(&hello).unwrap()).await.unwrap();
    let body = frame::read_frame(&mut stream).await.unwrap().expect("a challenge");
    let _challenge: Challenge = frame::decode(&body).unwrap();
    let forged = Proof { proof: [0; 32] };
    stream.write_all(&frame::encode(&forged).unwrap()).await.unwrap();
    let _ = stream.write_all(&frame::encode(&Envelope { id: 1, body: request() }).unwrap()).await;
    assert_closed_without_answer(&mut stream).await;
}

/// Goal: before the handshake nothing larger than a handshake frame is read: a 64 MiB length
/// prefix closes the connection at once instead of reserving 64 MiB.
#[tokio::test]
async fn an_unproven_caller_cannot_declare_a_large_frame() {
    let (address, _stop) = server(b"s3cret").await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(&(FRAME_BYTES_MAX as u32).to_be_bytes()).await.unwrap();
    stream.write_all(&[0u8; 4096]).await.unwrap();
    assert_closed_without_answer(&mut stream).await;
}

/// Goal: connections that never finish a handshake (the probe held 256, which kept a killed
/// leader's followers from electing anyone) cannot keep a member from connecting.
#[tokio::test]
async fn idle_connections_cannot_keep_a_member_out() {
    let (address, _stop) = server(b"s3cret").await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(&[0, 0, 0, 200, 1, 2, 3]).await.unwrap();
        idle.push(stream);
    }
    let answer = call_as(1, b"s3cret", &address).await.unwrap();
    assert!(matches!(answer, PeerResponse::Refused(text) if text == "heard 1"));
}

/// Goal: without a cluster secret the handshake still runs (and checks the protocol), so nodes
/// without one talk to each other; a node with a secret refuses them.
#[tokio::test]
async fn nodes_without_a_secret_talk_only_to_each_other() {
    let (address, _stop) = server(b"").await;
    let open = PeerClient::new(auth(1, None, None), address.clone());
    assert!(open.call(request(), Duration::from_secs(2)).await.is_ok());
    assert!(call_as(1, b"s3cret", &address).await.is_err());
}

/// Goal: a node of another cluster (its data directory came from elsewhere, or an address
/// reaches the wrong cluster) gets no request through, even with the same secret; a node that
/// does not know its cluster yet (a joiner) and one of the same cluster are served.
#[tokio::test]
async fn a_node_of_another_cluster_is_refused_at_the_handshake() {
    let (address, _stop) = server_of_cluster(b"s3cret", Some(7)).await;
    let call = |cluster: Option<u64>| {
        let client = PeerClient::new(auth(1, Some(b"s3cret"), cluster), address.clone());
        async move { client.call(request(), Duration::from_secs(2)).await }
    };
    let stranger = call(Some(8)).await;
    assert!(
        matches!(&stranger, Err(RpcError::Unreachable(reason)) if reason.contains("belongs to cluster 0000000000000007")),
        "{stranger:?}"
    );
    assert!(call(Some(7)).await.is_ok(), "a member of the same cluster is served");
    assert!(call(None).await.is_ok(), "a joiner that does not know the cluster id yet is served");
}

/// Goal: a connection opened while the answerer did not know its cluster yet is closed once it
/// learns an id that differs from the caller's, before it handles another request.
#[tokio::test]
async fn a_connection_is_refused_once_the_answerer_learns_it_is_of_another_cluster() {
    let learned = Arc::new(std::sync::Mutex::new(None));
    let source = learned.clone();
    let answerer = PeerAuth::new(100, Some(b"s3cret"), Arc::new(move || source.lock().unwrap().map(ClusterId)));
    let (address, _stop) = server_with_auth(Arc::new(answerer)).await;
    let client = PeerClient::new(auth(1, Some(b"s3cret"), Some(8)), address.clone());
    assert!(client.call(request(), Duration::from_secs(2)).await.is_ok(), "nobody knows of a conflict yet");
    *learned.lock().unwrap() = Some(7);
    let refused = client.call(request(), Duration::from_secs(2)).await;
    assert!(matches!(refused, Err(RpcError::Disconnected)), "{refused:?}");
    let reconnected = client.call(request(), Duration::from_secs(2)).await;
    assert!(
        matches!(&reconnected, Err(RpcError::Unreachable(reason)) if reason.contains("belongs to cluster")),
        "{reconnected:?}"
    );
}

/// Goal: the caller's side of the same rule: a caller that did not know its cluster when it
/// connected stops using the connection once it learns an id that differs from the answerer's.
#[tokio::test]
async fn a_caller_stops_using_a_connection_once_it_learns_the_answerer_is_of_another_cluster() {
    let (address, _stop) = server_of_cluster(b"s3cret", Some(7)).await;
    let learned = Arc::new(std::sync::Mutex::new(None));
    let source = learned.clone();
    let caller = PeerAuth::new(1, Some(b"s3cret"), Arc::new(move || source.lock().unwrap().map(ClusterId)));
    let client = PeerClient::new(Arc::new(caller), address);
    assert!(client.call(request(), Duration::from_secs(2)).await.is_ok(), "nobody knows of a conflict yet");
    *learned.lock().unwrap() = Some(8);
    let refused = client.call(request(), Duration::from_secs(2)).await;
    assert!(
        matches!(&refused, Err(RpcError::Unreachable(reason)) if reason.contains("belongs to cluster")),
        "{refused:?}"
    );
}

/// Peer TLS for `name` from `ca`, its files on a disk of its own.
fn peer_tls(ca: &crate::tls::DevCa, name: &str) -> Arc<crate::tls::PeerTls> {
    use crate::storage::Disk;
    let disk = Arc::new(crate::storage::SimDisk::new(7));
    let identity = ca.node(name, &["127.0.0.1".to_string()]).unwrap();
    let dir = std::path::Path::new("/tls");
    disk.create_dir_all(dir).unwrap();
    for (file, bytes) in [("node.crt", &identity.cert_pem), ("node.key", &identity.key_pem)] {
        disk.write_at(&dir.join(file), 0, bytes).unwrap();
    }
    disk.write_at(&dir.join("ca.crt"), 0, ca.cert_pem().as_bytes()).unwrap();
    let files = crate::tls::TlsFiles {
        cert: dir.join("node.crt"),
        key: dir.join("node.key"),
        trusted_ca: Some(dir.join("ca.crt")),
        client_cert_auth: true,
    };
    crate::tls::PeerTls::load(disk, files).unwrap()
}

/// Goal: with peer TLS, members holding certificates of the cluster's CA talk (the secret's
/// handshake runs inside TLS), a peer with another CA's certificate gets no request through,
/// and a caller that skips TLS is closed before any frame of its is read.
#[tokio::test]
async fn peer_tls_admits_only_certificates_of_the_cluster_ca() {
    let ca = crate::tls::DevCa::new("cluster CA").unwrap();
    let answerer = PeerAuth::new(100, Some(b"s3cret"), Arc::new(|| None)).with_tls(peer_tls(&ca, "node-100"));
    let (address, _stop) = server_with_auth(Arc::new(answerer)).await;
    let call = |auth: PeerAuth| {
        let client = PeerClient::new(Arc::new(auth), address.clone());
        async move { client.call(request(), Duration::from_secs(2)).await }
    };
    let member = PeerAuth::new(1, Some(b"s3cret"), Arc::new(|| None)).with_tls(peer_tls(&ca, "node-1"));
    let answer = call(member).await;
    assert!(matches!(&answer, Ok(PeerResponse::Refused(text)) if text == "heard 1"), "{answer:?}");

    let stranger_ca = crate::tls::DevCa::new("another CA").unwrap();
    let stranger = PeerAuth::new(1, Some(b"s3cret"), Arc::new(|| None)).with_tls(peer_tls(&stranger_ca, "node-1"));
    let refused = call(stranger).await;
    assert!(refused.is_err(), "{refused:?}");

    let mut plain = TcpStream::connect(&address).await.unwrap();
    let hello = auth(1, Some(b"s3cret"), None).hello();
    plain.write_all(&frame::encode(&hello).unwrap()).await.unwrap();
    let mut answer = Vec::new();
    let _ = rt::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(answer.is_empty() || answer[0] == 0x15, "only a TLS alert may come back: {answer:?}");
}

fn append(index: u64) -> openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> {
    let leader = openraft::vote::leader_id_adv::CommittedLeaderId { term: 1, node_id: 1 };
    openraft::raft::AppendEntriesRequest {
        vote: openraft::Vote::new(1, 1),
        prev_log_id: Some(openraft::LogId::new(leader, index)),
        entries: Vec::new(),
        leader_commit: None,
    }
}

/// Goal: a stream's requests are served in the order they were sent and answered in that
/// order, with many in flight at once. Method: two streams on one connection each send 200
/// requests before awaiting any answer; the server names each request's index as it serves it.
#[tokio::test]
async fn a_streams_requests_are_served_and_answered_in_order_with_many_in_flight() {
    let (address, _stop) = server(b"s3cret").await;
    let client = Arc::new(PeerClient::new(auth(1, Some(b"s3cret"), None), address));
    let deadline = rt::Instant::now() + Duration::from_secs(10);
    let streams = [
        client.open_stream(Duration::from_secs(2)).await.unwrap(),
        client.open_stream(Duration::from_secs(2)).await.unwrap(),
    ];
    let mut calls = Vec::new();
    for index in 0..200 {
        for stream in &streams {
            let request = PeerRequest::StreamAppend { stream: stream.id(), rpc: append(index), lease: None };
            calls.push((index, stream.send(request, deadline).await.unwrap()));
        }
    }
    for (index, mut call) in calls {
        let answer = call.answer().await.unwrap();
        assert!(
            matches!(&answer, PeerResponse::Refused(served) if *served == index.to_string()),
            "{index}: {answer:?}"
        );
    }
}

/// Holds every stream open without serving it, as a raft that stopped taking appends would.
struct Stalled;

impl PeerHandler for Stalled {
    fn is_member(&self, _id: NodeId) -> bool {
        true
    }

    async fn handle(&self, _from: NodeId, _request: PeerRequest) -> PeerResponse {
        PeerResponse::refused("stalled")
    }

    async fn serve_stream(&self, _from: NodeId, _lane: AppendLane) {
        std::future::pending::<()>().await;
    }
}

/// Goal: a stream whose lane fills is closed, and stays closed. Method: against a server whose
/// streams are never served, a caller sends 300 requests on one stream: the lane holds 256, the
/// next is refused for being too many, and every later one because the stream ended.
#[tokio::test]
async fn a_stream_that_overfills_its_lane_is_closed_for_good() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (_stop, stopped) = rt::watch::channel(false);
    rt::spawn(serve(listener, auth(100, Some(b"s3cret"), None), Arc::new(Stalled), stopped));
    let client = Arc::new(PeerClient::new(auth(1, Some(b"s3cret"), None), address));
    let deadline = rt::Instant::now() + Duration::from_secs(2);
    let stream = client.open_stream(Duration::from_secs(2)).await.unwrap();
    let mut calls = Vec::new();
    for index in 0..300 {
        let request = PeerRequest::StreamAppend { stream: stream.id(), rpc: append(index), lease: None };
        calls.push(stream.send(request, deadline).await.unwrap());
    }
    let mut answers = Vec::new();
    for mut call in calls.split_off(256) {
        answers.push(match call.answer().await {
            Ok(PeerResponse::Refused(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        });
    }
    assert_eq!(answers[0], "too many appends in flight on the stream");
    assert!(answers[1..].iter().all(|reason| reason == "the append stream ended"), "{answers:?}");
}
