//! Bitbucket Data Center's REST API: projects and their repositories, paged by `start` /
//! `nextPageStart` until `isLastPage`
//! (<https://developer.atlassian.com/server/bitbucket/rest/v900/intro/#paged-apis>).

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::forge::http::{ApiClient, MAX_PAGES};
use crate::forge::{encode_segment, slug, ForgeError, UpstreamProject, UpstreamRepo};
use crate::names::ProjectKey;

/// Items per page asked for (Bitbucket's default limit is 25).
const LIMIT: u32 = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    values: Vec<T>,
    is_last_page: bool,
    next_page_start: Option<u64>,
}

#[derive(Deserialize)]
struct Project {
    key: String,
    name: String,
}

#[derive(Deserialize)]
struct Repo {
    slug: String,
}

/// GETs every page of `path` (which may carry a query); `None` when the first page is a 404.
pub(crate) async fn paged<T: DeserializeOwned>(
    c: &ApiClient,
    path: &str,
) -> Result<Option<Vec<T>>, ForgeError> {
    let mut start = 0u64;
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = c.url(&format!("{path}{sep}limit={LIMIT}&start={start}"));
        let Some(page) = c.get::<Page<T>>(&url).await?.body else {
            return if start == 0 {
                Ok(None)
            } else {
                Err(ForgeError::Status(url, 404))
            };
        };
        out.extend(page.values);
        if page.is_last_page {
            return Ok(Some(out));
        }
        match page.next_page_start {
            Some(next) if next > start => start = next,
            _ => {
                return Err(ForgeError::Shape(
                    url,
                    "a page that is not the last without a later nextPageStart".into(),
                ))
            }
        }
    }
    Err(ForgeError::TooManyPages(c.url(path)))
}

/// `GET /rest/api/1.0/projects`: every project the token can see.
pub async fn projects(c: &ApiClient) -> Result<Vec<UpstreamProject>, ForgeError> {
    let list: Vec<Project> = paged(c, "/rest/api/1.0/projects")
        .await?
        .unwrap_or_default();
    Ok(list
        .into_iter()
        .map(|p| UpstreamProject {
            key: p.key,
            name: p.name,
        })
        .collect())
}

/// `GET /rest/api/1.0/projects/{key}/repos`.
pub async fn repos(
    c: &ApiClient,
    project: &ProjectKey,
) -> Result<Option<Vec<UpstreamRepo>>, ForgeError> {
    let path = format!(
        "/rest/api/1.0/projects/{}/repos",
        encode_segment(project.as_str())
    );
    let Some(list) = paged::<Repo>(c, &path).await? else {
        return Ok(None);
    };
    Ok(Some(
        list.into_iter()
            .filter_map(|r| slug(project.as_str(), &r.slug))
            .collect(),
    ))
}
