//! The upstream's LFS server: its batch API (with a user's credentials, or the farm's own
//! access: none in anonymous mode, or what the upstream's `git-lfs-authenticate` hands the farm's
//! SSH key), and object downloads streamed into a [`Feeder`]. Every call is bounded in time
//! (a download by how long it may go without a byte, not by its total).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use futures_util::StreamExt;

use crate::access::upstream_check::{http_client, ClientError};
use crate::config::Config;
use crate::lfs::batch::{Action, BatchRequest, BatchResponse, MEDIA_TYPE};
use crate::lfs::flight::Feeder;
use crate::lfs::ssh_auth::SshAuth;
use crate::names::RepoId;

/// How long a batch call may take.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest batch answer read.
const MAX_BATCH_ANSWER: usize = 16 << 20;
/// How long a download may go without a byte.
pub const IDLE: Duration = Duration::from_secs(60);

/// Whose access a call to the upstream uses.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A client's own `Authorization` header (authenticated mode).
    User(HeaderValue),
    /// The farm's: nothing in anonymous mode, else the upstream's `git-lfs-authenticate`.
    Farm,
}

/// Why the upstream's LFS server could not help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No LFS endpoint is known and the farm cannot ask for one.
    #[error("no LFS endpoint of the upstream is known (set plugin.mirroring.upstream.lfs.url)")]
    NoEndpoint,
    /// The farm has no access of its own to this upstream's LFS server.
    #[error("the farm has no access of its own to the upstream's LFS server: {0}")]
    NoFarmAccess(String),
    /// No answer.
    #[error("the upstream's LFS server cannot be reached: {0}")]
    Unreachable(String),
    /// The credentials were refused (401).
    #[error("the upstream's LFS server refused these credentials")]
    BadCredentials,
    /// No access, no such repository, or none of the objects asked about (403, 404).
    #[error("the upstream's LFS server denies access or has none of these objects")]
    NoAccess,
    /// Another status.
    #[error("the upstream's LFS server answered {0}")]
    Status(u16),
    /// An answer that is not the batch API's.
    #[error("the upstream's LFS server answered something else: {0}")]
    Malformed(String),
}

/// The upstream's LFS server, as this node reaches it.
pub struct UpstreamLfs {
    client: reqwest::Client,
    /// For objects: follows redirects (LFS servers send downloads on to object storage).
    objects: reqwest::Client,
    /// `plugin.mirroring.upstream.lfs.url` (or derived).
    config: crate::config::LfsConfig,
    anonymous: bool,
    ssh: Option<SshAuth>,
}

impl UpstreamLfs {
    /// The client for `config`'s upstream (`ssh`: the farm's way to `git-lfs-authenticate`).
    pub fn new(config: &Config, ssh: Option<SshAuth>) -> Result<Self, ClientError> {
        Ok(Self {
            client: http_client(config.auth.ca_file.as_deref(), 0)?,
            objects: http_client(config.auth.ca_file.as_deref(), 5)?,
            config: config.lfs.clone(),
            anonymous: config.access == crate::config::Access::Anonymous,
            ssh,
        })
    }

    /// The endpoint and headers a call about `repo` uses.
    async fn endpoint(
        &self,
        repo: &RepoId,
        auth: &Auth,
        upload: bool,
    ) -> Result<(String, HeaderMap), UpstreamError> {
        let mut headers = HeaderMap::new();
        match auth {
            Auth::User(v) => {
                let endpoint = self
                    .config
                    .endpoint_of(repo)
                    .ok_or(UpstreamError::NoEndpoint)?;
                headers.insert(header::AUTHORIZATION, v.clone());
                Ok((endpoint, headers))
            }
            Auth::Farm => {
                if self.anonymous {
                    if let Some(endpoint) = self.config.endpoint_of(repo) {
                        return Ok((endpoint, headers));
                    }
                }
                let Some(ssh) = &self.ssh else {
                    return Err(if self.anonymous {
                        UpstreamError::NoEndpoint
                    } else {
                        UpstreamError::NoFarmAccess(
                            "in authenticated mode it asks the upstream's git-lfs-authenticate \
                             over SSH, which needs an ssh:// upstream"
                                .into(),
                        )
                    });
                };
                let doc = ssh.authenticate(repo, upload).await?;
                for (k, v) in &doc.header {
                    if let (Ok(k), Ok(v)) = (
                        header::HeaderName::try_from(k.as_str()),
                        HeaderValue::from_str(v),
                    ) {
                        headers.insert(k, v);
                    }
                }
                Ok((doc.href.trim_end_matches('/').to_owned(), headers))
            }
        }
    }

