//! Hostile input against real `cairn serve` processes (tokio mode): each test reproduces a probe
//! that crashed or poisoned a node, then asserts the node is alive, serving, and lost nothing.
//!
//! Sections are separate modules so each part of issue 11 can add its own without conflicts.

#![cfg(not(madsim))]

mod support;

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

    /// `Hello { protocol: 2, from: 7 }`: the handshake every peer connection starts with (see
    /// node/src/transport/message.rs), as a frame.
    const HELLO: [u8; 6] = [0, 0, 0, 2, 2, 7];
    /// Bytes the gossip envelope puts before foca's packet: magic, cluster id, tag.
    const GOSSIP_ENVELOPE_BYTES: usize = 3 + 8 + 32;

    /// The probe's 31-byte frame: envelope id 7, `PeerRequest::Forward(Forward::Read { key, .. })`
    /// whose key declares 2^44 bytes (varint 0xFD + u64), then 15 bytes of the "key".
    fn lying_frame() -> Vec<u8> {
        let mut body = vec![7, 4, 1, 0xFD];
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
    /// 31-byte frame after a valid hello; the node closes that connection and keeps serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_frame_declaring_a_huge_string_leaves_the_node_serving() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let node = Process::start(root.path(), 1, &[]);
        let cluster = client(vec![node.http.clone()]);
        wait_for_voters(&cluster, 1).await;
        assert_serving(&cluster, "before").await;

        let mut stream = TcpStream::connect(&node.peer).expect("the peer port accepts");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        stream.write_all(&HELLO).expect("the hello is sent");
        stream.write_all(&lying_frame()).expect("the frame is sent");
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest);
        assert!(closed.is_ok() && rest.is_empty(), "the node closes the connection without answering: {closed:?}");

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
