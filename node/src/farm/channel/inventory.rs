//! `GET /farm/inventory?fresh=`: the repositories to mirror as this member lists them, for the
//! members that take the farm's listing from it (one member asks the forge for all). A `fresh`
//! listing is one taken after the request came; otherwise one from the last half interval does.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mirrorfarm_common::farm::messages::{Inventory, ListedRepo};

use crate::farm::channel::{require_node, Channel, Peer};

/// The query.
#[derive(Debug, serde::Deserialize)]
pub struct InventoryQuery {
    #[serde(default)]
    fresh: bool,
}

/// Answers with this member's listing.
pub async fn inventory(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<InventoryQuery>,
) -> Response {
    let node = match require_node(&peer) {
        Ok(n) => n.to_owned(),
        Err(r) => return r.into_response(),
    };
    let shared = &c.farm.shared;
    let now = std::time::Instant::now();
    let max_age = if q.fresh {
        std::time::Duration::ZERO
    } else {
        shared.config.sync_interval / 2
    };
    let since = now.checked_sub(max_age).unwrap_or(now);
    let wanted = shared.inventory.wanted_since(since).await;
    tracing::debug!(
        from = node,
        repos = wanted.repos.len(),
        fresh = q.fresh,
        "listing given to a member"
    );
    Json(Inventory {
        incomplete: !wanted.complete,
        selection: wanted.selection,
        repos: wanted
            .repos
            .into_iter()
            .map(|(id, fingerprint)| ListedRepo {
                id: id.to_string(),
                fingerprint,
            })
            .collect(),
    })
    .into_response()
}
