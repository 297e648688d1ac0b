//! `POST /rest/mirroring/latest/webhook`: the forges' push and repository events, reachable
//! through the LB. A body over [`webhook::MAX_BODY`] → 413 before it is read; no or a bad
//! signature → 401 and nothing done; a verified push syncs only the repository it names (its
//! leader fetches); a repository event, or a push naming a repository the selection would hold
//! but the farm does not list yet, makes every member list the upstream again; anything else →
//! 202 and ignored.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::forge::webhook::{self, Event, Refused};
use crate::names::RepoId;
use crate::serve::router::AppState;
use crate::sync::scheduler::Trigger;

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

/// Handles one delivery.
pub async fn receive(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let metrics = &s.shared.metrics;
    let Some(secret) = s.shared.secrets.webhook.as_ref().map(|f| f.get()) else {
        metrics.webhook("off");
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "webhooks are off here: set mirror.webhook.secretFile"}),
        );
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = match read_bounded(body, declared).await {
        Some(b) => b,
        None => {
            metrics.webhook("too_large");
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({"error": format!("webhook bodies are limited to {} bytes", webhook::MAX_BODY)}),
            );
        }
    };
    if let Err(e) = webhook::verify(&headers, &bytes, &secret) {
        metrics.webhook("unverified");
        tracing::warn!(error = %e, "webhook refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": e.to_string()}),
        );
    }
    let event = match webhook::parse(&headers, &bytes) {
        Ok(e) => e,
        Err(e @ (Refused::Payload(_) | Refused::Unsigned | Refused::BadSignature)) => {
            metrics.webhook("bad_payload");
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": e.to_string()}),
            );
        }
    };
    match event {
        Event::RefsChanged(name) => refs_changed(&s, &name),
        Event::Relist => {
            metrics.webhook("relist");
            relist(&s);
            answer(
                StatusCode::ACCEPTED,
                serde_json::json!({"accepted": "relist"}),
            )
        }
        Event::Ignored(what) => {
            metrics.webhook("ignored");
            answer(StatusCode::ACCEPTED, serde_json::json!({"ignored": what}))
        }
    }
}

/// How much of a body over the limit is read (and dropped) before the 413, so the client (or the
/// LB relaying it) gets the answer on a connection still in step; beyond it the connection ends.
const DRAIN_LIMIT: u64 = 16 << 20;

/// The body when it is within [`webhook::MAX_BODY`]; `None` (after draining up to
/// [`DRAIN_LIMIT`]) when it is not.
async fn read_bounded(body: Body, declared: Option<u64>) -> Option<bytes::Bytes> {
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return None;
    }
    let mut stream = body.into_data_stream();
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0u64;
    let mut over = declared.is_some_and(|n| n > webhook::MAX_BODY as u64);
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let Ok(chunk) = chunk else { return None };
        seen += chunk.len() as u64;
        if seen > DRAIN_LIMIT {
            return None;
        }
        if seen > webhook::MAX_BODY as u64 {
            over = true;
        }
        if !over {
            kept.extend_from_slice(&chunk);
        }
    }
    (!over).then(|| kept.freeze())
}

fn refs_changed(s: &AppState, name: &str) -> Response {
    let metrics = &s.shared.metrics;
    let found = {
        let repos = s.shared.repos.read();
        webhook::resolve(name, repos.keys())
    };
    if let Some(id) = found {
        metrics.webhook("sync");
        tracing::info!(repo = %id, "webhook: syncing");
        s.sync.trigger(Trigger::Requested(id.clone()));
        return answer(
            StatusCode::ACCEPTED,
            serde_json::json!({"accepted": id.to_string()}),
        );
    }
    // A repository the selection holds but the listing does not yet (created since): list again.
    if let Ok(id) = RepoId::parse(name) {
        if s.shared.inventory.relist_for_unlisted(&id) {
            metrics.webhook("relist");
            tracing::info!(repo = %id, "webhook names a repository not listed yet: listing again");
            relist(s);
            return answer(
                StatusCode::ACCEPTED,
                serde_json::json!({"accepted": "relist"}),
            );
        }
    }
    metrics.webhook("unknown_repository");
    answer(StatusCode::ACCEPTED, serde_json::json!({"ignored": name}))
}

/// Lists the upstream again here and on every other member.
fn relist(s: &AppState) {
    s.sync.trigger(Trigger::All);
    if let Some(farm) = &s.farm {
        crate::farm::nudge::relist(farm);
    }
}
