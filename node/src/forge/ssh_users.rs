//! SSH users from the forge (`plugin.ssh.keys=forge`): whose a key is, asked of the forge.
//! GitLab finds a key by its fingerprint (`GET /keys?fingerprint=`); the others have no such
//! lookup (tests/fixtures/forges/README.md), so their keys are indexed: GitHub Enterprise's
//! `GET /admin/keys` (then `GET /user/{id}` for the owner's login), Bitbucket Data Center's users
//! (`GET /rest/api/1.0/admin/users`) and each one's keys (`GET /rest/ssh/1.0/keys?user=`), Gitea's
//! users (`GET /admin/users`) and each one's keys (`GET /users/{login}/keys`). The index is built
//! on first use, again when older than `mirror.auth.cacheTtl`, and at most once a minute when a
//! key is not in it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::forge::http::{link_paged, ApiClient, MAX_PAGES};
use crate::forge::{encode_segment, Forge, ForgeError};

/// A key not in the index makes it be rebuilt at most this often.
const MISS_REFRESH: Duration = Duration::from_secs(60);
/// How long a rebuild may take before the lookup answers from the old index.
const REFRESH_WAIT: Duration = Duration::from_secs(20);

/// A key as the forge stores it: its base64 blob (the second word of an OpenSSH line) and its
/// SHA-256 fingerprint (`SHA256:…`).
#[derive(Debug, Clone)]
pub struct KeyId {
    /// The key's base64 blob.
    pub blob: String,
    /// `SHA256:<unpadded base64>`.
    pub fingerprint: String,
}

/// A forge user a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeUser {
    /// Login (GitHub, Gitea), username (GitLab) or user slug (Bitbucket).
    pub login: String,
    /// Numeric ID where the forge's permission API needs it (GitLab).
    pub id: Option<u64>,
}

#[derive(Default)]
struct Index {
    built: Option<Instant>,
    /// Key blob → owner.
    keys: HashMap<String, ForgeUser>,
}

/// Finds keys' owners on the forge.
pub struct SshUsers {
    forge: Forge,
    ttl: Duration,
    index: tokio::sync::Mutex<Index>,
}

/// The blob of an OpenSSH key line (`type blob [comment]`), or of a bare blob.
fn blob_of(text: &str) -> Option<&str> {
    let mut words = text.split_whitespace();
    let first = words.next()?;
    Some(words.next().unwrap_or(first))
}

impl SshUsers {
    /// Asks `forge`; the index is trusted for `ttl`.
    pub fn new(forge: Forge, ttl: Duration) -> Self {
        Self {
            forge,
            ttl,
            index: tokio::sync::Mutex::new(Index::default()),
        }
    }

    /// The forge user `key` belongs to, if any.
    pub async fn owner(&self, key: &KeyId) -> Result<Option<ForgeUser>, ForgeError> {
        if let Forge::Gitlab(c) = &self.forge {
            return gitlab_owner(c, key).await;
        }
        let mut index = self.index.lock().await;
        let age = index.built.map(|b| b.elapsed());
        let stale = age.is_none_or(|a| a > self.ttl);
        if let Some(u) = index.keys.get(&key.blob).filter(|_| !stale) {
            return Ok(Some(u.clone()));
        }
        if stale || age.is_some_and(|a| a > MISS_REFRESH) {
            match tokio::time::timeout(REFRESH_WAIT, self.build()).await {
                Ok(Ok(keys)) => {
                    tracing::debug!(keys = keys.len(), "forge SSH keys indexed");
                    *index = Index {
                        built: Some(Instant::now()),
                        keys,
                    };
                }
                Ok(Err(e)) if index.built.is_none() => return Err(e),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot index the forge's SSH keys; using the last index")
                }
                Err(_) => {
                    tracing::warn!("indexing the forge's SSH keys takes long; using the last index")
                }
            }
        }
        Ok(index.keys.get(&key.blob).cloned())
    }

    async fn build(&self) -> Result<HashMap<String, ForgeUser>, ForgeError> {
        match &self.forge {
            Forge::Github(c) => github_index(c).await,
            Forge::Bitbucket(c) => bitbucket_index(c).await,
            Forge::Gitea(c) => gitea_index(c).await,
            Forge::Gitlab(_) => Ok(HashMap::new()),
        }
    }
}

#[derive(Deserialize)]
struct GitlabUser {
    id: u64,
    username: String,
}

#[derive(Deserialize)]
struct GitlabKey {
    user: Option<GitlabUser>,
}

