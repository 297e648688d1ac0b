//! Git LFS over HTTP: the batch API at `/scm/<P>/<r>.git/info/lfs/objects/batch` and objects at
//! `…/info/lfs/objects/<oid>`. A batch is read under the repository's access rules (credentials,
//! a session, or an SSH-issued access token); downloads are answered by
//! [`crate::serve::lfs_batch`]; uploads go to the upstream's LFS server with the client's own
//! credentials. An object is served on its token, or to a client the rules admit when this node
//! holds it for that repository.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::access::Admission;
use crate::config::Access;
use crate::lfs::batch::{BatchRequest, ErrorBody, Operation, MEDIA_TYPE};
use crate::lfs::service::{LfsError, ObjectBody};
use crate::lfs::{token, LfsOid};
use crate::names::RepoId;
use crate::serve::lfs_batch::basic_credentials;
use crate::serve::path::LfsEndpoint;
use crate::serve::Serving;
use crate::state::Lookup;

/// The largest batch request read.
const MAX_BATCH_BODY: usize = 4 << 20;
/// The most objects one batch may name.
const MAX_OBJECTS: usize = 10_000;

/// A JSON answer in the batch API's media type.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    r
}

/// An error answer with the batch API's body.
pub fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    json(
        status,
        &ErrorBody {
            message: message.into(),
            documentation_url: None,
            request_id: None,
        },
    )
}

/// 401 asking git-lfs for credentials (`LFS-Authenticate`, and `WWW-Authenticate` for others).
pub(crate) fn unauthorized(serving: &Serving, message: String) -> Response {
    let mut r = refuse(StatusCode::UNAUTHORIZED, message);
    let realm = serving.config.display_name.replace(['"', '\\'], "'");
    if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
        r.headers_mut().insert("lfs-authenticate", v.clone());
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Handles an LFS request for `id`.
pub async fn handle(
    serving: &Arc<Serving>,
    id: RepoId,
    endpoint: LfsEndpoint,
    req: Request,
) -> Response {
    match endpoint {
        LfsEndpoint::Batch if req.method() == Method::POST => batch(serving, &id, req).await,
        LfsEndpoint::Object(oid) if req.method() == Method::GET => {
            object(serving, &id, &oid, req).await
        }
        _ => refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn not_mirrored(id: &RepoId) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        format!("repository {id} is not mirrored here"),
    )
}

/// The gate's word on a request, as an LFS answer when it refuses (`Ok`: the cookie to set).
async fn admitted(
    serving: &Serving,
    id: &RepoId,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, Response> {
    if serving.config.access == Access::Anonymous {
        return Ok(None);
    }
    if let Some(user) = crate::serve::lfs_ssh::access_user(serving, id, headers) {
        tracing::debug!(repo = %id, user, "LFS request on an SSH-issued token");
        return Ok(None);
    }
    match serving.gate.admit(headers, id, &serving.metrics).await {
        Admission::Allowed { new_session } => {
            Ok(new_session.and_then(|s| crate::serve::http_access::cookie(serving, &s)))
        }
        Admission::Unauthorized(msg) => Err(unauthorized(serving, msg)),
        Admission::NotFound => Err(not_mirrored(id)),
        Admission::Unavailable(msg) => {
            let mut r = refuse(StatusCode::SERVICE_UNAVAILABLE, msg);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            Err(r)
        }
    }
}

async fn read_body(serving: &Serving, req: Request) -> Result<bytes::Bytes, Response> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BATCH_BODY);
    match tokio::time::timeout(serving.config.body_timeout, limited.collect()).await {
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time (server.bodyTimeout)",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("batch requests are limited to {MAX_BATCH_BODY} bytes"),
        )),
        Ok(Err(e)) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

async fn batch(serving: &Arc<Serving>, id: &RepoId, req: Request) -> Response {
    let headers = req.headers().clone();
    // The rules first (as for git): an unauthenticated caller learns nothing of what is mirrored.
    let cookie = match admitted(serving, id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if matches!(serving.lookup(id), Lookup::Unknown) {
        return not_mirrored(id);
    }
    let body = match read_body(serving, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("not a batch request: {e}"),
            )
        }
    };
    if let Err(r) = request.check(MAX_OBJECTS) {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        return refuse(status, r.message);
    }
    let mut response = match request.operation {
        Operation::Upload => upload(serving, id, &headers, body).await,
        Operation::Download => {
            let credentials = basic_credentials(&headers);
            crate::serve::lfs_batch::download(serving, id, credentials, &request).await
        }
    };
    if let Some(c) = cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// Uploads go to the upstream's LFS server with the client's own credentials, its answer passed
