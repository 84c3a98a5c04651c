//! Starting a whole node: listeners, the node's actors, the HTTP actor and, for a node started
//! with `--join`, the join procedure. The binary and the simulator both start nodes this way.

use std::sync::Arc;

use cairn_node::Node;
use cairn_node::config::{Bootstrap, NodeConfig};
use cairn_node::node::StartError;
use cairn_node::rt::{self, watch};
use cairn_node::storage::Disk;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::{join, router, serve};

/// A started node and the switch that stops its HTTP actor.
pub struct Launched {
    pub node: Node,
    http_shutdown: watch::Sender<bool>,
}

impl Launched {
    /// Stops accepting HTTP requests and stops the node.
    pub async fn shutdown(&self) {
        self.http_shutdown.send_if_modified(|stop| !std::mem::replace(stop, true));
        self.node.shutdown().await;
    }
}

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("cannot listen on {address} ({what}): {source}")]
    Listen { what: &'static str, address: String, source: std::io::Error },
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Binds the peer and HTTP addresses of `config`, starts the node and its HTTP actor, and joins
/// the cluster in the background if the node is not a voter yet and was told whom to ask.
pub async fn launch(config: NodeConfig, disk: Arc<dyn Disk>) -> Result<Launched, LaunchError> {
    let bind = |what: &'static str, address: String| async move {
        TcpListener::bind(address.as_str()).await.map_err(|source| LaunchError::Listen { what, address, source })
    };
    let peer_listener = bind("peer", config.member.peer.clone()).await?;
    let http_listener = bind("http", config.member.http.clone()).await?;
    let joining = match &config.bootstrap {
        Bootstrap::Join { seeds, kind } => Some((seeds.clone(), *kind)),
        _ => None,
    };
    let node = Node::start(config, disk, peer_listener).await?;
    let (http_shutdown, http_stop) = watch::channel(false);
    rt::spawn(serve(http_listener, router(node.clone()), http_stop));
    if let Some((seeds, kind)) = joining {
        rt::spawn(join::join_cluster(node.clone(), seeds, kind));
    }
    Ok(Launched { node, http_shutdown })
}
