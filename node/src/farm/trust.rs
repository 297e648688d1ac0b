//! The farm's trust anchor: a CA made with rcgen by the first node (its subject names the farm
//! ID), handed to joiners that prove the farm secret, and a certificate per node signed by it.
//! Files under `<home>/farm/` (keys 0600).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::identity::write_atomic;

/// Trust errors.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// rcgen failed.
    #[error("farm certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// The farm CA's key and the farm ID it is named after (the certificate is derived from both).
#[derive(Clone)]
pub struct FarmCa {
    /// Farm ID.
    pub farm_id: String,
    /// CA private key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for FarmCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarmCa")
            .field("farm_id", &self.farm_id)
            .field("key_pem", &"***")
            .finish()
    }
}

fn ca_params(farm_id: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("mirrorfarm farm {farm_id}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

pub use mirrorfarm_common::farm::tls::node_name;

impl FarmCa {
    /// A new CA for `farm_id` (the first node of a farm).
    pub fn create(farm_id: &str) -> Result<Self, TrustError> {
        Ok(Self {
            farm_id: farm_id.to_owned(),
            key_pem: KeyPair::generate()?.serialize_pem(),
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> Result<String, TrustError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Ok(ca_params(&self.farm_id)?.self_signed(&key)?.pem())
    }

    /// A certificate and key (PEM) for `node_id`, signed by this CA.
    pub fn issue(&self, node_id: &str) -> Result<(String, String), TrustError> {
        self.issue_named(node_id, &node_name(node_id))
    }

    /// A certificate and key (PEM) for `id` naming `dns` (e.g. a load balancer's name).
    pub fn issue_named(&self, id: &str, dns: &str) -> Result<(String, String), TrustError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::new(ca_params(&self.farm_id)?, ca_key);
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![dns.to_owned()])?;
        p.distinguished_name.push(DnType::CommonName, id);
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn path(home: &Path) -> PathBuf {
        home.join("farm").join("ca.key")
    }

    /// Loads the farm CA kept in the home, if any.
    pub fn load(home: &Path, farm_id: &str) -> Result<Option<Self>, TrustError> {
        let path = Self::path(home);
        match std::fs::read_to_string(&path) {
            Ok(key_pem) => Ok(Some(Self {
                farm_id: farm_id.to_owned(),
                key_pem,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TrustError::Io { path, source }),
        }
    }

    /// Keeps the CA key in the home (0600).
    pub fn save(&self, home: &Path) -> Result<(), TrustError> {
        let path = Self::path(home);
        let dir = home.join("farm");
        std::fs::create_dir_all(&dir).map_err(|source| TrustError::Io { path: dir, source })?;
        write_atomic(&path, self.key_pem.as_bytes(), 0o600)
            .map_err(|source| TrustError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_chain_to_the_ca() {
        let ca = FarmCa::create("farm-1").expect("ca");
        let ca_pem = ca.cert_pem().expect("ca pem");
        let (cert, _key) = ca.issue("node-a").expect("issue");
        use rustls::pki_types::pem::PemObject;
        let ca_der =
            rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca der");
        let node_der =
            rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).expect("node der");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).expect("root");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let name = rustls::pki_types::ServerName::try_from(node_name("node-a")).expect("name");
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &node_der,
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("node certificate verifies against the farm CA");
        let other = FarmCa::create("farm-2").expect("other");
        let (stranger, _) = other.issue("node-a").expect("issue");
        let stranger =
            rustls::pki_types::CertificateDer::from_pem_slice(stranger.as_bytes()).expect("der");
        assert!(verifier
            .verify_server_cert(
                &stranger,
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now()
            )
            .is_err());
    }
}
