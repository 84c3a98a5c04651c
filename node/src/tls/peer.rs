//! Mutual TLS on the peer port: both ends present a certificate the cluster's CA signed, and a
//! peer whose certificate does not chain to it is refused before any frame is read. The peer
//! handshake (cluster secret, node and cluster ids) still runs inside the TLS session.

use std::sync::Arc;

use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::config::{ClientTls, ServerTls, TlsError, TlsFiles};
use crate::rt;
use crate::storage::Disk;

/// A node's peer TLS: its server side reloads with its files; its client side reads them at
/// every connection, so a renewal reaches both without a restart.
pub struct PeerTls {
    files: TlsFiles,
    disk: Arc<dyn Disk>,
    server: Arc<ServerTls>,
}

impl PeerTls {
    /// Loads and checks the files; the CA is required, and client certificates always are.
    pub fn load(disk: Arc<dyn Disk>, files: TlsFiles) -> Result<Arc<PeerTls>, TlsError> {
        let files = TlsFiles { client_cert_auth: true, ..files };
        let server = ServerTls::load(disk.clone(), files.clone())?;
        ClientTls::of_node(disk.as_ref(), &files)?;
        Ok(Arc::new(PeerTls { files, disk, server }))
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.server.acceptor()
    }

    /// A connector with the files as they are now.
    pub fn connector(&self) -> Result<TlsConnector, TlsError> {
        Ok(ClientTls::of_node(self.disk.as_ref(), &self.files)?.connector())
    }

    /// Reads the files again now; the server side takes them if they changed and are valid (the
    /// client side reads them at each connection anyway).
    pub fn reload(&self) -> Result<bool, TlsError> {
        self.server.reload()
    }

    /// Takes valid changes of the files on the server side until `shutdown`.
    pub async fn keep_reloading(self: Arc<Self>, shutdown: rt::watch::Receiver<bool>) {
        self.server.clone().keep_reloading(shutdown).await;
    }
}
