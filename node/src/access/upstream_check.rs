//! Asking the upstream about a credential: `GET <auth-url>/<P>/<r>.git/info/refs?service=
//! git-upload-pack` with the client's own `Authorization`. 200: may read; 401: bad credentials;
//! 403/404: no access. The same client carries pushes to the upstream.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::access::credential::Credential;
use crate::config::AccessConfig;
use crate::names::RepoId;

/// What the upstream said of a credential and a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It may read.
    Granted,
    /// The credential is wrong (401).
    BadCredentials,
    /// It may not read, or the repository does not exist (403, 404).
    NoAccess,
}

impl Verdict {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Granted => "granted",
            Verdict::BadCredentials => "bad_credentials",
            Verdict::NoAccess => "denied",
        }
    }
}

/// Why the upstream could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// No answer (connection refused, TLS failure, timeout).
    #[error("cannot reach {url}: {why}")]
    Unreachable {
        /// Where.
        url: String,
        /// What failed.
        why: String,
    },
    /// An answer that says nothing about the credential (5xx, a redirect).
    #[error("{url} answered {status}")]
    Unexpected {
        /// Where.
        url: String,
        /// Status.
        status: u16,
    },
}

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file.
    #[error("{path}: {why}")]
    CaFile {
        /// File.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// TLS or client setup.
    #[error("upstream HTTP client: {0}")]
    Setup(String),
}

/// How long one credential check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of a check's answer is read (a v2 capability advertisement is tiny).
const MAX_CHECK_BODY: usize = 64 * 1024;

/// An HTTP client for the upstream: the system roots and `ca_file` trusted, git's user agent;
/// up to `redirects` redirects followed (reqwest drops `Authorization` on one to another host).
pub fn http_client(
    ca_file: Option<&std::path::Path>,
    redirects: usize,
) -> Result<reqwest::Client, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs().unwrap_or_default();
    roots.add_parsable_certificates(native);
    if let Some(path) = ca_file {
        let ca = |why: String| ClientError::CaFile {
            path: path.display().to_string(),
            why,
        };
        let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| ca(e.to_string()))?;
            roots.add(c).map_err(|e| ca(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(if redirects == 0 {
            reqwest::redirect::Policy::none()
        } else {
            reqwest::redirect::Policy::limited(redirects)
        })
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("git/mirrorfarm-", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Setup(e.to_string()))
}

/// The upstream's smart-HTTP endpoint, for checks and pushes.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    base: Arc<str>,
}

impl Upstream {
    /// A client for `cfg.auth_url` trusting the system roots and `cfg.ca_file`.
    pub fn new(cfg: &AccessConfig) -> Result<Option<Self>, ClientError> {
        let Some(base) = &cfg.auth_url else {
            return Ok(None);
        };
        let client = http_client(cfg.ca_file.as_deref(), 0)?;
        Ok(Some(Self {
            client,
            base: base.as_str().into(),
        }))
    }

    /// `<auth-url>/<P>/<r>.git<tail>`.
    pub fn url(&self, repo: &RepoId, tail: &str) -> String {
        format!("{}/{}{tail}", self.base, repo.rel_path())
    }

    /// The HTTP client (pushes use it without a total timeout).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Whether the upstream asks for credentials to read `repo` (401 without any): only then
    /// does a 200 or 403 with credentials say they are right.
    pub async fn demands_credentials(&self, repo: &RepoId) -> Result<bool, CheckError> {
        let url = self.url(repo, "/info/refs?service=git-upload-pack");
        let r = self
            .client
            .get(&url)
            .header("Git-Protocol", "version=2")
            .timeout(CHECK_TIMEOUT)
            .send()
            .await
            .map_err(|e| CheckError::Unreachable {
                url: url.clone(),
                why: e.without_url().to_string(),
            })?;
        match r.status().as_u16() {
            401 => Ok(true),
            200 | 403 | 404 => Ok(false),
            status => Err(CheckError::Unexpected { url, status }),
        }
    }

    /// Asks whether `cred` may read `repo`.
    pub async fn check(&self, cred: &Credential, repo: &RepoId) -> Result<Verdict, CheckError> {
        let url = self.url(repo, "/info/refs?service=git-upload-pack");
        let unreachable = |e: reqwest::Error| CheckError::Unreachable {
            url: url.clone(),
            why: e.without_url().to_string(),
        };
        let mut r = self
            .client
            .get(&url)
            .header(header::AUTHORIZATION, cred.header.clone())
            // Only the capabilities, not every ref: a small answer whatever the repository.
            .header("Git-Protocol", "version=2")
            .timeout(CHECK_TIMEOUT)
            .send()
            .await
            .map_err(unreachable)?;
        let verdict = match r.status().as_u16() {
            200 => Verdict::Granted,
            401 => Verdict::BadCredentials,
            403 | 404 => Verdict::NoAccess,
            status => return Err(CheckError::Unexpected { url, status }),
        };
        // Read a small answer to its end so the connection can be reused; drop a large one.
        let mut read = 0;
        while let Ok(Some(chunk)) = r.chunk().await {
            read += chunk.len();
            if read > MAX_CHECK_BODY {
                break;
            }
        }
        Ok(verdict)
    }
}
