//! The admin page's routes on the farm channel (node certificates only): `/farm/selection` —
//! `GET` the selection this node holds (`null`: the file's), `POST` one another member sends (the
//! newest wins; see `farm::selection`) — and `GET /farm/series`, this member's last hour.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mirrorfarm_common::farm::selection::SelectionRecord;

use super::{require_node, Channel, Peer};

/// `GET /farm/selection` (nodes only).
pub async fn get(State(c): State<Channel>, Extension(peer): Extension<Peer>) -> Response {
    if let Err(r) = require_node(&peer) {
        return r.into_response();
    }
    Json(c.farm.shared.selection.record()).into_response()
}

/// `POST /farm/selection` (nodes only): takes it if it is newer.
pub async fn offer(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Json(record): Json<SelectionRecord>,
) -> Response {
    if let Err(r) = require_node(&peer) {
        return r.into_response();
    }
    crate::farm::selection::take(&c.farm, record).await;
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /farm/series` (nodes only): this member's last hour, for another member's admin page.
pub async fn series(State(c): State<Channel>, Extension(peer): Extension<Peer>) -> Response {
    if let Err(r) = require_node(&peer) {
        return r.into_response();
    }
    Json(mirrorfarm_common::farm::series::SeriesAnswer {
        points: c.farm.shared.series.points(),
    })
    .into_response()
}
