//! `GET /rest/mirroring/latest/ready`: the readiness document a load balancer's health check
//! reads every second — node, state, ready, base URL and two counts — built without copying the
//! repository map, the same size for ten repositories or twenty thousand.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::serve::app_state::AppState;
use mirrorfarm_common::status::ReadyDoc;

/// Builds the document.
pub fn doc(shared: &crate::shared::Shared) -> ReadyDoc {
    let summary = shared.summary();
    ReadyDoc {
        node_id: shared.identity.node_id.clone(),
        state: summary.state().to_owned(),
        ready: shared.ready(&summary),
        base_url: shared.config.base_url.clone(),
        synced_repos: summary.servable,
        total_repos: summary.total,
    }
}

/// The route.
pub async fn ready(State(s): State<AppState>) -> Response {
    let mut r = Json(doc(&s.shared)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
