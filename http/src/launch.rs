//! Starting a whole node: listeners, the node's actors, the HTTP actor and, for a node started
//! with `--join`, the join procedure. The binary and the simulator both start nodes this way.

use std::sync::Arc;

use cairn_node::Node;
use cairn_node::acl::TokenSecret;
use cairn_node::config::{Bootstrap, NodeConfig};
use cairn_node::data_dir::{ClusterId, DataDirError, read_stamp};
use cairn_node::metrics::Metrics;
use cairn_node::node::StartError;
use cairn_node::rt::{self, Duration, watch};
use cairn_node::storage::Disk;
use cairn_node::tls::{ClientTls, ServerTls, TlsError, TlsFiles};
use thiserror::Error;
use tokio::net::TcpListener;

use crate::client::{CairnClient, ClientOptions, Route};
use crate::{join, router, serve};

/// A started node and the switch that stops its HTTP actor.
pub struct Launched {
    pub node: Node,
    /// The HTTP port's TLS, when it speaks HTTPS (for a reload on demand).
    pub tls: Option<Arc<ServerTls>>,
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
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Binds the peer and HTTP addresses of `config`, starts the node and its HTTP actor, and joins
/// the cluster in the background if the node is not a voter yet and was told whom to ask. The
/// node counts in `metrics`.
pub async fn launch(
    mut config: NodeConfig,
    disk: Arc<dyn Disk>,
    metrics: Arc<Metrics>,
) -> Result<Launched, LaunchError> {
    let optional_certificates = config.bugs.optional_client_certificates();
    let server_tls = config
        .tls
        .clone()
        .map(|files| TlsFiles { client_cert_auth: files.client_cert_auth && !optional_certificates, ..files })
        .map(|files| ServerTls::load(disk.clone(), files))
        .transpose()?;
    let member_tls = match (&config.tls, &config.bootstrap) {
        (Some(files), Bootstrap::Join { .. }) => Some(ClientTls::of_node(disk.as_ref(), files)?),
        _ => None,
    };
    if let Bootstrap::Join { seeds, token, .. } = &config.bootstrap {
        let client = seed_client(seeds, member_tls.clone(), token.as_ref());
        let learned = check_join_target(&config, disk.as_ref(), seeds, &client).await?;
        if let Bootstrap::Join { cluster_id, .. } = &mut config.bootstrap {
            *cluster_id = learned;
        }
    }
    let bind = |what: &'static str, address: String| async move {
        TcpListener::bind(address.as_str()).await.map_err(|source| LaunchError::Listen { what, address, source })
    };
    let peer_listener = bind("peer", config.member.peer.clone()).await?;
    let http_listener = bind("http", config.member.http.clone()).await?;
    let joining = match &config.bootstrap {
        Bootstrap::Join { seeds, kind, token, .. } => Some((seeds.clone(), *kind, token.clone())),
        _ => None,
    };
    let node = Node::start(config, disk, metrics, peer_listener).await?;
    let (http_shutdown, http_stop) = watch::channel(false);
    if let Some(tls) = &server_tls {
        rt::spawn(tls.clone().keep_reloading(http_stop.clone()));
    }
    rt::spawn(serve(http_listener, router(node.clone()), server_tls.clone(), http_stop));
    if let Some((seeds, kind, token)) = joining {
        rt::spawn(join::join_cluster(node.clone(), seeds, kind, member_tls, token));
    }
    Ok(Launched { node, tls: server_tls, http_shutdown })
}

/// A client of the seeds for the join check, with the node's certificate and join token.
fn seed_client(seeds: &[String], tls: Option<ClientTls>, token: Option<&TokenSecret>) -> CairnClient {
    let options = ClientOptions { attempt_timeout: SEED_STATUS_TIMEOUT, call_timeout: SEED_STATUS_TIMEOUT };
    CairnClient::with_tls(seeds.to_vec(), options, tls).with_token_secret(token)
}

/// How long the join check waits for each seed's status.
const SEED_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the seeds which cluster they are, and answers the first id one tells. A directory that
/// belongs to a cluster must not be joined to another one: a different id is refused before
/// anything in the directory changes. Seeds that do not answer (or predate cluster ids) prove
/// nothing: if none tells, the node starts and rejoins its own cluster from its state, as
/// `--join` is then ignored.
async fn check_join_target(
    config: &NodeConfig,
    disk: &dyn Disk,
    seeds: &[String],
    client: &CairnClient,
) -> Result<Option<ClusterId>, LaunchError> {
    let stamp = read_stamp(disk, &config.data_dir).map_err(StartError::from)?;
    let stamped = stamp.and_then(|stamp| stamp.cluster_id);
    for (index, seed) in seeds.iter().enumerate() {
        let Ok(status) = client.status(Route::Only(index)).await else { continue };
        match (status.value.cluster_id, stamped) {
            (Some(found), Some(stamped)) if found != stamped => {
                let dir = config.data_dir.clone();
                let source_of_found = format!("the member at {seed}");
                return Err(
                    StartError::from(DataDirError::OtherCluster { dir, stamped, found, source_of_found }).into()
                );
            }
            (Some(found), _) => return Ok(Some(found)),
            (None, _) => {}
        }
    }
    Ok(None)
}
