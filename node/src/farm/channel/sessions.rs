//! `/farm/sessions` on the farm channel (node certificates only): `GET` every session this node
//! holds, `POST` sessions another member sends, merged (see `farm::sessions` for who sends what).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mirrorfarm_common::farm::messages::SessionBatch;

use super::{require_node, Channel, Peer};
use crate::store::now_ms;

/// `GET /farm/sessions`: every session this node holds (nodes only).
pub async fn list(State(c): State<Channel>, Extension(peer): Extension<Peer>) -> Response {
    if let Err(r) = require_node(&peer) {
        return r.into_response();
    }
    let sessions = c.farm.shared.gate.sessions.all(now_ms());
    Json(SessionBatch { sessions }).into_response()
}

/// `POST /farm/sessions`: merges sessions another member sends (nodes only).
pub async fn merge(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Json(batch): Json<SessionBatch>,
) -> Response {
    if let Err(r) = require_node(&peer) {
        return r.into_response();
    }
    c.farm.shared.gate.sessions.merge(batch.sessions);
    StatusCode::NO_CONTENT.into_response()
}
