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
    let state = shared.node_state().to_owned();
    let (ready, synced_repos, total_repos) = {
        let repos = shared.repos.read();
        (
            shared.ready(&repos),
            repos.values().filter(|e| e.servable()).count(),
            repos.len(),
        )
    };
    ReadyDoc {
        node_id: shared.identity.node_id.clone(),
        state,
        ready,
        base_url: shared.config.base_url.clone(),
        synced_repos,
        total_repos,
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
