//! Git LFS over HTTP: the batch API at `/scm/<P>/<r>.git/info/lfs/objects/batch` and objects at
//! `…/info/lfs/objects/<oid>`. A batch is read under the repository's access rules; its
//! downloads point at the farm's hostname with a token any member accepts; objects the farm lacks
//! are asked of the upstream (with the client's credentials when it sent some) and their download
//! started at once, so the client's request finds it under way. Uploads go to the upstream.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::access::Admission;
use crate::config::Access;
use crate::lfs::batch::{
    Action, Actions, BatchRequest, BatchResponse, ErrorBody, ObjectAnswer, ObjectError, Operation,
    BASIC, MEDIA_TYPE,
};
use crate::lfs::upstream::{Auth, UpstreamError};
use crate::lfs::{token, LfsOid};
use crate::names::RepoId;
use crate::serve::path::LfsEndpoint;
use crate::serve::Serving;
use crate::state::Lookup;

/// The largest batch request read.
const MAX_BATCH_BODY: usize = 4 << 20;
/// The most objects one batch may name.
const MAX_OBJECTS: usize = 10_000;

/// A JSON answer in the batch API's media type.
fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
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
fn unauthorized(serving: &Serving, message: String) -> Response {
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
    if matches!(serving.lookup(&id), Lookup::Unknown) {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("repository {id} is not mirrored here"),
        );
    }
    match endpoint {
        LfsEndpoint::Batch if req.method() == Method::POST => batch(serving, &id, req).await,
        LfsEndpoint::Object(oid) if req.method() == Method::GET => {
            object(serving, &id, &oid, req).await
        }
        _ => refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
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
        Admission::NotFound => Err(refuse(
            StatusCode::NOT_FOUND,
            format!("repository {id} is not mirrored here"),
        )),
        Admission::Unavailable(msg) => {
            let mut r = refuse(StatusCode::SERVICE_UNAVAILABLE, msg);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            Err(r)
        }
    }
}

