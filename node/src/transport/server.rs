//! The answering side: an accept loop and, per connection, a reader that hands each request to
//! its own task (so a slow forwarded write never delays a heartbeat) and a writer that batches
//! the answers.

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::frame::{self, read_frame, write_frames};
use super::message::{Envelope, Hello, PROTOCOL, PeerRequest, PeerResponse};
use crate::command::NodeId;
use crate::rt::{self, Duration};

/// Handles requests arriving from peers.
pub trait PeerHandler: Send + Sync + 'static {
    fn handle(&self, from: NodeId, request: PeerRequest) -> impl Future<Output = PeerResponse> + Send;
}

/// Peer connections served at once; a peer opens one, so this only bounds misbehaving clients.
const CONNECTIONS_MAX: usize = 256;
/// Requests in flight per connection before the reader stops reading (TCP backpressure).
const IN_FLIGHT_PER_CONNECTION_MAX: usize = 4096;
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts peer connections until `shutdown` turns true.
pub async fn serve<H: PeerHandler>(listener: TcpListener, handler: Arc<H>, shutdown: rt::watch::Receiver<bool>) {
    rt::accept_connections(listener, CONNECTIONS_MAX, "peer", shutdown, |stream, address, shutdown| {
        let handler = handler.clone();
        async move {
            if let Err(error) = serve_connection(stream, handler, shutdown).await {
                tracing::debug!(%address, %error, "peer connection closed");
            }
        }
    })
    .await;
}

async fn serve_connection<H: PeerHandler>(
    stream: TcpStream,
    handler: Arc<H>,
    mut shutdown: rt::watch::Receiver<bool>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut reader, writer) = tokio::io::split(stream);
    let hello: Hello = match rt::timeout(HELLO_TIMEOUT, read_frame(&mut reader)).await {
        Ok(Ok(Some(body))) => frame::decode(&body)?,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no hello")),
    };
    if hello.protocol != PROTOCOL {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("peer {} speaks protocol {}, we speak {PROTOCOL}", hello.from, hello.protocol),
        ));
    }
    let (outbox, inbox) = mpsc::channel(IN_FLIGHT_PER_CONNECTION_MAX);
    rt::spawn(write_answers(writer, inbox));
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION_MAX));
    loop {
        let body = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            body = read_frame(&mut reader) => body?,
        };
        let Some(body) = body else { return Ok(()) };
        let envelope: Envelope<PeerRequest> = frame::decode(&body)?;
        let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let handler = handler.clone();
        let outbox = outbox.clone();
        rt::spawn(async move {
            let body = handler.handle(hello.from, envelope.body).await;
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

async fn write_answers<W: tokio::io::AsyncWrite + Unpin>(mut writer: W, mut inbox: mpsc::Receiver<Vec<u8>>) {
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