    /// Asks the batch API about `req`'s objects; download actions that carry no
    /// `Authorization` of their own get the one the batch call used when they point at the same
    /// server (what git-lfs does).
    pub async fn batch(
        &self,
        repo: &RepoId,
        auth: &Auth,
        req: &BatchRequest,
    ) -> Result<BatchResponse, UpstreamError> {
        let upload = req.operation == crate::lfs::batch::Operation::Upload;
        let (endpoint, headers) = self.endpoint(repo, auth, upload).await?;
        let url = format!("{endpoint}/objects/batch");
        let unreachable =
            |e: reqwest::Error| UpstreamError::Unreachable(e.without_url().to_string());
        let mut r = self
            .client
            .post(&url)
            .headers(headers.clone())
            .header(header::ACCEPT, MEDIA_TYPE)
            .header(header::CONTENT_TYPE, MEDIA_TYPE)
            .timeout(BATCH_TIMEOUT)
            .json(req)
            .send()
            .await
            .map_err(unreachable)?;
        match r.status().as_u16() {
            200 => {}
            401 => return Err(UpstreamError::BadCredentials),
            403 | 404 => return Err(UpstreamError::NoAccess),
            s => return Err(UpstreamError::Status(s)),
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BATCH_ANSWER {
                return Err(UpstreamError::Malformed("answer too large".into()));
            }
        }
        let mut answer: BatchResponse =
            serde_json::from_slice(&body).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
        let origin = origin_of(&endpoint);
        if let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            for o in &mut answer.objects {
                let actions = o.actions.iter_mut().flat_map(|a| {
                    [&mut a.download, &mut a.upload, &mut a.verify]
                        .into_iter()
                        .flatten()
                });
                for a in actions {
                    let has_auth = a
                        .header
                        .keys()
                        .any(|k| k.eq_ignore_ascii_case("authorization"));
                    if !has_auth && origin_of(&a.href) == origin {
                        a.header.insert("Authorization".into(), auth.to_owned());
                    }
                }
            }
        }
        Ok(answer)
    }

    /// Downloads the object a download action points at into `feeder`.
    pub async fn download(&self, action: &Action, mut feeder: Feeder) -> Result<Feeder, String> {
        let mut req = self.objects.get(&action.href);
        for (k, v) in &action.header {
            req = req.header(k.as_str(), v.as_str());
        }
        let r = tokio::time::timeout(IDLE, req.send())
            .await
            .map_err(|_| "the upstream's LFS server did not answer in time".to_owned())?
            .map_err(|e| format!("upstream download: {}", e.without_url()))?;
        if r.status().as_u16() != 200 {
            return Err(format!(
                "upstream download answered {}",
                r.status().as_u16()
            ));
        }
        let mut body = r.bytes_stream();
        loop {
            match tokio::time::timeout(IDLE, body.next()).await {
                Err(_) => return Err("the upstream's download stalled".into()),
                Ok(None) => return Ok(feeder),
                Ok(Some(Err(e))) => return Err(format!("upstream download: {}", e.without_url())),
                Ok(Some(Ok(chunk))) => feeder.feed(&chunk).await.map_err(|e| e.to_string())?,
            }
        }
    }

    /// Passes a batch request on verbatim (uploads): the upstream's answer, to be streamed back.
    pub async fn forward(
        &self,
        repo: &RepoId,
        authorization: &HeaderValue,
        body: bytes::Bytes,
    ) -> Result<reqwest::Response, UpstreamError> {
        let endpoint = self
            .config
            .endpoint_of(repo)
            .ok_or(UpstreamError::NoEndpoint)?;
        self.client
            .post(format!("{endpoint}/objects/batch"))
            .header(header::AUTHORIZATION, authorization.clone())
            .header(header::ACCEPT, MEDIA_TYPE)
            .header(header::CONTENT_TYPE, MEDIA_TYPE)
            .timeout(BATCH_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(e.without_url().to_string()))
    }

    /// The upstream LFS endpoint of `repo` a client is told about (uploads in anonymous mode).
    pub fn endpoint_of(&self, repo: &RepoId) -> Option<String> {
        self.config.endpoint_of(repo)
    }
}

/// `scheme://host:port` of a URL (lowercase), for same-server checks.
fn origin_of(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?
    ))
}

/// The server-discovery answer of `git-lfs-authenticate` (git-lfs `docs/api/server-discovery.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthenticateDoc {
    /// The LFS endpoint.
    pub href: String,
    /// Headers to send to it.
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    /// Seconds it stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// When it stops being valid (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://Up.example:443/a/b"),
            origin_of("https://up.example/x")
        );
        assert_ne!(
            origin_of("https://up.example/x"),
            origin_of("https://up.example:8443/x")
        );
        assert_ne!(
            origin_of("http://up.example/x"),
            origin_of("https://up.example/x")
        );
        assert_eq!(origin_of("not a url"), None);
    }

    #[test]
    fn the_documented_discovery_answer_reads() {
        // docs/api/server-discovery.md: https://github.com/git-lfs/git-lfs/blob/main/docs/api/server-discovery.md
        let doc: AuthenticateDoc = serde_json::from_str(
            r#"{"href": "https://lfs-server.com/foo/bar", "header": {"Authorization": "RemoteAuth some-token"}, "expires_in": 86400}"#,
        )
        .expect("doc");
        assert_eq!(doc.href, "https://lfs-server.com/foo/bar");
        assert_eq!(doc.header["Authorization"], "RemoteAuth some-token");
        assert_eq!(doc.expires_in, Some(86400));
    }
}
