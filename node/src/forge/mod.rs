//! Knowing the upstream: which projects and repositories it has, asked of its forge's REST API
//! (Bitbucket Data Center, GitHub, GitLab, Gitea/Forgejo), of a grokmirror manifest, or of a
//! `file://` tree; the inventory kept from those answers; and webhook signatures.

pub mod bitbucket;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod http;
pub mod inventory;
pub mod manifest;
pub mod owner;
pub mod permissions;
pub mod ssh_index;
pub mod ssh_users;
pub mod webhook;

use std::sync::Arc;

use crate::config::{Config, ForgeKind};
use crate::names::{ProjectKey, RepoId};
use crate::secrets::SecretFile;

/// Why a forge (or manifest) could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForgeError {
    /// No answer.
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    /// An unexpected status.
    #[error("{0} answered {1}")]
    Status(String, u16),
    /// Refused for too many requests, for longer than the node waits.
    #[error("{0}: rate limited for {1} s")]
    RateLimited(String, u64),
    /// An answer of another shape than documented.
    #[error("{0}: unexpected answer: {1}")]
    Shape(String, String),
    /// A next page on another origin than the API's.
    #[error("refusing to follow a link off the API's origin: {0}")]
    Foreign(String),
    /// More pages than a listing may have.
    #[error("{0}: more than {max} pages", max = http::MAX_PAGES)]
    TooManyPages(String),
    /// The HTTP client could not be built.
    #[error("forge HTTP client: {0}")]
    Client(String),
}

/// A project (Bitbucket project, GitHub organisation or user, GitLab group, Gitea organisation)
/// as the upstream lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamProject {
    /// Its key: the first part of a repository's path.
    pub key: String,
    /// Its display name.
    pub name: String,
}

/// A repository as the upstream lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRepo {
    /// Its project and slug.
    pub id: RepoId,
    /// What identifies its refs' state, when the source says (a grokmirror fingerprint: the SHA-1
    /// of `git show-ref`'s output): the reconcile skips a repository whose state it already has.
    pub fingerprint: Option<String>,
}

/// A forge's API for the configured kind.
#[derive(Clone)]
pub enum Forge {
    /// Bitbucket Data Center.
    Bitbucket(http::ApiClient),
    /// GitHub.
    Github(http::ApiClient),
    /// GitLab.
    Gitlab(http::ApiClient),
    /// Gitea / Forgejo.
    Gitea(http::ApiClient),
}

impl Forge {
    /// The configured forge's client (`None` for a plain upstream).
    pub fn new(
        config: &Config,
        token: Option<Arc<SecretFile>>,
    ) -> Result<Option<Self>, ForgeError> {
        let Some(root) = config.forge.api_url.as_deref() else {
            return Ok(None);
        };
        let client = crate::access::upstream_check::http_client(config.auth.ca_file.as_deref(), 0)
            .map_err(|e| ForgeError::Client(e.to_string()))?;
        use http::TokenHeader as T;
        let api = |h, extra: &[(&'static str, &'static str)]| {
            http::ApiClient::new(client.clone(), root, h, extra, token.clone())
        };
        Ok(Some(match config.forge.kind {
            ForgeKind::Plain => return Ok(None),
            ForgeKind::Bitbucket => Self::Bitbucket(api(T::Bearer, &[])),
            ForgeKind::Github => {
                Self::Github(api(T::Bearer, &[("x-github-api-version", "2022-11-28")]))
            }
            ForgeKind::Gitlab => Self::Gitlab(api(T::PrivateToken, &[])),
            ForgeKind::Gitea => Self::Gitea(api(T::Token, &[])),
        }))
    }

    /// Every project the token can see.
    pub async fn projects(&self) -> Result<Vec<UpstreamProject>, ForgeError> {
        match self {
            Self::Bitbucket(c) => bitbucket::projects(c).await,
            Self::Github(c) => github::projects(c).await,
            Self::Gitlab(c) => gitlab::projects(c).await,
            Self::Gitea(c) => gitea::projects(c).await,
        }
    }

    /// The repositories of one project (with GitLab, of its subgroups too: each under its own
    /// namespace path); `None`: the project does not exist, or is not visible.
    pub async fn repos(
        &self,
        project: &ProjectKey,
    ) -> Result<Option<Vec<UpstreamRepo>>, ForgeError> {
        match self {
            Self::Bitbucket(c) => bitbucket::repos(c, project).await,
            Self::Github(c) => github::repos(c, project).await,
            Self::Gitlab(c) => gitlab::repos(c, project).await,
            Self::Gitea(c) => gitea::repos(c, project).await,
        }
    }
}

/// SSH users from the forge (`plugin.ssh.keys=forge`): whose a key is, and what its user may read.
pub struct ForgeSsh {
    /// Keys' owners.
    pub users: ssh_users::SshUsers,
    /// What they may read.
    pub permissions: permissions::Permissions,
}

impl ForgeSsh {
    /// Both, asking `forge`, cached for `ttl` (grants `offline_ttl` longer while it is away).
    pub fn new(forge: Forge, ttl: std::time::Duration, offline_ttl: std::time::Duration) -> Self {
        Self {
            users: ssh_users::SshUsers::new(forge.clone(), ttl, offline_ttl),
            permissions: permissions::Permissions::new(forge, ttl, offline_ttl),
        }
    }
}

/// A repository as GitHub and Gitea list them (the fields read).
#[derive(serde::Deserialize)]
struct NamedRepo {
    name: String,
}

/// The repositories of an organisation (`GET /orgs/{name}/repos<query>`), or of a user of that
/// name when there is no such organisation (`GET /users/{name}/repos<user_query>`): GitHub's and
/// Gitea's shape.
pub(crate) async fn org_or_user_repos(
    c: &http::ApiClient,
    project: &ProjectKey,
    query: &str,
    user_query: &str,
) -> Result<Option<Vec<UpstreamRepo>>, ForgeError> {
    let name = encode_segment(project.as_str());
    let mut list: Option<Vec<NamedRepo>> =
        http::link_paged(c, c.url(&format!("/orgs/{name}/repos{query}"))).await?;
    if list.is_none() {
        list = http::link_paged(c, c.url(&format!("/users/{name}/repos{user_query}"))).await?;
    }
    Ok(list.map(|l| {
        l.into_iter()
            .filter_map(|r| slug(project.as_str(), &r.name))
            .collect()
    }))
}

/// Keeps what parses as a repository ID, warning about the rest.
pub(crate) fn slug(project: &str, name: &str) -> Option<UpstreamRepo> {
    match RepoId::parse(&format!("{project}/{name}")) {
        Ok(id) => Some(UpstreamRepo {
            id,
            fingerprint: None,
        }),
        Err(e) => {
            tracing::warn!(project, name, error = %e, "skipping an upstream repository with an unusable name");
            None
        }
    }
}

/// Percent-encodes one path segment (GitLab's `id` may be a namespace path, `a%2Fb`).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
