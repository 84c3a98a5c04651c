//! HTTP/1.1 over the runtime's TCP (or TLS over it) with hyper's connection API, keeping idle
//! connections per endpoint. hyper-util's pooled client and reqwest call real tokio and would
//! panic in the simulator.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use cairn_node::rt::{self, Duration};
use cairn_node::tls::{ClientTls, FlushOnShutdown, server_name};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;

/// The largest response body the client accepts.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Idle connections kept per endpoint.
const IDLE_PER_ENDPOINT_MAX: usize = 64;

/// Why an exchange failed, and so whether the server may have acted on the request.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ExchangeError {
    /// No connection could be made; the request was never sent.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// No complete answer before the deadline; the server may have acted on the request.
    #[error("no answer from {endpoint} before the deadline")]
    Timeout { endpoint: String },
    /// The connection failed mid-exchange; the server may have acted on the request.
    #[error("exchange with {endpoint} failed: {reason}")]
    Broken { endpoint: String, reason: String },
}

impl ExchangeError {
    /// True when the request certainly did not reach the server.
    pub fn never_sent(&self) -> bool {
        matches!(self, ExchangeError::Connect { .. })
    }
}

/// A complete response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// The head of an answer whose body is read as it arrives.
pub struct Stream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: hyper::body::Incoming,
}

fn build(endpoint: &str, outgoing: Outgoing<'_>) -> Result<Request<Full<Bytes>>, ExchangeError> {
    let mut request =
        Request::builder().method(outgoing.method).uri(outgoing.path_and_query).header(hyper::header::HOST, endpoint);
    for (name, value) in outgoing.headers {
        request = request.header(name, value);
    }
    request
        .body(Full::new(outgoing.body))
        .map_err(|e| ExchangeError::Connect { endpoint: endpoint.to_string(), reason: format!("invalid request: {e}") })
}

/// Sends requests to any endpoint, reusing keep-alive connections.
#[derive(Default)]
pub struct Exchanger {
    /// Idle connections by endpoint. A std mutex: each critical section pops or pushes one.
    idle: Mutex<BTreeMap<String, Vec<SendRequest<Full<Bytes>>>>>,
    /// HTTPS to every endpoint when set.
    tls: Option<ClientTls>,
}

/// One request to send.
pub struct Outgoing<'a> {
    pub method: Method,
    pub path_and_query: &'a str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Exchanger {
    /// An exchanger that speaks HTTPS with `tls`.
    pub fn with_tls(tls: ClientTls) -> Exchanger {
        Exchanger { idle: Mutex::default(), tls: Some(tls) }
    }

    /// Sends `outgoing` to `endpoint` (`host:port`) and reads the whole answer within `timeout`.
    pub async fn send(
        &self,
        endpoint: &str,
        outgoing: Outgoing<'_>,
        timeout: Duration,
    ) -> Result<Reply, ExchangeError> {
        match rt::timeout(timeout, self.exchange(endpoint, outgoing)).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeError::Timeout { endpoint: endpoint.to_string() }),
        }
    }

    async fn exchange(&self, endpoint: &str, outgoing: Outgoing<'_>) -> Result<Reply, ExchangeError> {
        let mut sender = self.connection(endpoint).await?;
        let request = build(endpoint, outgoing)?;
        let broken = |reason: String| ExchangeError::Broken { endpoint: endpoint.to_string(), reason };
        let response = sender.send_request(request).await.map_err(|e| broken(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body =
            Limited::new(body, RESPONSE_BYTES_MAX).collect().await.map_err(|e| broken(e.to_string()))?.to_bytes();
        self.release(endpoint, sender);
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }

    async fn connection(&self, endpoint: &str) -> Result<SendRequest<Full<Bytes>>, ExchangeError> {
        while let Some(mut idle) = self.take_idle(endpoint) {
            if idle.ready().await.is_ok() {
                return Ok(idle);
            }
        }
        self.connect(endpoint).await
    }

    async fn connect(&self, endpoint: &str) -> Result<SendRequest<Full<Bytes>>, ExchangeError> {
        let refused = |reason: String| ExchangeError::Connect { endpoint: endpoint.to_string(), reason };
        let stream = TcpStream::connect(endpoint).await.map_err(|e| refused(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| refused(e.to_string()))?;
        let Some(tls) = &self.tls else { return handshake(stream).await.map_err(refused) };
        let name = server_name(endpoint).map_err(refused)?;
        let session = tls
            .connector()
            .connect(name, FlushOnShutdown(stream))
            .await
            .map_err(|e| refused(format!("TLS handshake failed: {e}")))?;
        handshake(session).await.map_err(refused)
    }

    /// Sends `outgoing` on a fresh connection of its own and returns the answer's head and its
    /// body unread, for streams (a watch) that outlive any pooled exchange.
    pub async fn open_stream(
        &self,
        endpoint: &str,
        outgoing: Outgoing<'_>,
        timeout: Duration,
    ) -> Result<Stream, ExchangeError> {
        let opened = rt::timeout(timeout, async {
            let mut sender = self.connect(endpoint).await?;
            let request = build(endpoint, outgoing)?;
            let broken = |reason: String| ExchangeError::Broken { endpoint: endpoint.to_string(), reason };
            let response = sender.send_request(request).await.map_err(|e| broken(e.to_string()))?;
            let (parts, body) = response.into_parts();
            Ok(Stream { status: parts.status, headers: parts.headers, body })
        });
        opened.await.unwrap_or_else(|_| Err(ExchangeError::Timeout { endpoint: endpoint.to_string() }))
    }

    fn take_idle(&self, endpoint: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.get_mut(endpoint).and_then(Vec::pop)
    }

    fn release(&self, endpoint: &str, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = idle.entry(endpoint.to_string()).or_default();
        if pool.len() < IDLE_PER_ENDPOINT_MAX {
            pool.push(sender);
        }
    }
}

/// Starts HTTP/1.1 on `stream`, its connection driven by a task of its own.
async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    rt::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "client connection ended");
        }
    });
    Ok(sender)
}
