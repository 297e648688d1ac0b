//! Gitea's and Forgejo's REST API: organisations (or users) and their repositories, paged by
//! `Link` (<https://docs.gitea.com/development/api-usage#pagination>).

use serde::Deserialize;

use crate::forge::http::{link_paged, ApiClient};
use crate::forge::{org_or_user_repos, ForgeError, UpstreamProject, UpstreamRepo};
use crate::names::ProjectKey;

/// Items per page asked for (Gitea caps it at its `MAX_RESPONSE_ITEMS`, 50 by default).
const LIMIT: u32 = 50;

#[derive(Deserialize)]
struct Org {
    username: String,
    #[serde(default)]
    full_name: String,
}

/// `GET /orgs`: every organisation the token can see.
pub async fn projects(c: &ApiClient) -> Result<Vec<UpstreamProject>, ForgeError> {
    let orgs: Vec<Org> = link_paged(c, c.url(&format!("/orgs?limit={LIMIT}")))
        .await?
        .unwrap_or_default();
    Ok(orgs
        .into_iter()
        .map(|o| UpstreamProject {
            name: if o.full_name.is_empty() {
                o.username.clone()
            } else {
                o.full_name
            },
            key: o.username,
        })
        .collect())
}

/// `GET /orgs/{org}/repos`, or for a user `GET /users/{user}/repos`.
pub async fn repos(
    c: &ApiClient,
    project: &ProjectKey,
) -> Result<Option<Vec<UpstreamRepo>>, ForgeError> {
    org_or_user_repos(
        c,
        project,
        &format!("?limit={LIMIT}"),
        &format!("?limit={LIMIT}"),
    )
    .await
}
