//! The node's HTTP routes: the status page and document, the sync trigger, and git under `/scm/`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};

use crate::names::RepoId;
pub use crate::serve::app_state::AppState;
use crate::serve::{admin, generation, http, session_cookie, upstream_projects, webhook};
use crate::status;
use crate::sync::scheduler::Trigger;

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let cookie = session_cookie::CookieSettings {
        route: mirrorfarm_common::session::route_of_node(&state.shared.identity.node_id),
        secure: state.shared.config.base_url.starts_with("https://"),
    };
    let admin = Router::new()
        .route("/metrics", get(metrics))
        .route("/rest/mirroring/latest/sync", post(trigger_sync))
        .route(
            "/rest/mirroring/latest/upstream/projects",
            get(upstream_projects::projects),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.shared.clone(),
            admin::require_admin,
        ));
    let anonymous = state.shared.config.access == crate::config::Access::Anonymous;
    let routes = Router::new()
        .route("/", get(index))
        .route("/status", get(status_doc))
        .route("/scm/{*rest}", any(http::scm))
        .route("/rest/mirroring/latest/session", delete(logout))
        .route("/rest/mirroring/latest/webhook", post(webhook::receive))
        .route(
            "/rest/mirroring/latest/ready",
            get(crate::serve::ready::ready),
        )
        .route(
            "/rest/mirroring/latest/repos",
            get(crate::serve::repos_page::repos),
        )
        .route(
            "/rest/mirroring/latest/repos/{*rest}",
            get(generation::generation),
        )
        .merge(admin)
        .merge(crate::serve::admin_ui::routes())
        .with_state(state);
    // Anonymous: a routing cookie for every client. Authenticated: the cookie is the session, set
    // only when a request authenticates.
    if anonymous {
        routes.layer(axum::middleware::from_fn_with_state(
            cookie,
            session_cookie::issue,
        ))
    } else {
        routes
    }
}

/// The status document as this caller may see it: in authenticated mode, only an admin caller
/// sees repositories, the upstream, members and messages.
fn status_for(
    s: &AppState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> status::StatusDoc {
    let doc = status::build_listing(&s.shared, s.farm.as_deref(), status::LISTED);
    let who = admin::caller(peer, headers, s.shared.config.admin_token.as_ref());
    if s.shared.config.access == crate::config::Access::Anonymous || who.is_admin() {
        doc
    } else {
        status::public(doc)
    }
}

/// The status depends on who asks: never cached, and caches are told it varies.
fn private(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::VARY,
        header::HeaderValue::from_static("Authorization"),
    );
    r
}

async fn index(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    private(Html(status::html(&status_for(&s, peer, &headers))).into_response())
}

async fn status_doc(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    private(Json(status_for(&s, peer, &headers)).into_response())
}

/// `DELETE /rest/mirroring/latest/session`: ends the caller's session (on every member, in a
/// farm with replicated sessions) and clears its cookie.
async fn logout(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let now = crate::store::now_ms();
    let ended = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(mirrorfarm_common::session::sessions_in_cookie_header)
        .filter(|(session, _)| s.shared.gate.sessions.remove(session, now))
        .count();
    let status = if ended > 0 {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    };
    let mut r = status.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "BITBUCKETSESSIONID=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
        ),
    );
    r
}

async fn metrics(State(s): State<AppState>) -> Response {
    let live = s.shared.gate.sessions.live_count(crate::store::now_ms());
    s.shared.metrics.sessions_live(live);
    let p = &s.shared.processes;
    s.shared.metrics.places(p.running(), p.waiting());
    let (packs, lfs) = (s.shared.packs.size(), s.shared.lfs.status());
    // Read in place (no copy of the repository map).
    let body = s.shared.metrics.render(&s.shared.repos.read(), packs, &lfs);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    project: String,
    repo: String,
}

fn json_error(status: StatusCode, msg: String) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn trigger_sync(State(s): State<AppState>, body: Bytes) -> Response {
    if body.iter().all(u8::is_ascii_whitespace) {
        s.sync.trigger(Trigger::All);
        return (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "accepted": "all" })),
        )
            .into_response();
    }
    let req: SyncRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"project\":\"P\",\"repo\":\"r\"}}: {e}"),
            )
        }
    };
    let id = match RepoId::parse(&format!("{}/{}", req.project, req.repo)) {
        Ok(id) => id,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if !s.shared.repos.read().contains_key(&id) {
        return json_error(
            StatusCode::NOT_FOUND,
            format!("repository {id} is not mirrored here"),
        );
    }
    // In a farm the repository's leader fetches from the upstream: the trigger is passed on to
    // it too (this node then follows the leader's new state).
    s.sync.trigger(Trigger::Requested(id.clone()));
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": id.to_string() })),
    )
        .into_response()
}
