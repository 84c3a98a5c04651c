//! TLS for the node's HTTP port and its clients, and mutual TLS between peers, on rustls with ring, TLS 1.3 only. One code path
//! for both runtimes: tokio-rustls runs over madsim's simulated TCP, and every random byte and
//! clock reading goes through the seam (`seam`), so seeds still replay.

mod config;
mod generate;
mod peer;
pub(crate) mod seam;
mod stream;

pub use config::{ClientTls, Identity, ServerTls, TlsError, TlsFiles};
pub use generate::{DevCa, GenerateError};
pub use peer::PeerTls;
pub use rustls::pki_types::ServerName;
pub use stream::FlushOnShutdown;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The name a server's certificate must carry for `address` (`host:port`, `[v6]:port`).
pub fn server_name(address: &str) -> Result<ServerName<'static>, String> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| format!("{host:?} is not a host name or IP address"))
}

/// How long a TLS handshake may take before the connection is closed: a client that connects
/// and says nothing must not hold a connection slot.
pub const HANDSHAKE_TIMEOUT: crate::rt::Duration = crate::rt::Duration::from_secs(10);

#[cfg(test)]
mod tests;
