//! The LB's certificate: PEM files from the admin, or a self-signed one made with rcgen on first
//! start; served through a resolver whose certificate can be swapped (SIGHUP or file change)
//! without dropping connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::cert_check::{CertFacts, WARN_BEFORE};

/// What is wrong with a certificate or key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// The certificate file.
    #[error("certificate: {0}")]
    Cert(String),
    /// The key file.
    #[error("key: {0}")]
    Key(String),
}

/// Loads a certificate chain and key into what rustls serves.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, PemError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| PemError::Cert(format!("cannot read {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            PemError::Cert(format!(
                "{}: not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(PemError::Cert(format!(
            "{}: no certificate in the file",
            cert.display()
        )));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| PemError::Key(format!("{}: no usable PEM private key: {e}", key.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| PemError::Key(format!("{}: unsupported key: {e}", key.display())))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| {
        PemError::Key(format!(
            "{} does not match the certificate: {e}",
            key.display()
        ))
    })?;
    Ok(Arc::new(ck))
}

/// Loads the files and checks the certificate may be served for `hostname` now (the
/// configuration stage uses it): valid now and for the hostname.
pub fn check_pem_files(cert: &Path, key: &Path, hostname: &str) -> Result<(), PemError> {
    checked(cert, key, hostname).map(|_| ())
}

/// Loads the files, reads the leaf certificate, and refuses one the LB may not serve.
fn checked(
    cert: &Path,
    key: &Path,
    hostname: &str,
) -> Result<(Arc<CertifiedKey>, CertFacts), PemError> {
    let ck = load_certified_key(cert, key)?;
    let leaf = ck
        .cert
        .first()
        .ok_or_else(|| PemError::Cert(format!("{}: no certificate", cert.display())))?;
    let facts =
        CertFacts::read(leaf).map_err(|e| PemError::Cert(format!("{}: {e}", cert.display())))?;
    if let Some(why) = facts.refusal(hostname, SystemTime::now()) {
        return Err(PemError::Cert(format!("{}: {why}", cert.display())));
    }
    warn_if_expiring(cert, &facts);
    Ok((ck, facts))
}

/// Logs a warning when the certificate expires within [`WARN_BEFORE`].
fn warn_if_expiring(cert: &Path, facts: &CertFacts) {
    let left = facts.expires_in(SystemTime::now());
    if left < WARN_BEFORE.as_secs() as i64 {
        tracing::warn!(
            file = %cert.display(),
            expires = %crate::cert_check::when(facts.not_after),
            days_left = left / 86_400,
            "the TLS certificate expires within 30 days: renew it (the LB reloads it on SIGHUP or when the file changes)"
        );
    }
}

/// SHA-256 fingerprint of a DER certificate, as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Where the self-signed certificate and key live in a home.
pub fn self_signed_paths(home: &Path) -> (PathBuf, PathBuf) {
    let dir = home.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Makes the self-signed certificate for `hostname` (and localhost, 127.0.0.1) unless one exists
/// that may still be served for it (a hostname changed, or one expiring within 30 days, gets a new
/// one).
pub fn ensure_self_signed(home: &Path, hostname: &str) -> std::io::Result<(PathBuf, PathBuf)> {
    let (cert, key) = self_signed_paths(home);
    if cert.exists() && key.exists() {
        let usable = load_certified_key(&cert, &key).ok().and_then(|ck| {
            let facts = CertFacts::read(ck.cert.first()?).ok()?;
            let left = facts.expires_in(SystemTime::now());
            (facts.refusal(hostname, SystemTime::now()).is_none()
                && left > WARN_BEFORE.as_secs() as i64)
                .then_some(())
        });
        if usable.is_some() {
            return Ok((cert, key));
        }
        tracing::info!(file = %cert.display(), hostname, "the self-signed certificate does not cover lb.hostname (or expires soon): making a new one");
        std::fs::remove_file(&cert)?;
        std::fs::remove_file(&key)?;
    }
    std::fs::create_dir_all(cert.parent().expect("tls dir has a parent"))?;
    let mut names = vec![hostname.to_owned()];
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_owned());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    write_private(&key, ck.signing_key.serialize_pem().as_bytes())?;
    let tmp = cert.with_extension("tmp");
    std::fs::write(&tmp, ck.cert.pem())?;
    std::fs::rename(&tmp, &cert)?;
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Modification times of the certificate and key files.
type Stamps = Option<(SystemTime, SystemTime)>;

fn mtimes(cert: &Path, key: &Path) -> Stamps {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

/// A certificate resolver whose certificate is reloaded from its files on demand.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    hostname: String,
    current: RwLock<(Arc<CertifiedKey>, Stamps, CertFacts)>,
}

impl ReloadingCert {
    /// Loads the files once, for `hostname`.
    pub fn new(cert: &Path, key: &Path, hostname: &str) -> Result<Self, PemError> {
        let (ck, facts) = checked(cert, key, hostname)?;
        Ok(Self {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            hostname: hostname.to_owned(),
            current: RwLock::new((ck, mtimes(cert, key), facts)),
        })
    }

    /// What the certificate served now says of itself.
    pub fn facts(&self) -> CertFacts {
        self.current.read().2.clone()
    }

    /// The fingerprint of the certificate served now.
    pub fn fingerprint(&self) -> String {
        let cur = self.current.read();
        cur.0
            .cert
            .first()
            .map(|c| fingerprint(c))
            .unwrap_or_default()
    }

    /// Reloads when forced or when the files changed; a bad new file keeps the old certificate.
    /// Returns whether a new certificate is now served.
    pub fn reload(&self, force: bool) -> Result<bool, PemError> {
        let now = mtimes(&self.cert_path, &self.key_path);
        if !force && now == self.current.read().1 {
            return Ok(false);
        }
        let (ck, facts) = checked(&self.cert_path, &self.key_path, &self.hostname)?;
        *self.current.write() = (ck, now, facts);
        Ok(true)
    }

    /// The certificate files.
    pub fn paths(&self) -> (&Path, &Path) {
        (&self.cert_path, &self.key_path)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_loads_and_reloads() {
        let dir = std::env::temp_dir().join(format!("mf-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key) = ensure_self_signed(&dir, "git.example.com").expect("generate");
        let r = ReloadingCert::new(&cert, &key, "git.example.com").expect("load");
        assert!(r.facts().covers("git.example.com"));
        let fp = r.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(!r.reload(false).expect("unchanged"));
        std::fs::remove_dir_all(dir.join("tls")).expect("rm");
        std::thread::sleep(std::time::Duration::from_millis(20));
        ensure_self_signed(&dir, "git.example.com").expect("regenerate");
        assert!(r.reload(false).expect("changed"));
        assert_ne!(r.fingerprint(), fp);
        std::fs::write(&cert, "garbage").expect("write");
        assert!(r.reload(true).is_err());
        assert_ne!(
            r.fingerprint(),
            fp,
            "a bad file keeps the current certificate"
        );
        assert!(matches!(
            check_pem_files(&cert, &key, "git.example.com"),
            Err(PemError::Cert(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
