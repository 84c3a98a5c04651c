//! The calling side: one connection per peer, shared by concurrent calls.
//!
//! A writer task batches outgoing frames; a reader task matches responses to waiting calls by
//! id. A call that times out on a connection that has answered nothing since the call was sent
//! closes it: simulated (and real) TCP stalls instead of failing under a partition, and a fresh
//! connection after the partition heals is faster than a stalled one's retransmission backoff.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::PeerStream;
use super::frame::{self, read_frame, write_frames};
use super::handshake::{Challenge, PeerAuth};
use super::message::{Envelope, PeerRequest, PeerResponse};
use super::server::read_handshake_frame;
use crate::command::ClusterId;
use crate::metrics::PeerMetrics;
use crate::rt::{self, Duration, Instant};
use crate::tls::FlushOnShutdown;

/// Why a call failed, and so whether the request may have reached the peer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RpcError {
    /// No connection could be made; the request was never sent. Back off before retrying.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The request was sent but no answer arrived in time; the peer may have processed it.
    #[error("no answer before the deadline")]
    Timeout,
    /// The connection broke after the request was sent; the peer may have processed it.
    #[error("connection lost while waiting for the answer")]
    Disconnected,
}

/// Frames queued for a connection's writer before callers wait for room.
const OUTBOX_FRAMES_MAX: usize = 1024;
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(500);

type Reply = oneshot::Sender<Result<PeerResponse, RpcError>>;

/// A client for one peer. Cheap to share behind an `Arc`; calls run concurrently.
pub struct PeerClient {
    auth: Arc<PeerAuth>,
    address: String,
    link: tokio::sync::Mutex<Link>,
    next_id: AtomicU64,
    metrics: PeerMetrics,
}

/// The connection state, guarded by an async mutex that is held only while connecting, so
/// concurrent calls share one connection attempt.
struct Link {
    connection: Option<Arc<Connection>>,
    failures: u32,
    retry_after: Option<Instant>,
}

struct Connection {
    outbox: mpsc::Sender<Vec<u8>>,
    /// The cluster the answerer named in its handshake.
    peer_cluster: Option<ClusterId>,
    /// Calls awaiting an answer. A std mutex: every critical section is a map operation.
    pending: Mutex<BTreeMap<u64, Reply>>,
    /// When this connection last delivered a frame; tells a stalled connection from a slow call.
    last_heard: Mutex<Instant>,
    /// Flips to true once; both loops watch it so either side's failure stops the other.
    closed: rt::watch::Sender<bool>,
    metrics: PeerMetrics,
    address: String,
}

impl Connection {
    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Reply>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn heard_since(&self, instant: Instant) -> bool {
        *self.last_heard.lock().unwrap_or_else(PoisonError::into_inner) >= instant
    }

