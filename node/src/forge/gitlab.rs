//! GitLab's REST API: groups (with subgroups: the whole namespace path is the project) and their
//! projects, paged by `Link` (<https://docs.gitlab.com/api/rest/#pagination>).

use serde::Deserialize;

use crate::forge::http::{link_paged, ApiClient};
use crate::forge::{encode_segment, slug, ForgeError, UpstreamProject, UpstreamRepo};
use crate::names::ProjectKey;

#[derive(Deserialize)]
struct Group {
    full_path: String,
    #[serde(default)]
    full_name: String,
}

#[derive(Deserialize)]
struct Project {
    /// `group/sub/repo`: the namespace's full path, then the project's path.
    path_with_namespace: String,
}

/// `GET /groups`: every group the token can see, subgroups included (each by its full path).
pub async fn projects(c: &ApiClient) -> Result<Vec<UpstreamProject>, ForgeError> {
    let groups: Vec<Group> = link_paged(
        c,
        c.url("/groups?all_available=true&per_page=100&order_by=path"),
    )
    .await?
    .unwrap_or_default();
    Ok(groups
        .into_iter()
        .map(|g| UpstreamProject {
            name: if g.full_name.is_empty() {
                g.full_path.clone()
            } else {
                g.full_name
            },
            key: g.full_path,
        })
        .collect())
}

/// `GET /groups/:id/projects?include_subgroups=true` (a user's namespace:
/// `GET /users/:user_id/projects`); each project under its own namespace's full path.
pub async fn repos(
    c: &ApiClient,
    project: &ProjectKey,
) -> Result<Option<Vec<UpstreamRepo>>, ForgeError> {
    let id = encode_segment(project.as_str());
    let mut list: Option<Vec<Project>> = link_paged(
        c,
        c.url(&format!(
            "/groups/{id}/projects?include_subgroups=true&simple=true&per_page=100&with_shared=false"
        )),
    )
    .await?;
    if list.is_none() && !project.as_str().contains('/') {
        list = link_paged(
            c,
            c.url(&format!("/users/{id}/projects?simple=true&per_page=100")),
        )
        .await?;
    }
    Ok(list.map(|l| {
        l.into_iter()
            .filter_map(|p| match p.path_with_namespace.rsplit_once('/') {
                Some((namespace, path)) => slug(namespace, path),
                None => None,
            })
            .collect()
    }))
}
