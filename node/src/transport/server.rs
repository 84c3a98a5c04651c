//! The answering side: an accept loop, the handshake, and per authenticated connection a reader
//! that hands each request to its own task (so a slow forwarded write never delays a heartbeat),
//! or a stream's request to that stream's lane (`streams`), and a writer that batches the
//! answers.
//!
//! Memory and connections are bounded before a caller has proven itself: at most
//! [`HANDSHAKES_MAX`] connections in their handshake (a newcomer closes the oldest, see
//! [`Pending`]), each reading frames of at most [`HANDSHAKE_FRAME_BYTES_MAX`] bytes for at most
//! [`HANDSHAKE_TIMEOUT`]. A proven connection leaves that pool; proven connections are bounded
//! per node id (a newer one closes the oldest) and in total, where a member is always admitted
//! by closing a non-member's connection.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::PeerStream;
use super::frame::{self, read_frame, read_frame_limited, write_frames};
use super::handshake::{HANDSHAKE_FRAME_BYTES_MAX, Hello, PeerAuth, Proof};
use super::message::{Envelope, PROTOCOL, PeerRequest, PeerResponse};
use super::streams::{AppendLane, StreamedAppend, Streams};
use crate::command::{ClusterId, NodeId};
use crate::rt::{self, Duration};
use crate::tls::FlushOnShutdown;

/// Handles requests arriving from peers.
pub trait PeerHandler: Send + Sync + 'static {
    fn handle(&self, from: NodeId, request: PeerRequest) -> impl Future<Output = PeerResponse> + Send;

    /// Serves one append stream of `from`: its requests in order, each answered in that order.
    fn serve_stream(&self, from: NodeId, lane: AppendLane) -> impl Future<Output = ()> + Send;

    /// Whether `id` is a member of this node's current configuration.
    fn is_member(&self, id: NodeId) -> bool;
}

/// Connections in their handshake at once; more are closed as they arrive.
const HANDSHAKES_MAX: usize = 64;
/// The whole handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Proven connections per node id; a peer opens one, and a reconnect briefly two.
const CONNECTIONS_PER_PEER_MAX: usize = 4;
/// Proven connections in all.
const CONNECTIONS_MAX: usize = 256;
/// Requests in flight per connection before the reader stops reading (TCP backpressure).
const IN_FLIGHT_PER_CONNECTION_MAX: usize = 4096;

/// Accepts peer connections until `shutdown` turns true.
pub async fn serve<H: PeerHandler>(
    listener: TcpListener,
    auth: Arc<PeerAuth>,
    handler: Arc<H>,
    mut shutdown: rt::watch::Receiver<bool>,
) {
    let pending = Arc::new(Mutex::new(Pending::default()));
    let registry = Arc::new(Registry::default());
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a peer connection failed");
                rt::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (serial, mut evicted) = lock(&pending).start();
        let (auth, handler, registry, pending) = (auth.clone(), handler.clone(), registry.clone(), pending.clone());
        let shutdown = shutdown.clone();
        rt::spawn(async move {
            let handshake = tokio::select! {
                biased;
                _ = evicted.wait_for(|evicted| *evicted) => Err(invalid("newer connections took its place while it had not proven itself".into())),
                handshake = rt::timeout(HANDSHAKE_TIMEOUT, answer_handshake(stream, &auth)) => {
                    handshake.unwrap_or_else(|_| Err(invalid("no handshake in time".into())))
                }
            };
            lock(&pending).finish(serial);
            let proven = match handshake {
                Ok(proven) => proven,
                Err(error) => return tracing::warn!(%address, %error, "refused a peer connection"),
            };
            let from = proven.from;
            let Some(admission) = registry.admit(from, handler.is_member(from)) else {
                return tracing::warn!(%address, from, "refused a peer connection: too many connections");
            };
            if let Err(error) = serve_connection(proven, &auth, handler, admission.closed.clone(), shutdown).await {
                tracing::debug!(%address, %error, "peer connection closed");
            }
            registry.release(from, admission.serial);
        });
    }
}

