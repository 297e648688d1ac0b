//! What a forge user may read, asked of the forge (for SSH users from the forge): GitHub's
//! collaborator permission (`GET /repos/{owner}/{repo}/collaborators/{user}/permission`, read
//! unless `none`), Gitea's (same path, read unless `none`), GitLab's project membership with
//! inherited members (`GET /projects/:id/members/all/:user_id`, Reporter — `access_level` 20 —
//! or above reads code), Bitbucket Data Center's permission search (`GET /rest/api/1.0/users?
//! filter=<user>&permission=REPO_READ&permission.projectKey=…&permission.repositorySlug=…`).
//! Cached like HTTP grants: a grant for `mirror.auth.cacheTtl`, kept `mirror.auth.offlineTtl`
//! longer while the forge cannot be asked; a denial for 10 s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

use crate::forge::ssh_users::ForgeUser;
use crate::forge::{encode_segment, Forge, ForgeError};
use crate::names::RepoId;

/// How long a denial is reused.
const DENIAL_TTL: Duration = Duration::from_secs(10);
/// Above this many cached answers, the stale ones are dropped.
const MAX_ENTRIES: usize = 100_000;

/// GitLab's Reporter: the lowest role that reads a private project's code.
const GITLAB_REPORTER: u64 = 20;

/// The permission cache.
pub struct Permissions {
    forge: Forge,
    ttl: Duration,
    offline_ttl: Duration,
    cache: Mutex<HashMap<(String, RepoId), (bool, Instant)>>,
}

#[derive(Deserialize)]
struct Permission {
    permission: String,
}

#[derive(Deserialize)]
struct Member {
    access_level: u64,
}

#[derive(Deserialize)]
struct BitbucketUser {
    slug: String,
}

impl Permissions {
    /// Asks `forge`, trusting grants for `ttl` (+ `offline_ttl` while it cannot be asked).
    pub fn new(forge: Forge, ttl: Duration, offline_ttl: Duration) -> Self {
        Self {
            forge,
            ttl,
            offline_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user` may read `repo`; `false` when the forge cannot be asked and no grant
    /// covers it.
    pub async fn may_read(&self, user: &ForgeUser, repo: &RepoId) -> bool {
        // By ID where the forge has one: a login renamed and taken by someone else is not them.
        let who = match user.id {
            Some(id) => format!("#{id}"),
            None => user.login.clone(),
        };
        let key = (who, repo.clone());
        let cached = self.cache.lock().get(&key).copied();
        if let Some((granted, at)) = cached {
            let fresh = if granted { self.ttl } else { DENIAL_TTL };
            if at.elapsed() < fresh {
                return granted;
            }
        }
        match self.ask(user, repo).await {
            Ok(granted) => {
                let mut cache = self.cache.lock();
                if cache.len() >= MAX_ENTRIES {
                    let ttl = self.ttl + self.offline_ttl;
                    cache.retain(|_, (_, at)| at.elapsed() < ttl);
                }
                cache.insert(key, (granted, Instant::now()));
                granted
            }
            Err(e) => {
                let offline = cached.is_some_and(|(granted, at)| {
                    granted && at.elapsed() < self.ttl + self.offline_ttl
                });
                tracing::warn!(user = %user.login, repo = %repo, error = %e, offline_grant = offline, "cannot ask the forge what an SSH user may read");
                offline
            }
        }
    }

    async fn ask(&self, user: &ForgeUser, repo: &RepoId) -> Result<bool, ForgeError> {
        let (owner, name) = (
            encode_segment(repo.project.as_str()),
            encode_segment(repo.repo.as_str()),
        );
        let login = encode_segment(&user.login);
        match &self.forge {
            Forge::Github(c) | Forge::Gitea(c) => {
                let url = c.url(&format!(
                    "/repos/{owner}/{name}/collaborators/{login}/permission"
                ));
                Ok(c.get::<Permission>(&url)
                    .await?
                    .body
                    .is_some_and(|p| !p.permission.is_empty() && p.permission != "none"))
            }
            Forge::Gitlab(c) => {
                let Some(id) = user.id else { return Ok(false) };
                let project = encode_segment(&repo.to_string());
                let url = c.url(&format!("/projects/{project}/members/all/{id}"));
                Ok(c.get::<Member>(&url)
                    .await?
                    .body
                    .is_some_and(|m| m.access_level >= GITLAB_REPORTER))
            }
            Forge::Bitbucket(c) => {
                // `filter` matches substrings: every page is read for the user itself.
                let path = format!(
                    "/rest/api/1.0/users?filter={login}&permission=REPO_READ&permission.projectKey={owner}&permission.repositorySlug={name}"
                );
                let users: Vec<BitbucketUser> = crate::forge::bitbucket::paged(c, &path)
                    .await?
                    .unwrap_or_default();
                Ok(users.iter().any(|u| u.slug == user.login))
            }
        }
    }
}