/// The client's Basic credentials, passed on to the upstream (never kept).
fn basic_credentials(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(header::AUTHORIZATION)
        .filter(|v| v.as_bytes().len() > 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"basic "))
        .cloned()
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
    let cookie = match admitted(serving, id, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
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
        Operation::Download => download(serving, id, &headers, &request).await,
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

/// Downloads: objects the farm holds are answered at once; the others are asked of the upstream
/// and their download started before the answer goes out.
async fn download(
    serving: &Arc<Serving>,
    id: &RepoId,
    headers: &HeaderMap,
    request: &BatchRequest,
) -> Response {
    let lfs = &serving.lfs;
    let mut answers: Vec<Option<ObjectAnswer>> = vec![None; request.objects.len()];
    let mut wanted: Vec<(usize, LfsOid, u64)> = Vec::new();
    for (i, o) in request.objects.iter().enumerate() {
        match o.checked() {
            Ok((oid, size)) => wanted.push((i, oid, size)),
            Err(e) => answers[i] = Some(error_answer(&o.oid, o.size, e)),
        }
    }
    let mut missing = Vec::new();
    for (i, oid, size) in wanted {
        if lfs.holds(&oid).await {
            answers[i] = Some(download_answer(serving, id, &oid, size));
        } else {
            missing.push((i, oid, size));
        }
    }
    if !missing.is_empty() {
        let oids: Vec<LfsOid> = missing.iter().map(|(_, o, _)| o.clone()).collect();
        let elsewhere = lfs.farm_has(&oids).await;
        let mut ask = Vec::new();
        for (i, oid, size) in missing {
            if elsewhere.contains(&oid) {
                answers[i] = Some(download_answer(serving, id, &oid, size));
            } else {
                ask.push((i, oid, size));
            }
        }
        if !ask.is_empty() {
            if let Err(r) = from_upstream(serving, id, headers, ask, &mut answers).await {
                return r;
            }
        }
    }
    json(
        StatusCode::OK,
        &BatchResponse {
            transfer: Some(BASIC.into()),
            objects: answers.into_iter().flatten().collect(),
            hash_algo: Some("sha256".into()),
        },
    )
}

/// Asks the upstream's batch API about objects the farm lacks and starts their downloads.
async fn from_upstream(
    serving: &Arc<Serving>,
    id: &RepoId,
    headers: &HeaderMap,
    ask: Vec<(usize, LfsOid, u64)>,
    answers: &mut [Option<ObjectAnswer>],
) -> Result<(), Response> {
    let lfs = &serving.lfs;
    let user = basic_credentials(headers).filter(|_| serving.config.access != Access::Anonymous);
    let auth = match &user {
        Some(v) => Auth::User(v.clone()),
        None => Auth::Farm,
    };
    let req = BatchRequest {
        operation: Operation::Download,
        transfers: Some(vec![BASIC.into()]),
        ref_spec: None,
        objects: ask
            .iter()
            .map(|(_, oid, size)| crate::lfs::batch::ObjectSpec {
                oid: oid.to_string(),
                size: *size as i64,
            })
            .collect(),
        hash_algo: None,
    };
    let answer = match lfs.upstream.batch(id, &auth, &req).await {
        Ok(a) => a,
        // A session or SSH token carries no credentials for the upstream and the farm has no
        // access of its own there: ask the client for its credentials.
        Err(UpstreamError::NoFarmAccess(why)) if user.is_none() => {
            tracing::info!(repo = %id, why, "LFS objects need the client's credentials");
            return Err(unauthorized(
                serving,
                "these LFS objects must be fetched from the upstream with your credentials".into(),
            ));
        }
        Err(e) => {
            tracing::warn!(repo = %id, error = %e, "cannot ask the upstream's LFS server");
            let code = match e {
                UpstreamError::NoAccess => 404,
                _ => 503,
            };
            for (i, oid, size) in ask {
                answers[i] = Some(error_answer(
                    oid.as_str(),
                    size as i64,
                    ObjectError {
                        code,
                        message: e.to_string(),
                    },
                ));
            }
            return Ok(());
        }
    };
    for (i, oid, size) in ask {
        let upstream = answer.objects.iter().find(|o| o.oid == oid.as_str());
        let action = upstream.and_then(|o| o.actions.as_ref()?.download.clone());
        let error = upstream.and_then(|o| o.error.clone());
        answers[i] = Some(match (action, error) {
            (_, Some(e)) => error_answer(oid.as_str(), size as i64, e),
            (Some(action), None) => match lfs.kickoff(id, &oid, size, Some(action)).await {
                Ok(()) => download_answer(serving, id, &oid, size),
                Err(e) => error_answer(
                    oid.as_str(),
                    size as i64,
                    ObjectError {
                        code: 500,
                        message: e.to_string(),
                    },
                ),
            },
            (None, None) => error_answer(
                oid.as_str(),
                size as i64,
                ObjectError {
                    code: 404,
                    message: "the upstream's LFS server has no such object".into(),
                },
            ),
        });
    }
    Ok(())
}

fn error_answer(oid: &str, size: i64, error: ObjectError) -> ObjectAnswer {
    ObjectAnswer {
        oid: oid.to_owned(),
        size,
        authenticated: None,
        actions: None,
        error: Some(error),
    }
}

/// A download action pointing at the farm's hostname, with a token any member accepts.
fn download_answer(serving: &Serving, id: &RepoId, oid: &LfsOid, size: u64) -> ObjectAnswer {
    let ttl = serving.lfs.config.token_ttl;
    let expiry = crate::store::now_ms() as u64 / 1000 + ttl.as_secs();
    let token = serving.lfs.tokens.issue(id, oid, expiry);
    let href = format!(
        "{}/scm/{}.git/info/lfs/objects/{oid}?size={size}",
        serving.config.base_url, id
    );
    ObjectAnswer {
        oid: oid.to_string(),
        size: size as i64,
        authenticated: Some(true),
        actions: Some(Actions {
            download: Some(Action {
                href,
                header: [(token::HEADER.to_owned(), token)].into_iter().collect(),
                expires_in: Some(ttl.as_secs() as i64),
                expires_at: None,
            }),
            upload: None,
            verify: None,
        }),
        error: None,
    }
}

#[derive(serde::Deserialize)]
struct ObjectQuery {
    size: Option<u64>,
}

/// One object: on a valid token (or the repository's access rules), from wherever the farm has it.
async fn object(serving: &Arc<Serving>, id: &RepoId, oid: &LfsOid, req: Request) -> Response {
    let headers = req.headers();
    let token = headers.get(token::HEADER).and_then(|v| v.to_str().ok());
    let now = crate::store::now_ms() as u64 / 1000;
    match token.map(|t| serving.lfs.tokens.verify(t, id, oid, now)) {
        Some(Ok(())) => {}
        Some(Err(e)) => return refuse(StatusCode::UNAUTHORIZED, e.to_string()),
        None => {
            if let Err(r) = admitted(serving, id, headers).await {
                return r;
            }
        }
    }
    let size = axum::extract::Query::<ObjectQuery>::try_from_uri(req.uri())
        .ok()
        .and_then(|q| q.0.size);
    match serving.lfs.open(id, oid, size).await {
        Ok(body) => {
            serving.lfs.stats.served(body.source);
            let mut r = Response::new(Body::from_stream(body.stream));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len));
            r
        }
        Err(crate::lfs::service::LfsError::NotFound(_)) => refuse(
            StatusCode::NOT_FOUND,
            format!("LFS object {oid} is not available"),
        ),
        Err(e @ crate::lfs::service::LfsError::Failed { .. }) => {
            tracing::warn!(repo = %id, %oid, error = %e, "cannot serve an LFS object");
            refuse(StatusCode::BAD_GATEWAY, e.to_string())
        }
        Err(e) => {
            tracing::warn!(repo = %id, %oid, error = %e, "cannot serve an LFS object");
            refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}