/// back as it is (the client then sends the objects where it says).
async fn upload(
    serving: &Serving,
    id: &RepoId,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let lfs = &serving.lfs;
    let named = lfs
        .upstream
        .endpoint_of(id)
        .unwrap_or_else(|| "the upstream's LFS server".into());
    if serving.config.access == Access::Anonymous {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("this mirror is read-only for LFS objects: push them to {named}"),
        );
    }
    let Some(auth) = basic_credentials(headers) else {
        return unauthorized(
            serving,
            "LFS uploads go to the upstream with your own credentials: send them".into(),
        );
    };
    match lfs.upstream.forward(id, &auth, body).await {
        Ok(up) => {
            let mut b = Response::builder().status(up.status().as_u16());
            for name in [
                header::CONTENT_TYPE,
                header::WWW_AUTHENTICATE,
                header::RETRY_AFTER,
            ] {
                if let Some(v) = up.headers().get(&name) {
                    b = b.header(name, v.clone());
                }
            }
            if let Some(v) = up.headers().get("lfs-authenticate") {
                b = b.header("lfs-authenticate", v.clone());
            }
            b.body(Body::from_stream(up.bytes_stream()))
                .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "bad upstream answer"))
        }
        Err(e) => refuse(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct ObjectQuery {
    size: Option<u64>,
}

/// One object: on a valid token, from wherever the farm has it; otherwise to a client the rules
/// admit, when this node holds it for the repository.
async fn object(serving: &Arc<Serving>, id: &RepoId, oid: &LfsOid, req: Request) -> Response {
    let headers = req.headers();
    let size = axum::extract::Query::<ObjectQuery>::try_from_uri(req.uri())
        .ok()
        .and_then(|q| q.0.size);
    let token = headers.get(token::HEADER).and_then(|v| v.to_str().ok());
    let now = crate::store::now_ms() as u64 / 1000;
    let lfs = &serving.lfs;
    if let (Some(t), Some(size)) = (token, size) {
        match lfs.tokens.verify(t, id, (oid, size), now) {
            Ok(()) if matches!(serving.lookup(id), Lookup::Unknown) => return not_mirrored(id),
            Ok(()) => return send(serving, id, oid, lfs.open(id, oid, size).await, None),
            // An expired or foreign token: the client's credentials may still do.
            Err(e) => tracing::debug!(repo = %id, %oid, error = %e, "LFS token refused"),
        }
    }
    let cookie = match admitted(serving, id, headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if matches!(serving.lookup(id), Lookup::Unknown) || !lfs.known.contains(id, oid).await {
        return not_found(oid);
    }
    match lfs.here(oid, false).await {
        Ok(Some(body)) => send(serving, id, oid, Ok(body), cookie),
        Ok(None) => not_found(oid),
        Err(e) => send(serving, id, oid, Err(e), None),
    }
}

fn not_found(oid: &LfsOid) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        format!("LFS object {oid} is not available"),
    )
}

/// An object's bytes as a streamed answer (to a client or a member).
pub fn object_response(body: ObjectBody) -> Response {
    let mut r = Response::new(Body::from_stream(body.stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len));
    r
}

/// The object's answer: its bytes streamed, or the error.
fn send(
    serving: &Serving,
    id: &RepoId,
    oid: &LfsOid,
    body: Result<ObjectBody, LfsError>,
    cookie: Option<HeaderValue>,
) -> Response {
    match body {
        Ok(body) => {
            serving.lfs.stats.served(body.source);
            let mut r = object_response(body);
            if let Some(c) = cookie {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            r
        }
        Err(LfsError::NotFound(_)) => not_found(oid),
        Err(e @ LfsError::Failed { .. }) => {
            tracing::warn!(repo = %id, %oid, error = %e, "cannot serve an LFS object");
            refuse(StatusCode::BAD_GATEWAY, e.to_string())
        }
        Err(e) => {
            tracing::warn!(repo = %id, %oid, error = %e, "cannot serve an LFS object");
            refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}
