//! The HTTP actor's accept loop: each connection is served by hyper's HTTP/1.1 connection
//! driver with our timer, so the same loop runs on tokio and in the simulator (`axum::serve`
//! spawns on real tokio and would not).

use axum::Router;
use cairn_node::rt::{self, Duration};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::hyper_rt::RuntimeTimer;

/// Client connections served at once; long polls hold one each, so this is generous.
pub const CONNECTIONS_MAX: usize = 16 * 1024;
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` turns true; then stops accepting and lets
/// each connection finish its current exchange.
pub async fn serve(listener: TcpListener, router: Router, shutdown: rt::watch::Receiver<bool>) {
    rt::accept_connections(listener, CONNECTIONS_MAX, "HTTP", shutdown, |stream, _, shutdown| {
        let _ = stream.set_nodelay(true);
        serve_connection(stream, router.clone(), shutdown)
    })
    .await;
}

async fn serve_connection(stream: tokio::net::TcpStream, router: Router, mut shutdown: rt::watch::Receiver<bool>) {
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
