//! TLS sessions between a node's listener and clients over an in-memory stream, with the
//! certificates `cairn tls init` makes: who is trusted, client certificates, renewal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::storage::{Disk, SimDisk};

fn put_file(disk: &dyn Disk, path: &Path, bytes: &[u8]) {
    disk.create_dir_all(path.parent().unwrap()).unwrap();
    disk.set_len(path, 0).or_else(|_| disk.write_at(path, 0, b"")).unwrap();
    disk.write_at(path, 0, bytes).unwrap();
}

/// A CA and a node certificate for 127.0.0.1 written to `disk` under `/tls`.
fn node_files(disk: &dyn Disk, client_cert_auth: bool) -> (DevCa, TlsFiles) {
    let ca = DevCa::new("test CA").unwrap();
    let node = ca.node("node-1", &["127.0.0.1".to_string()]).unwrap();
    let files = TlsFiles {
        cert: PathBuf::from("/tls/node-1.crt"),
        key: PathBuf::from("/tls/node-1.key"),
        trusted_ca: Some(PathBuf::from("/tls/ca.crt")),
        client_cert_auth,
    };
    write_identity(disk, &files, &ca, &node);
    (ca, files)
}

fn write_identity(disk: &dyn Disk, files: &TlsFiles, ca: &DevCa, node: &Identity) {
    put_file(disk, &files.cert, &node.cert_pem);
    put_file(disk, &files.key, &node.key_pem);
    put_file(disk, files.trusted_ca.as_ref().unwrap(), ca.cert_pem().as_bytes());
}

/// Runs one exchange (the client writes "ping", the server answers "pong") and returns what
/// the client read, or the first error either side met.
async fn exchange(server: &ServerTls, client: &ClientTls) -> Result<Vec<u8>, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = server.acceptor();
    let served = crate::rt::spawn(async move {
        let mut tls = acceptor.accept(FlushOnShutdown(server_io)).await.map_err(|e| e.to_string())?;
        let mut ping = [0u8; 4];
        tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())
    });
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let answer = async {
        let mut tls = client.connector().connect(name, FlushOnShutdown(client_io)).await.map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(answer)
    }
    .await;
    let served = served.await.unwrap();
    let answer = answer?;
    served?;
    Ok(answer)
}

fn client_of(ca: &DevCa, identity: Option<&Identity>) -> ClientTls {
    ClientTls::from_pem(ca.cert_pem().as_bytes(), identity, Path::new("test")).unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_one_trusting_another_ca_is_refused() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(1));
    let (ca, files) = node_files(disk.as_ref(), false);
    let server = ServerTls::load(disk, files).unwrap();
    assert_eq!(exchange(&server, &client_of(&ca, None)).await, Ok(b"pong".to_vec()));
    let stranger = DevCa::new("another CA").unwrap();
    let refused = exchange(&server, &client_of(&stranger, None)).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("UnknownIssuer") || e.contains("invalid peer certificate")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn client_certificate_auth_refuses_a_client_without_a_certificate_of_the_ca() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(2));
    let (ca, files) = node_files(disk.as_ref(), true);
    let server = ServerTls::load(disk, files).unwrap();
    let client = ca.client("client").unwrap();
    assert_eq!(exchange(&server, &client_of(&ca, Some(&client))).await, Ok(b"pong".to_vec()));
    assert!(exchange(&server, &client_of(&ca, None)).await.is_err(), "no certificate");
    let stranger = DevCa::new("another CA").unwrap().client("client").unwrap();
    assert!(exchange(&server, &client_of(&ca, Some(&stranger))).await.is_err(), "a certificate of another CA");
}

#[tokio::test]
async fn renewed_files_are_taken_without_a_restart_and_broken_ones_are_not() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(3));
    let (old_ca, files) = node_files(disk.as_ref(), false);
    let server = ServerTls::load(disk.clone(), files.clone()).unwrap();
    assert!(!server.reload().unwrap(), "nothing changed");

    put_file(disk.as_ref(), &files.key, b"not a key");
    assert!(server.reload().is_err(), "a broken renewal is refused");
    assert_eq!(exchange(&server, &client_of(&old_ca, None)).await, Ok(b"pong".to_vec()), "the old files stay in force");

    let new_ca = DevCa::new("renewed CA").unwrap();
    write_identity(disk.as_ref(), &files, &new_ca, &new_ca.node("node-1", &["127.0.0.1".to_string()]).unwrap());
    assert!(server.reload().unwrap());
    assert_eq!(exchange(&server, &client_of(&new_ca, None)).await, Ok(b"pong".to_vec()));
    assert!(exchange(&server, &client_of(&old_ca, None)).await.is_err(), "the old CA's clients no longer trust it");
}

#[tokio::test]
async fn client_certificate_auth_without_a_ca_is_refused() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(4));
    let (_, files) = node_files(disk.as_ref(), true);
    let files = TlsFiles { trusted_ca: None, ..files };
    assert!(matches!(ServerTls::load(disk, files), Err(TlsError::NoCa { .. })));
}

/// Goal: an expired certificate is refused with its reason, at start and at reload. The
/// simulator's clock moves a year and a day ahead in no time.
#[cfg(madsim)]
#[tokio::test]
async fn an_expired_certificate_is_refused_with_its_reason() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(5));
    let (_, files) = node_files(disk.as_ref(), false);
    crate::rt::sleep(crate::rt::Duration::from_secs(366 * 24 * 3600)).await;
    let refused = ServerTls::load(disk, files).err().map(|e| e.to_string());
    assert_eq!(refused, Some("the certificate in /tls/node-1.crt has expired".to_string()));
}
