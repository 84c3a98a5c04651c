//! The HTTP actor's accept loop: each connection is served by hyper's HTTP/1.1 connection
//! driver with our timer, so the same loop runs on tokio and in the simulator (`axum::serve`
//! spawns on real tokio and would not). With TLS, each connection's handshake runs first, under
//! its own deadline.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use cairn_node::rt::{self, Duration};
use cairn_node::tls::{FlushOnShutdown, HANDSHAKE_TIMEOUT, ServerTls};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::hyper_rt::RuntimeTimer;

/// Client connections served at once; long polls hold one each, so this is generous.
pub const CONNECTIONS_MAX: usize = 16 * 1024;
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` turns true; then stops accepting and lets
/// each connection finish its current exchange. With `tls`, only HTTPS is spoken.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerTls>>,
    shutdown: rt::watch::Receiver<bool>,
) {
    rt::accept_connections(listener, CONNECTIONS_MAX, "HTTP", shutdown, |stream, address, shutdown| {
        let _ = stream.set_nodelay(true);
        let (router, tls) = (router.clone(), tls.clone());
        async move {
            match tls {
                Some(tls) => serve_tls(stream, address, &tls, router, shutdown).await,
                None => serve_connection(stream, router, shutdown).await,
            }
        }
    })
    .await;
}

async fn serve_tls(
    stream: TcpStream,
    address: SocketAddr,
    tls: &ServerTls,
    router: Router,
    shutdown: rt::watch::Receiver<bool>,
) {
    match rt::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(FlushOnShutdown(stream))).await {
        Ok(Ok(session)) => serve_connection(session, router, shutdown).await,
        Ok(Err(error)) => tracing::debug!(%address, %error, "refused a TLS handshake"),
        Err(_) => tracing::debug!(%address, "no TLS handshake in time"),
    }
}

async fn serve_connection<S>(stream: S, router: Router, mut shutdown: rt::watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(RuntimeTimer)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let outcome = tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        outcome = connection.as_mut() => outcome,
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
