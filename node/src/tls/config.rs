//! TLS configurations built from PEM files: the node's server side, reloaded when its files
//! change, and clients' side.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::seam;
use crate::rt::{self, Duration};
use crate::storage::Disk;

/// How often a node looks at its certificate files for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The files of a TLS listener, as given by `--cert-file`, `--key-file` and
/// `--trusted-ca-file`, and whether clients must present a certificate the CA signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trusted_ca: Option<PathBuf>,
    pub client_cert_auth: bool,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no {what} in PEM form")]
    Pem { path: PathBuf, what: &'static str },
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
    #[error("the certificate in {path} {problem}")]
    Validity { path: PathBuf, problem: &'static str },
    #[error("{needed_for} needs a CA to check certificates against (--trusted-ca-file)")]
    NoCa { needed_for: &'static str },
}

fn rustls_error(what: impl Into<String>) -> impl FnOnce(rustls::Error) -> TlsError {
    let what = what.into();
    move |source| TlsError::Rustls { what, source }
}

/// PEM bytes of a certificate chain and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_path_buf(), what: "certificate" });
    }
    Ok(certs)
}

fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| TlsError::Pem { path: path.to_path_buf(), what: "private key" })
}

fn roots(pem: &[u8], path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem, path)? {
        roots.add(cert).map_err(rustls_error(format!("the CA certificate in {}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// Refuses a certificate that has expired or is not valid yet, checked against the CA that is
/// meant to trust it, so the operator reads why at start or reload rather than in every
/// client's handshake error.
fn check_validity(chain: &[CertificateDer<'static>], roots: &Arc<RootCertStore>, path: &Path) -> Result<(), TlsError> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), seam::provider())
        .build()
        .map_err(|e| TlsError::Rustls { what: "the CA".into(), source: rustls::Error::General(e.to_string()) })?;
    let now = seam::clock().current_time().unwrap_or(UnixTime::since_unix_epoch(Duration::ZERO));
    let name = ServerName::try_from("cairn.invalid").expect("a valid DNS name");
    let (leaf, intermediates) = chain.split_first().expect("a chain has a certificate");
    let problem = match verifier.verify_server_cert(leaf, intermediates, &name, &[], now) {
        Err(rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. })) => {
            "has expired"
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        )) => "is not valid yet",
        _ => return Ok(()),
    };
    Err(TlsError::Validity { path: path.to_path_buf(), problem })
}

/// A server configuration for `files`, whose contents are `pems` (cert, key, CA).
fn server_config(files: &TlsFiles, pems: &FileContents) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&pems.cert, &files.cert)?;
    let key = private_key(&pems.key, &files.key)?;
    let builder = ServerConfig::builder_with_details(seam::provider(), seam::clock())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error("TLS 1.3"))?;
    let builder = match (&pems.trusted_ca, &files.trusted_ca) {
        (Some(ca), Some(path)) => {
            let roots = roots(ca, path)?;
            check_validity(&chain, &roots, &files.cert)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, seam::provider());
            let verifier = if files.client_cert_auth { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| TlsError::Rustls {
                what: "the CA".into(),
                source: rustls::Error::General(e.to_string()),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ if files.client_cert_auth => return Err(TlsError::NoCa { needed_for: "client certificate authentication" }),
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(rustls_error(format!(
        "the key in {} for the certificate in {}",
        files.key.display(),
        files.cert.display()
    )))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The bytes of a listener's files, compared on every look to tell a change.
#[derive(Clone, PartialEq, Eq)]
struct FileContents {
    cert: Vec<u8>,
    key: Vec<u8>,
    trusted_ca: Option<Vec<u8>>,
}

fn read(disk: &dyn Disk, files: &TlsFiles) -> Result<FileContents, TlsError> {
    let read =
        |path: &Path| disk.read_replaceable(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source });
    Ok(FileContents {
        cert: read(&files.cert)?,
        key: read(&files.key)?,
        trusted_ca: files.trusted_ca.as_deref().map(read).transpose()?,
    })
}

/// A TLS listener's configuration, replaced whole when its files change (a renewal is not an
/// outage). Replacing the configuration also drops its session cache, so no client resumes a
/// session under a certificate or CA that is gone. Connections already open keep theirs.
pub struct ServerTls {
    files: TlsFiles,
    disk: Arc<dyn Disk>,
    current: Mutex<(FileContents, Arc<ServerConfig>)>,
}

impl ServerTls {
    /// Reads and checks the files; refuses a start on any problem.
    pub fn load(disk: Arc<dyn Disk>, files: TlsFiles) -> Result<Arc<ServerTls>, TlsError> {
        let contents = read(disk.as_ref(), &files)?;
        let config = server_config(&files, &contents)?;
        Ok(Arc::new(ServerTls { files, disk, current: Mutex::new((contents, config)) }))
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.lock().1.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (FileContents, Arc<ServerConfig>)> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the files again and, if they changed and make a valid configuration, puts it in
    /// force. A broken renewal keeps the configuration in force and is logged; so is each
    /// change taken. Files caught halfway through being replaced fail to parse and are taken
    /// on a later look.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let contents = read(self.disk.as_ref(), &self.files)?;
        if self.lock().0 == contents {
            return Ok(false);
        }
        let config = server_config(&self.files, &contents)?;
        *self.lock() = (contents, config);
        Ok(true)
    }

    /// Looks at the files every second until `shutdown`, taking each valid change.
    pub async fn keep_reloading(self: Arc<Self>, mut shutdown: rt::watch::Receiver<bool>) {
        let mut last_error = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = rt::sleep(RELOAD_INTERVAL) => {}
            }
            match self.reload() {
                Ok(true) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate files changed; new connections use them");
                    last_error = None;
                }
                Ok(false) => last_error = None,
                Err(error) => {
                    let message = error.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::error!(%error, "TLS files changed but cannot be used; the previous ones stay in force");
                    }
                    last_error = Some(message);
                }
            }
        }
    }
}

