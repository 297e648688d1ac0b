//! GitHub's REST API (github.com and Enterprise Server): organisations or users and their
//! repositories, paged by `Link` (<https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>).

use serde::Deserialize;

use crate::forge::http::{link_paged, ApiClient};
use crate::forge::{org_or_user_repos, ForgeError, UpstreamProject, UpstreamRepo};
use crate::names::ProjectKey;

#[derive(Deserialize)]
struct Org {
    login: String,
}

/// Every organisation: on github.com those the token's user belongs to (`GET /user/orgs`; the
/// whole of github.com is not a listing), on Enterprise Server all of them (`GET /organizations`).
pub async fn projects(c: &ApiClient) -> Result<Vec<UpstreamProject>, ForgeError> {
    let path = if c.url("").starts_with("https://api.github.com") {
        "/user/orgs?per_page=100"
    } else {
        "/organizations?per_page=100"
    };
    let orgs: Vec<Org> = link_paged(c, c.url(path)).await?.unwrap_or_default();
    Ok(orgs
        .into_iter()
        .map(|o| UpstreamProject {
            name: o.login.clone(),
            key: o.login,
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
        "?per_page=100&type=all",
        "?per_page=100&type=owner",
    )
    .await
}
