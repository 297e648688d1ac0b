//! A member's word that it staged a new state ([`StagedNotice`]): kept until gossip carries it
//! (see [`crate::farm::heard`]) and the view rebuilt at once. A word from the repository's leader
//! thus starts this node's fetch of that state within the rebuild ([`crate::farm::follow`] sees
//! the leader's new state, with its HEAD, as it would from gossip).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mirrorfarm_common::farm::messages::StagedNotice;

use super::{node_and_repo, refuse, Channel, Peer};
use crate::farm::heard::Word;
use crate::farm::keys::is_hash;
use crate::names::RefName;

/// `POST /farm/staged`.
pub async fn staged(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Json(n): Json<StagedNotice>,
) -> Response {
    let (node, id) = match node_and_repo(&c, &peer, &n.project, &n.repo) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let head = match n.head.as_deref() {
        None => None,
        Some(h) => match RefName::parse(h).filter(|r| r.as_str().starts_with("refs/heads/")) {
            Some(r) => Some(r),
            None => return refuse(StatusCode::BAD_REQUEST, "bad head"),
        },
    };
    if !is_hash(&n.refs_hash) {
        return refuse(StatusCode::BAD_REQUEST, "bad refs hash");
    }
    let repo = id.to_string();
    c.farm.shared.metrics.staged_word("received");
    let word = Word::new(n.refs_hash, head, n.staged_at_us, std::time::Instant::now());
    c.farm.heard.lock().record(&node, &repo, word);
    // The membership loop rebuilds the view with it at once: followers start their fetch, flips
    // waiting for it wake.
    tracing::debug!(repo = %id, from = node, "a member staged a new state");
    c.farm.shared.mark_changed(&id);
    c.farm.states_news.notify_one();
    StatusCode::ACCEPTED.into_response()
}
