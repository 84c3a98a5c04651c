//! A development certificate authority and the certificates a local cluster needs, made with
//! Ed25519 keys drawn through the runtime seam: `cairn tls init` writes them, and the simulator
//! makes them inside a simulation (its clock starts at a seeded moment), where they come out the
//! same for the same seed.

use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ED25519,
};
use rustls::pki_types::PrivatePkcs8KeyDer;

use super::config::Identity;
use super::seam;
use crate::rt::Duration;

/// How long the development CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node's or client's certificate is valid.
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start being valid this long before they are made, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
#[error("cannot make a certificate: {0}")]
pub struct GenerateError(String);

fn failed(error: impl std::fmt::Display) -> GenerateError {
    GenerateError(error.to_string())
}

/// An Ed25519 key from 32 random bytes through the seam (rcgen's own generation would use ring's
/// random source, which the simulator cannot seed).
fn ed25519_key() -> Result<KeyPair, GenerateError> {
    let mut seed = [0u8; 32];
    seam::fill_random(&mut seed).map_err(|_| failed("no randomness"))?;
    // PKCS#8 v1 for an Ed25519 private key (RFC 8410): a fixed prefix, then the seed.
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(&seed);
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), &PKCS_ED25519).map_err(failed)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) -> Result<(), GenerateError> {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_err(failed)?;
    let at = |since_epoch: Duration| {
        let seconds = i64::try_from(since_epoch.as_secs()).map_err(failed)?;
        time::OffsetDateTime::from_unix_timestamp(seconds).map_err(failed)
    };
    params.not_before = at(now.saturating_sub(BACKDATE))?;
    params.not_after = at(now + validity)?;
    Ok(())
}

/// A development certificate authority.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl DevCa {
    pub fn new(name: &str) -> Result<DevCa, GenerateError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, CA_VALIDITY)?;
        let key = ed25519_key()?;
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok(DevCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// The CA's certificate (`ca.crt`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for serving under `hosts` (IP addresses or DNS names) and for calling
    /// other nodes as a client; its chain holds the CA's certificate after its own.
    pub fn node(&self, name: &str, hosts: &[String]) -> Result<Identity, GenerateError> {
        let mut names = hosts.to_vec();
        names.push(name.to_string());
        self.leaf(name, names, vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// A certificate that only identifies a client.
    pub fn client(&self, name: &str) -> Result<Identity, GenerateError> {
        self.leaf(name, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn leaf(
        &self,
        name: &str,
        subject_alt_names: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Identity, GenerateError> {
        let mut params = CertificateParams::new(subject_alt_names).map_err(failed)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALIDITY)?;
        let key = ed25519_key()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        let chain = format!("{}{}", cert.pem(), self.cert_pem);
        Ok(Identity { cert_pem: chain.into_bytes(), key_pem: key.serialize_pem().into_bytes() })
    }
}