    /// Fails every waiting call and stops both tasks.
    fn close(&self) {
        let waiting = std::mem::take(&mut *self.pending());
        for (_, reply) in waiting {
            let _ = reply.send(Err(RpcError::Disconnected));
        }
        self.closed.send_if_modified(|closed| !std::mem::replace(closed, true));
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

impl PeerClient {
    pub fn new(auth: Arc<PeerAuth>, address: String) -> PeerClient {
        PeerClient {
            auth,
            address,
            link: tokio::sync::Mutex::new(Link { connection: None, failures: 0, retry_after: None }),
            next_id: AtomicU64::new(1),
            metrics: PeerMetrics::default(),
        }
    }

    /// Counts this client's bytes and round trips in `metrics`.
    pub fn measured_by(self, metrics: PeerMetrics) -> PeerClient {
        PeerClient { metrics, ..self }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` and waits at most `timeout` for the answer.
    pub async fn call(&self, request: PeerRequest, timeout: Duration) -> Result<PeerResponse, RpcError> {
        let deadline = Instant::now() + timeout;
        let connection = self.admitted_connection(deadline).await?;
        let mut call = self.send_on(&connection, request, deadline).await?;
        call.answer().await
    }

    /// Opens a stream: requests sent on it travel on one connection, in the order they were
    /// sent, and are answered in that order (see `PeerRequest::StreamAppend`).
    pub async fn open_stream(self: &Arc<Self>, timeout: Duration) -> Result<CallStream, RpcError> {
        let connection = self.admitted_connection(Instant::now() + timeout).await?;
        let stream = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(CallStream { client: self.clone(), connection, stream })
    }

    /// The connection, once the peer's cluster is known to be ours.
    async fn admitted_connection(&self, deadline: Instant) -> Result<Arc<Connection>, RpcError> {
        let connection = self.connection(deadline).await?;
        if let Err(refusal) = self.auth.admits(connection.peer_cluster) {
            tracing::warn!(peer = %self.address, %refusal, "closing a peer connection");
            connection.close();
            self.forget(&connection).await;
            return Err(RpcError::Unreachable(format!("refused peer {}: {refusal}", self.address)));
        }
        Ok(connection)
    }

    /// Queues `request` on `connection`; its answer is awaited (until `deadline`) through the
    /// returned call.
    async fn send_on(
        &self,
        connection: &Arc<Connection>,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PendingCall, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = frame::encode(&Envelope { id, body: request })
            .map_err(|e| RpcError::Unreachable(format!("request cannot be encoded: {e}")))?;
        let (reply, answer) = oneshot::channel();
        connection.pending().insert(id, reply);
        let frame_bytes = frame.len();
        let call =
            PendingCall { connection: connection.clone(), id, answer, sent_at: Instant::now(), deadline, frame_bytes };
        if connection.outbox.send(frame).await.is_err() {
            return Err(RpcError::Unreachable("connection closed before sending".into()));
        }
        self.metrics.sent_bytes.inc_by(frame_bytes as u64);
        Ok(call)
    }

    async fn connection(&self, deadline: Instant) -> Result<Arc<Connection>, RpcError> {
        let mut link = self.link.lock().await;
        if let Some(connection) = link.connection.as_ref().filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        link.connection = None;
        if let Some(retry_after) = link.retry_after
            && Instant::now() < retry_after
        {
            return Err(RpcError::Unreachable("reconnect backoff".into()));
        }
        let connect_timeout = deadline.saturating_duration_since(Instant::now()).min(CONNECT_TIMEOUT_MAX);
        match rt::timeout(connect_timeout, self.connect()).await {
            Ok(Ok(connection)) => {
                link.failures = 0;
                link.retry_after = None;
                link.connection = Some(connection.clone());
                Ok(connection)
            }
            outcome => {
                link.failures = link.failures.saturating_add(1);
                let backoff = RECONNECT_BACKOFF_MIN * 2u32.saturating_pow(link.failures.min(8));
                link.retry_after = Some(Instant::now() + backoff.min(RECONNECT_BACKOFF_MAX));
                let reason = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => "connect timed out".to_string(),
                };
                Err(RpcError::Unreachable(reason))
            }
        }
    }

    async fn forget(&self, connection: &Arc<Connection>) {
        let mut link = self.link.lock().await;
        if link.connection.as_ref().is_some_and(|current| Arc::ptr_eq(current, connection)) {
            link.connection = None;
        }
    }

    async fn connect(&self) -> io::Result<Arc<Connection>> {
        let stream = TcpStream::connect(self.address.as_str()).await?;
        stream.set_nodelay(true)?;
        let stream: PeerStream = match self.auth.tls() {
            Some(tls) => {
                let refused = |reason: String| io::Error::new(io::ErrorKind::PermissionDenied, reason);
                let name = crate::tls::server_name(&self.address).map_err(refused)?;
                let connector = tls.connector().map_err(|e| refused(e.to_string()))?;
                Box::new(connector.connect(name, FlushOnShutdown(stream)).await?)
            }
            None => Box::new(stream),
        };
        let (mut reader, mut writer) = tokio::io::split(stream);
        let hello = self.auth.hello();
        write_frames(&mut writer, &[frame::encode(&hello)?]).await?;
        let challenge: Challenge = read_handshake_frame(&mut reader).await?;
        let proof = self.auth.prove(&hello, &challenge).map_err(|refusal| {
            let message = format!("refused peer {}: {refusal}", self.address);
            tracing::warn!(peer = %self.address, %refusal, "refused a peer");
            io::Error::new(io::ErrorKind::PermissionDenied, message)
        })?;
        write_frames(&mut writer, &[frame::encode(&proof)?]).await?;
        let (outbox, inbox) = mpsc::channel(OUTBOX_FRAMES_MAX);
        let (closed, closed_for_writer) = rt::watch::channel(false);
        let closed_for_reader = closed.subscribe();
        let connection = Arc::new(Connection {
            outbox,
            peer_cluster: challenge.cluster,
            pending: Mutex::new(BTreeMap::new()),
            last_heard: Mutex::new(Instant::now()),
            closed,
            metrics: self.metrics.clone(),
            address: self.address.clone(),
        });
        rt::spawn(write_loop(writer, inbox, closed_for_writer, connection.clone()));
        rt::spawn(read_loop(reader, closed_for_reader, connection.clone(), self.address.clone()));
        Ok(connection)
    }
}

/// A request sent on a connection and not answered yet. Dropping it forgets the request.
pub struct PendingCall {
    connection: Arc<Connection>,
    id: u64,
    answer: oneshot::Receiver<Result<PeerResponse, RpcError>>,
    sent_at: Instant,
    deadline: Instant,
    frame_bytes: usize,
}

impl PendingCall {
    /// The request's encoded size.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Waits for the answer until the call's deadline. A call that times out on a connection
    /// that has answered nothing since the call was sent closes it. Cancel-safe: the answer
    /// still arrives at a later call.
    pub async fn answer(&mut self) -> Result<PeerResponse, RpcError> {
        match rt::timeout_at(self.deadline, &mut self.answer).await {
            Ok(Ok(result)) => {
                self.connection.metrics.round_trip_seconds.observe(self.sent_at.elapsed().as_secs_f64());
                result
            }
            Ok(Err(_)) => Err(RpcError::Disconnected),
            Err(_) => {
                if !self.connection.heard_since(self.sent_at) {
                    tracing::debug!(peer = %self.connection.address, "closing a stalled peer connection");
                    self.connection.close();
                }
                Err(RpcError::Timeout)
            }
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.connection.pending().remove(&self.id);
    }
}

/// Requests that travel on one connection in the order they are sent. Dropping it tells the
/// peer the stream ended.
pub struct CallStream {
    client: Arc<PeerClient>,
    connection: Arc<Connection>,
    stream: u64,
}

impl CallStream {
    /// The stream's id, which its requests carry.
    pub fn id(&self) -> u64 {
        self.stream
    }

    /// Sends the next request of the stream; its answer is due by `deadline`.
    pub async fn send(&self, request: PeerRequest, deadline: Instant) -> Result<PendingCall, RpcError> {
        if self.connection.is_closed() {
            return Err(RpcError::Disconnected);
        }
        self.client.send_on(&self.connection, request, deadline).await
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        // Best effort: a full outbox or a closed connection means the peer drops the stream's
        // state anyway (it keeps only a few streams per connection, and none past the connection).
        let id = self.client.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(frame) = frame::encode(&Envelope { id, body: PeerRequest::EndStream { stream: self.stream } }) {
            let _ = self.connection.outbox.try_send(frame);
        }
    }
}

async fn write_loop<W>(
    mut writer: W,
    mut inbox: mpsc::Receiver<Vec<u8>>,
    mut closed: rt::watch::Receiver<bool>,
    connection: Arc<Connection>,
) where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => break,
            frame = inbox.recv() => match frame {
                Some(frame) => batch.push(frame),
                None => break,
            },
        }
        while batch.len() < 64 {
            match inbox.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        if write_frames(&mut writer, &batch).await.is_err() {
            break;
        }
        batch.clear();
    }
    connection.close();
}

async fn read_loop<R>(
    mut reader: R,
    mut closed: rt::watch::Receiver<bool>,
    connection: Arc<Connection>,
    address: String,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    loop {
        let body = tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => break,
            body = read_frame(&mut reader) => body,
        };
        let envelope: Envelope<PeerResponse> = match body.and_then(|body| match body {
            Some(body) => frame::decode(&body),
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::debug!(peer = %address, %error, "peer connection ended");
                break;
            }
        };
        *connection.last_heard.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        if let Some(reply) = connection.pending().remove(&envelope.id) {
            let _ = reply.send(Ok(envelope.body));
        }
    }
    connection.close();
}
