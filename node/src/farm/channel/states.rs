//! `GET /farm/states?since=R`: this member's ref states changed after its revision `R` (all of
//! them for 0), for a member whose gossip showed this one's revision move.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::{require_node, Channel, Peer};

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Since {
    /// The revision the asker holds.
    #[serde(default)]
    pub since: u64,
}

/// `GET /farm/states`.
pub async fn states(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<Since>,
) -> Response {
    if let Err(r) = require_node(&peer) {
        return r.into_response();
    }
    let answer = c.farm.own_states.lock().since(q.since);
    Json(answer).into_response()
}