async fn gitlab_owner(c: &ApiClient, key: &KeyId) -> Result<Option<ForgeUser>, ForgeError> {
    let url = c.url(&format!(
        "/keys?fingerprint={}",
        encode_segment(&key.fingerprint)
    ));
    Ok(c.get::<GitlabKey>(&url)
        .await?
        .body
        .and_then(|k| k.user)
        .map(|u| ForgeUser {
            login: u.username,
            id: Some(u.id),
        }))
}

#[derive(Deserialize)]
struct GithubKey {
    key: String,
    user_id: Option<u64>,
}

#[derive(Deserialize)]
struct GithubUser {
    login: String,
}

async fn github_index(c: &ApiClient) -> Result<HashMap<String, ForgeUser>, ForgeError> {
    let keys: Vec<GithubKey> = link_paged(c, c.url("/admin/keys?per_page=100"))
        .await?
        .unwrap_or_default();
    let mut logins: HashMap<u64, Option<String>> = HashMap::new();
    let mut out = HashMap::new();
    for k in keys {
        let (Some(id), Some(blob)) = (k.user_id, blob_of(&k.key)) else {
            continue;
        };
        let login = match logins.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let login = c
                    .get::<GithubUser>(&c.url(&format!("/user/{id}")))
                    .await?
                    .body
                    .map(|u| u.login);
                e.insert(login)
            }
        };
        if let Some(login) = login {
            out.insert(
                blob.to_owned(),
                ForgeUser {
                    login: login.clone(),
                    id: Some(id),
                },
            );
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    values: Vec<T>,
    is_last_page: bool,
    next_page_start: Option<u64>,
}

#[derive(Deserialize)]
struct BitbucketUser {
    slug: String,
}

#[derive(Deserialize)]
struct BitbucketKey {
    text: String,
}

async fn bitbucket_paged<T: serde::de::DeserializeOwned>(
    c: &ApiClient,
    path_query: &str,
) -> Result<Vec<T>, ForgeError> {
    let mut start = 0u64;
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let url = c.url(&format!("{path_query}&limit=100&start={start}"));
        let Some(page) = c.get::<Page<T>>(&url).await?.body else {
            return Ok(out);
        };
        out.extend(page.values);
        match page.next_page_start {
            Some(n) if !page.is_last_page && n > start => start = n,
            _ => return Ok(out),
        }
    }
    Err(ForgeError::TooManyPages(c.url(path_query)))
}

async fn bitbucket_index(c: &ApiClient) -> Result<HashMap<String, ForgeUser>, ForgeError> {
    let users: Vec<BitbucketUser> = bitbucket_paged(c, "/rest/api/1.0/admin/users?filter=").await?;
    let mut out = HashMap::new();
    for u in users {
        let keys: Vec<BitbucketKey> = bitbucket_paged(
            c,
            &format!("/rest/ssh/1.0/keys?user={}", encode_segment(&u.slug)),
        )
        .await?;
        for k in keys {
            if let Some(blob) = blob_of(&k.text) {
                out.insert(
                    blob.to_owned(),
                    ForgeUser {
                        login: u.slug.clone(),
                        id: None,
                    },
                );
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct GiteaUser {
    login: String,
    id: Option<u64>,
}

#[derive(Deserialize)]
struct GiteaKey {
    key: String,
}

async fn gitea_index(c: &ApiClient) -> Result<HashMap<String, ForgeUser>, ForgeError> {
    let users: Vec<GiteaUser> = link_paged(c, c.url("/admin/users?limit=50"))
        .await?
        .unwrap_or_default();
    let mut out = HashMap::new();
    for u in users {
        let url = c.url(&format!(
            "/users/{}/keys?limit=50",
            encode_segment(&u.login)
        ));
        let keys: Vec<GiteaKey> = link_paged(c, url).await?.unwrap_or_default();
        for k in keys {
            if let Some(blob) = blob_of(&k.key) {
                out.insert(
                    blob.to_owned(),
                    ForgeUser {
                        login: u.login.clone(),
                        id: u.id,
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_blobs_are_read_from_lines_and_bare_blobs() {
        assert_eq!(
            blob_of("ssh-ed25519 AAAAC3Nza alice@laptop"),
            Some("AAAAC3Nza")
        );
        assert_eq!(blob_of("ssh-rsa AAAAB3Nz"), Some("AAAAB3Nz"));
        // GitHub's documented /admin/keys example carries the blob alone.
        assert_eq!(
            blob_of("2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234"),
            Some("2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234")
        );
        assert_eq!(blob_of("  "), None);
    }
}
