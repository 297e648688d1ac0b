//! `GET /farm/states?since=R`: this member's ref states changed after its revision `R` (all of
//! them for 0), for a member whose gossip showed this one's revision move.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use axum::http::StatusCode;

use super::{refuse, require_node, Channel, Peer};
use crate::farm::own_states::Answer;

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
    let answer = c.farm.own_states.lock().answer(q.since);
    match answer {
        Answer::Changes(a) => Json(a).into_response(),
        // Listing every state is the blocking pool's work.
        Answer::All(snapshot) => match tokio::task::spawn_blocking(move || snapshot.answer()).await
        {
            Ok(a) => Json(a).into_response(),
            Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot list the states"),
        },
    }
}