/// A client's TLS: the CA it trusts and, for servers that ask, its own certificate.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl ClientTls {
    /// From PEM bytes: `ca` (what `--cacert` names) and an optional client identity; `source`
    /// names where they came from in errors.
    pub fn from_pem(ca: &[u8], identity: Option<&Identity>, source: &Path) -> Result<ClientTls, TlsError> {
        let builder = ClientConfig::builder_with_details(seam::provider(), seam::clock())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls_error("TLS 1.3"))?
            .with_root_certificates(roots(ca, source)?);
        let mut config = match identity {
            Some(identity) => builder
                .with_client_auth_cert(
                    certificates(&identity.cert_pem, source)?,
                    private_key(&identity.key_pem, source)?,
                )
                .map_err(rustls_error("the client certificate and key"))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls { config: Arc::new(config) })
    }

    /// From files: `--cacert`, and `--cert` with `--key`.
    pub fn from_files(disk: &dyn Disk, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let read = |path: &Path| {
            disk.read_replaceable(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
        };
        let identity = identity
            .map(|(cert, key)| Ok::<_, TlsError>(Identity { cert_pem: read(cert)?, key_pem: read(key)? }))
            .transpose()?;
        ClientTls::from_pem(&read(ca)?, identity.as_ref(), ca)
    }

    /// A node's client for other members' HTTP ports: it trusts the node's CA and presents the
    /// node's own certificate, which members with client certificate authentication ask for.
    pub fn of_node(disk: &dyn Disk, files: &TlsFiles) -> Result<ClientTls, TlsError> {
        let ca =
            files.trusted_ca.as_deref().ok_or(TlsError::NoCa { needed_for: "calling other members over HTTPS" })?;
        ClientTls::from_files(disk, ca, Some((&files.cert, &files.key)))
    }

    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.config.clone())
    }
}
