//! Pushes through the farm: `info/refs?service=git-receive-pack` and the receive-pack POST are
//! passed to `<auth-url>` with the client's own credentials, streamed both ways. The answer's
//! last packet is held until this node advertises what the upstream accepted (the push triggers a
//! sync and waits for the farm's flip), at most `mirror.push.syncWait`; past that the client is
//! told (side-band 2) that the farm will show the push shortly. Upstream refusals pass verbatim.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;

use crate::access::upstream_check::Upstream;
use crate::names::RepoId;
use crate::pktline;
use crate::serve::path::ScmEndpoint;
use crate::serve::receive_pack::{self, Commands, MAX_HEAD};
use crate::serve::Serving;
use crate::state::Lookup;
use crate::sync::scheduler::Trigger;

/// Request headers passed to the upstream.
const REQUEST_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::ACCEPT,
    header::USER_AGENT,
];
/// Response headers passed back.
const RESPONSE_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::WWW_AUTHENTICATE,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
];

/// 502 naming what failed (not where: the upstream's address is for admins).
fn bad_gateway(e: reqwest::Error) -> Response {
    let why = if e.is_timeout() {
        "it did not answer in time".to_owned()
    } else if e.is_connect() {
        "it cannot be reached".to_owned()
    } else {
        e.without_url().to_string()
    };
    tracing::warn!(error = %why, "cannot pass a push on to the upstream");
    let mut r = Response::new(Body::from(format!(
        "cannot pass the push on to the upstream: {why}\n"
    )));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

fn forward(req: reqwest::RequestBuilder, headers: &HeaderMap) -> reqwest::RequestBuilder {
    let mut req = req;
    for name in REQUEST_HEADERS.iter() {
        for v in headers.get_all(name) {
            req = req.header(name, v.clone());
        }
    }
    if let Some(v) = headers.get("git-protocol") {
        req = req.header("Git-Protocol", v.clone());
    }
    req
}

fn head_of(up: &reqwest::Response) -> axum::http::response::Builder {
    let mut b = Response::builder().status(up.status().as_u16());
    for name in RESPONSE_HEADERS.iter() {
        for v in up.headers().get_all(name) {
            b = b.header(name, v.clone());
        }
    }
    b.header(header::PRAGMA, "no-cache")
        .header(header::EXPIRES, "Fri, 01 Jan 1980 00:00:00 GMT")
}

/// `info/refs?service=git-receive-pack`, from the upstream.
pub async fn advertise(serving: &Serving, up: &Upstream, id: &RepoId, req: Request) -> Response {
    let url = up.url(id, "/info/refs?service=git-receive-pack");
    let r = forward(up.client().get(url), req.headers())
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    match r {
        Ok(r) => {
            if !r.status().is_success() {
                serving.metrics.push("refused");
            }
            let b = head_of(&r);
            let body = Body::from_stream(r.bytes_stream());
            b.body(body)
                .unwrap_or_else(|_| Response::new(Body::empty()))
        }
        Err(e) => {
            serving.metrics.push("failed");
            bad_gateway(e)
        }
    }
}

/// The receive-pack POST: streamed to the upstream, its answer streamed back with the last
/// packet held until this node advertises the accepted updates.
pub async fn receive(serving: &Arc<Serving>, up: &Upstream, id: &RepoId, req: Request) -> Response {
    let url = up.url(id, "/git-receive-pack");
    let headers = req.headers().clone();
    let followed = !headers.contains_key(header::CONTENT_ENCODING);
    let head = Arc::new(Mutex::new(Vec::new()));
    let seen = head.clone();
    let body = req.into_body().into_data_stream().map(move |chunk| {
        if let Ok(c) = &chunk {
            let mut h = seen.lock();
            if h.len() < MAX_HEAD {
                let take = c.len().min(MAX_HEAD - h.len());
                h.extend_from_slice(&c[..take]);
            }
        }
        chunk
    });
    let sent = forward(up.client().post(url), &headers)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    let r = match sent {
        Ok(r) => r,
        Err(e) => {
            serving.metrics.push("failed");
            return bad_gateway(e);
        }
    };
    let commands = followed
        .then(|| receive_pack::commands(&head.lock()))
        .flatten();
    if !r.status().is_success() {
        serving.metrics.push("refused");
        let b = head_of(&r);
        return b
            .body(Body::from_stream(r.bytes_stream()))
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    let b = head_of(&r);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(relay(serving.clone(), id.clone(), r, commands, tx));
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    b.body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Streams the upstream's answer to the client, holding its last 4 bytes (the final flush) until
/// the farm shows the accepted updates or `mirror.push.syncWait` passes.
async fn relay(
    serving: Arc<Serving>,
    id: RepoId,
    r: reqwest::Response,
    commands: Option<Commands>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut upstream = r.bytes_stream();
    let mut held: Vec<u8> = Vec::new();
    let mut seen: Vec<u8> = Vec::new();
    let mut broken = false;
    while let Some(chunk) = upstream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                broken = true;
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                break;
            }
        };
        if seen.len() < MAX_HEAD {
            seen.extend_from_slice(&chunk[..chunk.len().min(MAX_HEAD - seen.len())]);
        }
        held.extend_from_slice(&chunk);
        if held.len() > 4 {
            let out = held.split_off(held.len() - 4);
            let send = std::mem::replace(&mut held, out);
            if tx.send(Ok(Bytes::from(send))).await.is_err() {
                broken = true;
                break;
            }
        }
    }
    // Whatever the client saw, the upstream may have changed: sync now.
    serving.sync.trigger(Trigger::Requested(id.clone()));
    if broken {
        serving.metrics.push("failed");
        return;
    }
    let sideband = commands.as_ref().is_some_and(|c| c.sideband);
    let wanted: Option<BTreeMap<String, String>> = commands.and_then(|c| {
        let ok = receive_pack::accepted(&seen, c.sideband)?;
        Some(
            c.updates
                .into_iter()
                .filter(|(name, _)| ok.contains(name))
                .collect(),
        )
    });
    let result = match &wanted {
        Some(w) if !w.is_empty() => "ok",
        _ => "refused",
    };
    serving.metrics.push(result);
    if let Some(w) = wanted.filter(|w| !w.is_empty()) {
        let wait = serving.config.auth.push_sync_wait;
        if !shows(&serving, &id, &w, wait).await && sideband {
            let msg = format!(
                "\u{2}mirrorfarm: the upstream has the push; this farm will show it shortly (it did not within {} s)\n",
                wait.as_secs()
            );
            let _ = tx.send(Ok(Bytes::from(pktline::pkt(&msg)))).await;
        }
    }
    let _ = tx.send(Ok(Bytes::from(held))).await;
}

