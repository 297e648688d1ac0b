//! TLS on the farm channel: the names in farm certificates, the farm CA as a root store, the
//! client configuration of a member (its certificate presented, the peer's checked against the
//! farm CA and its name) and of a joiner (which has no CA yet and binds its proof to whatever
//! certificate the member proved it holds).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;

use crate::farm::FarmError;

/// The DNS name in a node's farm certificate (and the host name members reach it by).
pub fn node_name(node_id: &str) -> String {
    format!("{node_id}.nodes.mirrorfarm")
}

/// The DNS name in a load balancer's farm certificate.
pub fn lb_name(lb_id: &str) -> String {
    format!("{lb_id}.lbs.mirrorfarm")
}

/// Whether a certificate name names a node (not a load balancer): its node ID.
pub fn node_of_name(name: &str) -> Option<&str> {
    name.strip_suffix(".nodes.mirrorfarm")
        .filter(|id| !id.is_empty() && !id.contains('.'))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The farm CA certificate(s) in `ca_pem` as a root store.
pub fn ca_roots(ca_pem: &str) -> Result<rustls::RootCertStore, FarmError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let c = c.map_err(|e| FarmError::Certificate(format!("farm CA: {e}")))?;
        roots
            .add(c)
            .map_err(|e| FarmError::Certificate(format!("farm CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(FarmError::Certificate("no farm CA certificate".into()));
    }
    Ok(roots)
}

/// A certificate chain and key from PEM.
pub fn cert_and_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FarmError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FarmError::Certificate(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| FarmError::Certificate(e.to_string()))?;
    Ok((certs, key))
}

/// A client configuration presenting `cert_pem`/`key_pem` and trusting only the farm CA.
pub fn member_client(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ClientConfig, FarmError> {
    let roots = ca_roots(ca_pem)?;
    let (certs, key) = cert_and_key(cert_pem, key_pem)?;
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| FarmError::Certificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| FarmError::Certificate(e.to_string()))?;
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(c)
}

/// The client configuration of a joiner: any certificate is accepted (the joiner has no CA yet),
/// the handshake signatures are still checked, so the certificate is really the member's; the
/// proofs then bind to it.
pub fn joiner_client() -> Result<rustls::ClientConfig, FarmError> {
    let p = provider();
    let mut c = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| FarmError::Certificate(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(BindOnly(p)))
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(c)
}

#[derive(Debug)]
struct BindOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for BindOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The server configuration of a member's farm listener: its certificate; a client certificate
/// from the farm CA is checked when presented and optional (joiners have none yet; the routes
/// decide what a client without one may do).
pub fn member_server(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, FarmError> {
    let roots = ca_roots(ca_pem)?;
    let (certs, key) = cert_and_key(cert_pem, key_pem)?;
    let p = provider();
    let clients =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| FarmError::Certificate(e.to_string()))?;
    let mut c = rustls::ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .map_err(|e| FarmError::Certificate(e.to_string()))?
        .with_client_cert_verifier(clients)
        .with_single_cert(certs, key)
        .map_err(|e| FarmError::Certificate(e.to_string()))?;
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(c)
}
