//! The download half of the LFS batch API: objects this node or another member holds for the
//! repository are answered at once; the others are asked of the upstream's LFS server (with the
//! client's credentials when it sent some, else the farm's access) and their download started
//! before the answer goes out, so the client's request finds it under way. Every answer points
//! at the farm's hostname with a token bound to the repository, object and size.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;

use crate::config::Access;
use crate::lfs::batch::{
    Action, Actions, BatchRequest, BatchResponse, ObjectAnswer, ObjectError, BASIC,
};
use crate::lfs::upstream::{Auth, UpstreamError};
use crate::lfs::{token, LfsOid};
use crate::names::RepoId;
use crate::serve::lfs::{json, unauthorized};
use crate::serve::Serving;

/// Downloads asked of the leader (or started) at once for one batch.
const KICKOFFS_AT_ONCE: usize = 16;

/// Answers a download batch.
pub async fn download(
    serving: &Arc<Serving>,
    id: &RepoId,
    credentials: Option<HeaderValue>,
    request: &BatchRequest,
) -> Response {
    let lfs = &serving.lfs;
    let mut answers: Vec<Option<ObjectAnswer>> = vec![None; request.objects.len()];
    let mut missing = Vec::new();
    for (i, o) in request.objects.iter().enumerate() {
        match o.checked() {
            Ok((oid, size)) if lfs.holds_for(id, &oid).await => {
                answers[i] = Some(download_answer(serving, id, &oid, size))
            }
            Ok((oid, size)) => missing.push((i, oid, size)),
            Err(e) => answers[i] = Some(error_answer(&o.oid, o.size, e)),
        }
    }
    if !missing.is_empty() {
        let oids: Vec<LfsOid> = missing.iter().map(|(_, o, _)| o.clone()).collect();
        let elsewhere = lfs.farm_has(id, &oids).await;
        let mut ask = Vec::new();
        for (i, oid, size) in missing {
            if elsewhere.contains(&oid) {
                answers[i] = Some(download_answer(serving, id, &oid, size));
            } else {
                ask.push((i, oid, size));
            }
        }
        if !ask.is_empty() {
            if let Err(r) = ask_upstream(serving, id, credentials, ask, &mut answers).await {
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
async fn ask_upstream(
    serving: &Arc<Serving>,
    id: &RepoId,
    credentials: Option<HeaderValue>,
    ask: Vec<(usize, LfsOid, u64)>,
    answers: &mut [Option<ObjectAnswer>],
) -> Result<(), Response> {
    let lfs = &serving.lfs;
    let user = credentials.filter(|_| serving.config.access != Access::Anonymous);
    let auth = match &user {
        Some(v) => Auth::User(v.clone()),
        None => Auth::Farm,
    };
    let req = BatchRequest::download(ask.iter().map(|(_, oid, size)| (oid, *size)));
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
                let error = ObjectError {
                    code,
                    message: e.to_string(),
                };
                answers[i] = Some(error_answer(oid.as_str(), size as i64, error));
            }
            return Ok(());
        }
    };
    // Each offered object is known for this repository from now on; its download is asked of
    // the leader (or started), a bounded number at once.
    let kicks = ask.into_iter().map(|(i, oid, size)| {
        let upstream = answer.objects.iter().find(|o| o.oid == oid.as_str());
        let action = upstream.and_then(|o| o.actions.as_ref()?.download.clone());
        let error = upstream.and_then(|o| o.error.clone());
        async move {
            let a = match (action, error) {
                (_, Some(e)) => error_answer(oid.as_str(), size as i64, e),
                (Some(action), None) => match lfs.kickoff(id, &oid, size, action).await {
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
            };
            (i, a)
        }
    });
    let done: Vec<(usize, ObjectAnswer)> = futures_util::stream::iter(kicks)
        .buffer_unordered(KICKOFFS_AT_ONCE)
        .collect()
        .await;
    for (i, a) in done {
        answers[i] = Some(a);
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
    let token = serving.lfs.tokens.issue(id, (oid, size), expiry);
    let href = format!(
        "{}/scm/{id}.git/info/lfs/objects/{oid}?size={size}",
        serving.config.base_url
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

/// The client's Basic credentials, passed on to the upstream (never kept).
pub fn basic_credentials(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .filter(|v| v.as_bytes().len() > 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"basic "))
        .cloned()
}
