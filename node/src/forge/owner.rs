//! Whose a secret is, as the forge says: the admin page asks when the upstream's git endpoint
//! takes a secret under any user name (as forges do with personal access tokens), so that a
//! token logs in its own user only. GitHub `GET /user` (`login`,
//! <https://docs.github.com/en/rest/users/users#get-the-authenticated-user>), GitLab `GET /user`
//! (`username`, <https://docs.gitlab.com/api/users/#get-the-current-user>), Gitea/Forgejo
//! `GET /user` (`login`). Bitbucket Data Center is not asked: its tokens log in under their
//! owner's name only, which the made-up-name check already tells.

use serde::Deserialize;

use crate::forge::http::{read_bounded, ApiClient};
use crate::forge::{Forge, ForgeError};

/// What the forge says about a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// It is this user's.
    User(String),
    /// The forge does not take it (401 or 403).
    Refused,
    /// This forge is not asked.
    NotAsked,
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct Username {
    username: String,
}

impl Forge {
    /// Whose `secret` is (one request, bounded like every API call).
    pub async fn owner_of(&self, secret: &str) -> Result<Owner, ForgeError> {
        match self {
            Self::Bitbucket(_) => Ok(Owner::NotAsked),
            Self::Github(c) | Self::Gitea(c) => Ok(ask::<Login>(c, secret)
                .await?
                .map_or(Owner::Refused, |l| Owner::User(l.login))),
            Self::Gitlab(c) => Ok(ask::<Username>(c, secret)
                .await?
                .map_or(Owner::Refused, |u| Owner::User(u.username))),
        }
    }
}

/// `GET <root>/user` presenting `secret`: its body, `None` when refused.
async fn ask<T: serde::de::DeserializeOwned>(
    c: &ApiClient,
    secret: &str,
) -> Result<Option<T>, ForgeError> {
    let url = c.url("/user");
    let r = c
        .request_as(&url, Some(secret))
        .send()
        .await
        .map_err(|e| ForgeError::Unreachable(url.clone(), e.without_url().to_string()))?;
    match r.status().as_u16() {
        401 | 403 => Ok(None),
        200..=299 => {
            let bytes = read_bounded(r, &url).await?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ForgeError::Shape(url, e.to_string()))
        }
        status => Err(ForgeError::Status(url, status)),
    }
}
