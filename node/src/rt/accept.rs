//! The accept loop the HTTP and peer servers share.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{Duration, sleep, spawn, watch};

/// Accepts connections on `listener` until `shutdown` turns true, serving each with `serve` in a
/// task of its own. At most `max` are served at once; one more is closed as it arrives, since
/// queueing it would only hide the overload from its client. `what` names them in logs.
pub async fn accept_connections<F, Fut>(
    listener: TcpListener,
    max: usize,
    what: &'static str,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting {what} connection failed");
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%address, "too many {what} connections; refusing one");
            continue;
        };
        let connection = serve(stream, address, shutdown.clone());
        spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}
