//! Git LFS between members: which objects this node holds, a download from the upstream asked of
//! this node as a repository's leader, and objects streamed to a member (held or on their way).
//! Only member nodes are served.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use mirrorfarm_common::farm::messages::{LfsFetch, LfsHave, LfsHaveAnswer};

use crate::farm::channel::{mirrored, require_node, Channel, Peer, Refusal};
use crate::lfs::batch::Action;
use crate::lfs::LfsOid;

/// The most object IDs one "have" question may name.
const MAX_HAVE: usize = 10_000;

fn oid_of(s: &str) -> Result<LfsOid, Refusal> {
    LfsOid::parse(s).ok_or_else(|| Refusal(StatusCode::BAD_REQUEST, "bad LFS object ID".into()))
}

/// `POST /farm/lfs/have`: the ones this node holds for the repository, or is downloading from
/// the upstream (a download fed by a member does not count: members never wait on each other).
pub async fn have(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Json(q): Json<LfsHave>,
) -> Result<Json<LfsHaveAnswer>, Refusal> {
    require_node(&peer)?;
    let id = mirrored(&c, &q.project, &q.repo)?;
    if q.oids.len() > MAX_HAVE {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too many object IDs".into(),
        ));
    }
    let lfs = &c.farm.shared.lfs;
    let mut have = Vec::new();
    for oid in q.oids.iter().filter_map(|o| LfsOid::parse(o)) {
        if lfs.serves_member(&id, &oid).await {
            have.push(oid.to_string());
        }
    }
    Ok(Json(LfsHaveAnswer { have }))
}

/// `POST /farm/lfs/fetch`: this node (the repository's leader) downloads the object from the
/// upstream, once however many members ask; answered once the download is under way.
pub async fn fetch(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Json(f): Json<LfsFetch>,
) -> Result<StatusCode, Refusal> {
    let node = require_node(&peer)?.to_owned();
    let id = mirrored(&c, &f.project, &f.repo)?;
    let oid = oid_of(&f.oid)?;
    let action = f.href.map(|href| Action {
        href,
        header: f.header,
        expires_in: None,
        expires_at: None,
    });
    tracing::debug!(repo = %id, %oid, from = node, "LFS download asked by a member");
    c.farm
        .shared
        .lfs
        .download(&id, &oid, f.size, action)
        .await
        .map_err(|e| Refusal(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(StatusCode::ACCEPTED)
}

/// Query of an object request.
#[derive(Debug, serde::Deserialize)]
pub struct ObjectQuery {
    project: String,
    repo: String,
    size: u64,
    #[serde(default)]
    fetch: bool,
}

/// `GET /farm/lfs/objects/<oid>`: the object, streamed; 404 when this node has none (and, asked
/// to fetch, could not start a download).
pub async fn object(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Path(oid): Path<String>,
    Query(q): Query<ObjectQuery>,
) -> Result<Response, Refusal> {
    require_node(&peer)?;
    let id = mirrored(&c, &q.project, &q.repo)?;
    let oid = oid_of(&oid)?;
    let body = c
        .farm
        .shared
        .lfs
        .open_for_member(&id, &oid, q.size, q.fetch)
        .await
        .map_err(|e| Refusal(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("{oid} is not held here")))?;
    Ok(crate::serve::lfs::object_response(body))
}
