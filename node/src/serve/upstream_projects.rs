//! `GET /rest/mirroring/latest/upstream/projects?filter=&start=&limit=` (admin only): the
//! upstream's projects from the inventory's cached listing, filtered by a case-insensitive
//! substring of key or name, in Bitbucket's paged shape (`values`, `size`, `start`, `limit`,
//! `isLastPage`, `nextPageStart`), each marked `selected` when the selection in force (the file's `mirror.projects`, or the
//! admin page's) holds it.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::config::Projects;
use crate::forge::inventory::ProjectList;
use crate::serve::router::AppState;

/// The most projects one page holds.
const MAX_LIMIT: usize = 1000;

/// The query.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectsQuery {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    start: usize,
    limit: Option<usize>,
}

/// Handles one request.
pub async fn projects(State(s): State<AppState>, Query(q): Query<ProjectsQuery>) -> Response {
    let list = match s.shared.inventory.projects().await {
        Ok(l) => l,
        Err(e) => return (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({"error": format!("cannot list the upstream's projects: {e}")})),
        )
            .into_response(),
    };
    let (chosen, _) = s.shared.selection.chosen();
    let limit = q.limit.unwrap_or(25).clamp(1, MAX_LIMIT);
    let body = project_page(&list, &q.filter, q.start, limit, &chosen.projects);
    Json(body).into_response()
}

/// A page of `list`'s projects whose key or name holds `filter` (any case), from `start`, at
/// most `limit`, each marked `selected` when `selection` mirrors it — in Bitbucket's paged shape.
pub fn project_page(
    list: &ProjectList,
    filter: &str,
    start: usize,
    limit: usize,
    selection: &Projects,
) -> serde_json::Value {
    let needle = filter.trim().to_lowercase();
    let matching: Vec<&crate::forge::UpstreamProject> = list
        .projects
        .iter()
        .filter(|p| {
            needle.is_empty()
                || p.key.to_lowercase().contains(&needle)
                || p.name.to_lowercase().contains(&needle)
        })
        .collect();
    let page: Vec<serde_json::Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|p| {
            let selected = match selection {
                Projects::All => true,
                Projects::None => false,
                Projects::Some(keys) => keys.iter().any(|k| k.as_str() == p.key),
            };
            serde_json::json!({"key": p.key, "name": p.name, "selected": selected})
        })
        .collect();
    let end = start.saturating_add(page.len());
    let last = end >= matching.len();
    let mut body = serde_json::json!({
        "size": page.len(),
        "limit": limit,
        "start": start,
        "isLastPage": last,
        "values": page,
        "total": matching.len(),
        "all": *selection == Projects::All,
        "listedAt": list.listed_at_ms,
    });
    if !last {
        body["nextPageStart"] = end.into();
    }
    if let Some(e) = &list.error {
        body["error"] = e.clone().into();
    }
    body
}