/// Whether this node advertises every update in `wanted` (waiting up to `wait` for it to).
async fn shows(
    serving: &Serving,
    id: &RepoId,
    wanted: &BTreeMap<String, String>,
    wait: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let changed = serving.served_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if let Lookup::Ready(path, key) = serving.lookup(id) {
            if let Ok(a) = serving.refs.get(id, &path, &key).await {
                let now: BTreeMap<&str, &str> = a
                    .list
                    .refs
                    .iter()
                    .map(|(n, o, _)| (n.as_str(), o.as_str()))
                    .collect();
                let all = wanted.iter().all(|(name, new)| {
                    let deleted = new.bytes().all(|b| b == b'0');
                    match now.get(name.as_str()) {
                        Some(o) => !deleted && o == new,
                        None => deleted,
                    }
                });
                if all {
                    return true;
                }
            }
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return false;
        }
    }
}

/// A push refused: this node has no upstream smart-HTTP endpoint to pass it to.
pub fn refuse(shared: &Serving, id: &RepoId, endpoint: ScmEndpoint) -> Response {
    let msg = format!(
        "this is a read-only mirror: push to {} instead",
        shared.config.upstream.repo_url(id)
    );
    match endpoint {
        ScmEndpoint::InfoRefs => {
            let mut body = pktline::pkt("# service=git-receive-pack\n");
            body.extend_from_slice(pktline::FLUSH);
            body.extend_from_slice(&pktline::err(&msg));
            let mut r = (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "application/x-git-receive-pack-advertisement",
                )],
                body,
            )
                .into_response();
            crate::serve::reply::no_cache(r.headers_mut());
            r
        }
        ScmEndpoint::Rpc(_) => crate::serve::reply::text(StatusCode::FORBIDDEN, msg),
    }
}
