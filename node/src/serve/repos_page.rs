//! `GET /rest/mirroring/latest/repos?start=&limit=`: every mirrored repository, a page at a time
//! in Bitbucket's paged shape (`values`, `size`, `limit`, `start`, `isLastPage`,
//! `nextPageStart`), by name. `/status` lists the first 100 and points here for the rest. Who may
//! read it: as for `/status`'s repositories (anyone in anonymous mode; admins otherwise).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::serve::admin;
use crate::serve::app_state::AppState;
use mirrorfarm_common::status::RepoPage;

/// Rows per page unless asked (Bitbucket's default).
const DEFAULT_LIMIT: usize = 25;
/// The largest page.
pub const MAX_LIMIT: usize = 1000;

/// The query.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct PageQuery {
    start: usize,
    limit: Option<usize>,
}

/// The page `start`/`limit` of `shared`'s repositories.
pub fn page(
    shared: &crate::shared::Shared,
    farm: Option<&crate::farm::Farm>,
    start: usize,
    limit: usize,
) -> RepoPage {
    let view = farm.and_then(|f| f.view.read().clone());
    let now = crate::store::now_ms();
    let repos = shared.repos.read();
    let total = repos.len();
    let values: Vec<_> = repos
        .iter()
        .skip(start)
        .take(limit)
        .map(|(id, e)| crate::status::repo_status(id, e, &view, now))
        .collect();
    let end = start.saturating_add(values.len());
    RepoPage {
        size: values.len(),
        limit,
        start,
        is_last_page: end >= total,
        next_page_start: (end < total).then_some(end),
        total,
        values,
    }
}

/// The route.
pub async fn repos(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let anonymous = s.shared.config.access == crate::config::Access::Anonymous;
    let who = admin::caller(peer, &headers, s.shared.config.admin_token.as_ref());
    if !anonymous && !who.is_admin() {
        return (
            StatusCode::UNAUTHORIZED,
            "the repository list is for admins: send Authorization: Bearer <admin token>\n",
        )
            .into_response();
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut r = Json(page(&s.shared, s.farm.as_deref(), q.start, limit)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}