/// Connections still in their handshake, oldest first. When there are too many, the oldest is
/// closed rather than the newcomer refused: a member proves itself within a round trip, so only
/// a flood that opens [`HANDSHAKES_MAX`] connections within one round trip can keep it out,
/// while refusing newcomers would let a few idle connections lock every member out.
#[derive(Default)]
struct Pending {
    by_serial: BTreeMap<u64, rt::watch::Sender<bool>>,
    next_serial: u64,
}

impl Pending {
    fn start(&mut self) -> (u64, rt::watch::Receiver<bool>) {
        self.next_serial += 1;
        let (evict, evicted) = rt::watch::channel(false);
        self.by_serial.insert(self.next_serial, evict);
        while self.by_serial.len() > HANDSHAKES_MAX {
            if let Some((_, oldest)) = self.by_serial.pop_first() {
                oldest.send_if_modified(|evicted| !std::mem::replace(evicted, true));
            }
        }
        (self.next_serial, evicted)
    }

    fn finish(&mut self, serial: u64) {
        self.by_serial.remove(&serial);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection whose caller proved itself as `from`, of the cluster it named.
struct Proven {
    from: NodeId,
    cluster: Option<ClusterId>,
    reader: tokio::io::ReadHalf<PeerStream>,
    writer: tokio::io::WriteHalf<PeerStream>,
}

/// Runs the answerer's side of the handshake (see `handshake`), inside TLS when the node has
/// peer TLS: a caller without a certificate of the cluster's CA gets no further than that.
async fn answer_handshake(stream: TcpStream, auth: &PeerAuth) -> io::Result<Proven> {
    stream.set_nodelay(true)?;
    let stream: PeerStream = match auth.tls() {
        Some(tls) => Box::new(tls.acceptor().accept(FlushOnShutdown(stream)).await?),
        None => Box::new(stream),
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let hello: Hello = read_handshake_frame(&mut reader).await?;
    if hello.protocol != PROTOCOL {
        return Err(invalid(format!("peer {} speaks protocol {}, we speak {PROTOCOL}", hello.from, hello.protocol)));
    }
    let challenge = auth.challenge(&hello);
    write_frames(&mut writer, &[frame::encode(&challenge)?]).await?;
    // The challenge names this node's cluster, so a caller of another cluster learns why it is
    // refused; the refusal needs no proof, as it grants nothing.
    if let Err(refusal) = auth.admits(hello.cluster) {
        return Err(invalid(format!("a caller claiming node id {}: {refusal}", hello.from)));
    }
    let proof: Proof = read_handshake_frame(&mut reader).await?;
    if let Err(refusal) = auth.verify(&hello, &challenge, &proof) {
        return Err(invalid(format!("a caller claiming node id {}: {refusal}", hello.from)));
    }
    Ok(Proven { from: hello.from, cluster: hello.cluster, reader, writer })
}

/// Reads and decodes one small frame of the handshake.
pub(super) async fn read_handshake_frame<T, R>(reader: &mut R) -> io::Result<T>
where
    T: serde::de::DeserializeOwned,
    R: AsyncRead + Unpin,
{
    match read_frame_limited(reader, HANDSHAKE_FRAME_BYTES_MAX).await? {
        Some(body) => frame::decode_bounded::<T, HANDSHAKE_FRAME_BYTES_MAX>(&body),
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The proven connections, per node id in order of arrival.
#[derive(Default)]
struct Registry {
    /// A std mutex: every critical section is a map operation.
    connections: Mutex<RegistryState>,
}

#[derive(Default)]
struct RegistryState {
    by_peer: BTreeMap<NodeId, VecDeque<Admission>>,
    next_serial: u64,
    total: usize,
}

/// One admitted connection: its serial, and the switch that closes it when it is evicted.
#[derive(Clone)]
struct Admission {
    serial: u64,
    member: bool,
    closed: rt::watch::Sender<bool>,
}

impl Registry {
    /// Admits a connection from `from`, closing the oldest of its own beyond the per-peer
    /// bound, or, when all slots are taken and `from` is a member, a non-member's. `None` when
    /// there is no room for it.
    fn admit(&self, from: NodeId, member: bool) -> Option<Admission> {
        let mut state = lock(&self.connections);
        let replaces_own = state.by_peer.get(&from).is_some_and(|own| own.len() >= CONNECTIONS_PER_PEER_MAX);
        if !replaces_own && state.total >= CONNECTIONS_MAX && !state.evict_a_non_member(member) {
            return None;
        }
        state.next_serial += 1;
        let admission = Admission { serial: state.next_serial, member, closed: rt::watch::channel(false).0 };
        let own = state.by_peer.entry(from).or_default();
        own.push_back(admission.clone());
        let evicted = if own.len() > CONNECTIONS_PER_PEER_MAX { own.pop_front() } else { None };
        match evicted {
            Some(oldest) => close(&oldest),
            None => state.total += 1,
        }
        debug_assert!(state.total <= CONNECTIONS_MAX);
        Some(admission)
    }

    /// Forgets a connection that ended (or was evicted: then it is no longer listed).
    fn release(&self, from: NodeId, serial: u64) {
        let mut state = lock(&self.connections);
        let Some(own) = state.by_peer.get_mut(&from) else { return };
        let before = own.len();
        own.retain(|admission| admission.serial != serial);
        let released = before - own.len();
        if own.is_empty() {
            state.by_peer.remove(&from);
        }
        state.total -= released;
    }
}

impl RegistryState {
    /// Makes room for a member by closing a non-member's oldest connection.
    fn evict_a_non_member(&mut self, for_member: bool) -> bool {
        if !for_member {
            return false;
        }
        let victim = self.by_peer.iter().find(|(_, own)| own.front().is_some_and(|a| !a.member)).map(|(id, _)| *id);
        let Some(victim) = victim else { return false };
        let own = self.by_peer.get_mut(&victim).expect("the victim was just found");
        if let Some(oldest) = own.pop_front() {
            close(&oldest);
            self.total -= 1;
        }
        if own.is_empty() {
            self.by_peer.remove(&victim);
        }
        true
    }
}

fn close(admission: &Admission) {
    admission.closed.send_if_modified(|closed| !std::mem::replace(closed, true));
}

async fn serve_connection<H: PeerHandler>(
    proven: Proven,
    auth: &PeerAuth,
    handler: Arc<H>,
    evicted: rt::watch::Sender<bool>,
    mut shutdown: rt::watch::Receiver<bool>,
) -> io::Result<()> {
    let Proven { from, cluster, mut reader, writer } = proven;
    let mut evicted = evicted.subscribe();
    let (outbox, inbox) = mpsc::channel(IN_FLIGHT_PER_CONNECTION_MAX);
    rt::spawn(write_answers(writer, inbox));
    let mut streams = Streams::new(from, outbox.clone());
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION_MAX));
    loop {
        let body = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            _ = evicted.wait_for(|evicted| *evicted) => return Err(invalid(format!("a newer connection from {from} replaced this one"))),
            body = read_frame(&mut reader) => body?,
        };
        let Some(body) = body else { return Ok(()) };
        if let Err(refusal) = auth.admits(cluster) {
            tracing::warn!(from, %refusal, "closing a peer connection");
            return Err(invalid(format!("node {from}: {refusal}")));
        }
        let envelope: Envelope<PeerRequest> = frame::decode(&body)?;
        let request = match envelope.body {
            PeerRequest::StreamAppend { stream, rpc, lease } => {
                streams.append(&handler, stream, StreamedAppend { id: envelope.id, rpc, lease });
                continue;
            }
            PeerRequest::EndStream { stream } => {
                streams.end(stream);
                continue;
            }
            request => request,
        };
        let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let handler = handler.clone();
        let outbox = outbox.clone();
        rt::spawn(async move {
            let body = handler.handle(from, request).await;
            match frame::encode(&Envelope { id: envelope.id, body }) {
                Ok(frame) => {
                    let _ = outbox.send(frame).await;
                }
                Err(error) => tracing::error!(%error, "a peer response cannot be encoded"),
            }
            drop(permit);
        });
    }
}

async fn write_answers<W: AsyncWrite + Unpin>(mut writer: W, mut inbox: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::new();
    while let Some(frame) = inbox.recv().await {
        batch.push(frame);
        while batch.len() < 64 {
            match inbox.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        if write_frames(&mut writer, &batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

impl PeerResponse {
    /// The answer for a request the peer could not handle.
    pub fn refused(reason: impl std::fmt::Display) -> PeerResponse {
        PeerResponse::Refused(reason.to_string())
    }
}
