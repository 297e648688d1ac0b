//! SSH users from the forge (`plugin.ssh.keys=forge`): whose a key is, asked of the forge.
//! GitLab finds a key by its fingerprint (`GET /keys?fingerprint=`; deploy keys, expired keys,
//! signing-only keys and users who are not active do not count); the others have no such lookup
//! (tests/fixtures/forges/README.md), so their keys are indexed ([`crate::forge::ssh_index`]).
//! The index is built in the background on first use, again when older than
//! `mirror.auth.cacheTtl`, and at most once a minute when a key is not in it; a lookup waits for a
//! build at most 20 s (answering from the index before), and an index older than
//! `mirror.auth.cacheTtl + mirror.auth.offlineTtl` (the forge could not be asked) is not used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Deserialize;

use crate::forge::http::ApiClient;
use crate::forge::{encode_segment, ssh_index, Forge, ForgeError};

/// A key not in the index makes it be rebuilt at most this often (so does a failed build).
const MISS_REFRESH: Duration = Duration::from_secs(60);
/// How long a lookup waits for a build under way before it answers from the index before it
/// (the build goes on).
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
    /// Numeric ID where the forge has one (GitLab's permission API needs it).
    pub id: Option<u64>,
}

#[derive(Default)]
struct Index {
    built: Option<Instant>,
    /// Key blob → owner.
    keys: HashMap<String, ForgeUser>,
}

struct Inner {
    forge: Forge,
    ttl: Duration,
    /// The oldest index still used.
    max_age: Duration,
    index: RwLock<Index>,
    /// When the last build started (a build under way, or failed, is not started again sooner
    /// than [`MISS_REFRESH`] unless the index is stale).
    last_start: Mutex<Option<Instant>>,
    building: std::sync::atomic::AtomicBool,
    built: tokio::sync::Notify,
}

/// Finds keys' owners on the forge.
pub struct SshUsers {
    inner: Arc<Inner>,
}

impl SshUsers {
    /// Asks `forge`; the index is trusted for `ttl`, used for `offline_ttl` more when it cannot
    /// be built again.
    pub fn new(forge: Forge, ttl: Duration, offline_ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                forge,
                ttl,
                max_age: ttl + offline_ttl,
                index: RwLock::new(Index::default()),
                last_start: Mutex::new(None),
                building: std::sync::atomic::AtomicBool::new(false),
                built: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The forge user `key` belongs to, if any.
    pub async fn owner(&self, key: &KeyId) -> Result<Option<ForgeUser>, ForgeError> {
        let inner = &self.inner;
        if let Forge::Gitlab(c) = &inner.forge {
            return gitlab_owner(c, key).await;
        }
        let (age, found) = {
            let i = inner.index.read();
            (i.built.map(|b| b.elapsed()), i.keys.get(&key.blob).cloned())
        };
        let stale = age.is_none_or(|a| a > inner.ttl);
        if let (false, Some(u)) = (stale, &found) {
            return Ok(Some(u.clone()));
        }
        let done = inner.built.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        self.start_build(stale);
        if inner.building.load(std::sync::atomic::Ordering::Acquire) {
            let _ = tokio::time::timeout(REFRESH_WAIT, done).await;
        }
        let i = inner.index.read();
        match i.built.map(|b| b.elapsed()) {
            Some(a) if a <= inner.max_age => Ok(i.keys.get(&key.blob).cloned()),
            Some(_) => {
                tracing::warn!(
                    "the forge's SSH key index is too old to trust and cannot be rebuilt now"
                );
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Starts a build in the background unless one runs, or one started less than a minute ago
    /// and the index is not stale.
    fn start_build(&self, stale: bool) {
        use std::sync::atomic::Ordering;
        let inner = self.inner.clone();
        {
            let mut last = inner.last_start.lock();
            let recent = last.is_some_and(|t| t.elapsed() < MISS_REFRESH);
            if inner.building.load(Ordering::Acquire) || (recent && !stale) {
                return;
            }
            if recent && inner.index.read().built.is_some() {
                return;
            }
            *last = Some(Instant::now());
            inner.building.store(true, Ordering::Release);
        }
        tokio::spawn(async move {
            let built = match &inner.forge {
                Forge::Github(c) => ssh_index::github(c).await,
                Forge::Bitbucket(c) => ssh_index::bitbucket(c).await,
                Forge::Gitea(c) => ssh_index::gitea(c).await,
                Forge::Gitlab(_) => Ok(HashMap::new()),
            };
            match built {
                Ok(keys) => {
                    tracing::debug!(keys = keys.len(), "forge SSH keys indexed");
                    *inner.index.write() = Index {
                        built: Some(Instant::now()),
                        keys,
                    };
                }
                Err(e) => tracing::warn!(error = %e, "cannot index the forge's SSH keys"),
            }
            inner.building.store(false, Ordering::Release);
            inner.built.notify_waiters();
        });
    }
}

#[derive(Deserialize)]
struct GitlabUser {
    id: u64,
    username: String,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
struct GitlabKey {
    user: Option<GitlabUser>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    usage_type: Option<String>,
    /// Present (non-empty) on a deploy key: its `user` is who created it, not who uses it.
    #[serde(default)]
    deploy_keys_projects: Option<Vec<serde_json::Value>>,
}

/// The user a GitLab key answer names, when it is a user's authentication key that counts now.
fn gitlab_user(k: GitlabKey, now: &str) -> Option<ForgeUser> {
    if k.deploy_keys_projects.is_some_and(|p| !p.is_empty()) {
        return None;
    }
    if k.usage_type.as_deref() == Some("signing") {
        return None;
    }
    // ISO 8601 times in UTC compare as strings.
    if k.expires_at.as_deref().is_some_and(|e| e <= now) {
        return None;
    }
    let u = k.user?;
    if u.state.as_deref().is_some_and(|s| s != "active") {
        return None;
    }
    Some(ForgeUser {
        login: u.username,
        id: Some(u.id),
    })
}

async fn gitlab_owner(c: &ApiClient, key: &KeyId) -> Result<Option<ForgeUser>, ForgeError> {
    let url = c.url(&format!(
        "/keys?fingerprint={}",
        encode_segment(&key.fingerprint)
    ));
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(c.get::<GitlabKey>(&url)
        .await?
        .body
        .and_then(|k| gitlab_user(k, &now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> GitlabKey {
        let p = format!(
            "{}/../tests/fixtures/forges/gitlab/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("shape")
    }

    #[test]
    fn only_active_users_authentication_keys_count() {
        // https://docs.gitlab.com/api/keys/#get-user-by-ssh-key-fingerprint (expires 2020-05-05)
        let before_expiry = "2020-01-01T00:00:00Z";
        let user = gitlab_user(fixture("keys_by_fingerprint.json"), before_expiry).expect("user");
        assert_eq!((user.login.as_str(), user.id), ("root", Some(1)));
        assert!(
            gitlab_user(fixture("keys_by_fingerprint.json"), "2026-12-02T00:00:00Z").is_none(),
            "expired"
        );
        assert!(
            gitlab_user(
                fixture("keys_by_fingerprint_deploy_key.json"),
                before_expiry
            )
            .is_none(),
            "a deploy key is not its creator's"
        );
        let mut signing = fixture("keys_by_fingerprint.json");
        signing.usage_type = Some("signing".into());
        assert!(gitlab_user(signing, before_expiry).is_none());
        let mut blocked = fixture("keys_by_fingerprint.json");
        if let Some(u) = blocked.user.as_mut() {
            u.state = Some("blocked".into());
        }
        assert!(gitlab_user(blocked, before_expiry).is_none());
    }
}
