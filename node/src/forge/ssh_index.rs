//! The forges' SSH keys indexed by their blob, where a forge cannot find a key by its fingerprint:
//! GitHub Enterprise's `GET /admin/keys` (then `GET /user/{id}` for each owner's login),
//! Bitbucket Data Center's active users (`GET /rest/api/1.0/admin/users`) and each one's keys
//! (`GET /rest/ssh/1.0/keys?user=`), Gitea's active users (`GET /admin/users`) and each one's keys
//! (`GET /users/{login}/keys`).

use std::collections::HashMap;

use serde::Deserialize;

use crate::forge::http::{link_paged, ApiClient};
use crate::forge::ssh_users::ForgeUser;
use crate::forge::{bitbucket, encode_segment, ForgeError};

/// The blob of an OpenSSH key line (`type blob [comment]`), or of a bare blob.
pub(crate) fn blob_of(text: &str) -> Option<&str> {
    let mut words = text.split_whitespace();
    let first = words.next()?;
    Some(words.next().unwrap_or(first))
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

/// GitHub Enterprise's keys with a user (not a repository's deploy keys): blob → owner.
pub async fn github(c: &ApiClient) -> Result<HashMap<String, ForgeUser>, ForgeError> {
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
struct BitbucketUser {
    slug: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct BitbucketKey {
    text: String,
}

/// Bitbucket's active users' keys: blob → owner.
pub async fn bitbucket(c: &ApiClient) -> Result<HashMap<String, ForgeUser>, ForgeError> {
    let users: Vec<BitbucketUser> = bitbucket::paged(c, "/rest/api/1.0/admin/users")
        .await?
        .unwrap_or_default();
    let mut out = HashMap::new();
    for u in users.into_iter().filter(|u| u.active) {
        let keys: Vec<BitbucketKey> = bitbucket::paged(
            c,
            &format!("/rest/ssh/1.0/keys?user={}", encode_segment(&u.slug)),
        )
        .await?
        .unwrap_or_default();
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
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    prohibit_login: bool,
}

#[derive(Deserialize)]
struct GiteaKey {
    key: String,
}

/// Gitea's active users' keys: blob → owner.
pub async fn gitea(c: &ApiClient) -> Result<HashMap<String, ForgeUser>, ForgeError> {
    let users: Vec<GiteaUser> = link_paged(c, c.url("/admin/users?limit=50"))
        .await?
        .unwrap_or_default();
    let mut out = HashMap::new();
    for u in users.into_iter().filter(|u| u.active && !u.prohibit_login) {
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
