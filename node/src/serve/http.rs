//! Smart HTTP: `/scm/<PROJECT>/<repo>[.git]/info/refs` and `…/git-upload-pack`, protocol v0 and
//! v2, gzip request bodies, responses streamed from `git upload-pack`; pushes refused.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::pktline;
use crate::serve::path::{parse_scm, PathError, ScmEndpoint, Service};
use crate::serve::reply::{elsewhere, no_cache, text, unavailable};
use crate::serve::served::{LoggedStream, ServeLog, ServedStream};
use crate::serve::{http_access, push, Serving};
use crate::state::Lookup;
use crate::upload_pack::{self, Exposure, Mode};
use mirrorfarm_common::elsewhere::{NOT_READY, WITHHELD};

/// Requests up to this size may be answered by the pack cache.
const CACHEABLE_REQUEST: usize = 1024 * 1024;

/// How reading a request body ended, when it did not end well.
enum BodyError {
    /// Past `server.bodyTimeout`.
    Slow,
    /// Larger than `mirror.serve.maxRequestSize` (decompressed).
    TooLarge,
    /// Broken (bad gzip, the client went away).
    Broken(std::io::Error),
}

/// Reads `r` to its end into `raw` (which may hold its first bytes already), by `deadline`.
async fn read_body(
    r: &mut (dyn AsyncRead + Send + Unpin),
    raw: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<(), BodyError> {
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if upload_pack::is_too_large(&e) => return Err(BodyError::TooLarge),
                Err(e) => return Err(BodyError::Broken(e)),
            }
        }
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or(Err(BodyError::Slow))
}

fn body_refused(shared: &Serving, e: BodyError) -> Response {
    match e {
        BodyError::Slow => text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s (server.bodyTimeout)",
                shared.config.body_timeout.as_secs()
            ),
        ),
        BodyError::TooLarge => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "git request larger than {} bytes (mirror.serve.maxRequestSize)",
                shared.config.serve_max_request
            ),
        ),
        BodyError::Broken(e) => text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        ),
    }
}

/// Query of `info/refs`.
#[derive(Debug, serde::Deserialize)]
pub struct InfoRefsQuery {
    service: Option<String>,
}

fn git_protocol(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("git-protocol")?.to_str().ok()?;
    pktline::protocol_value_ok(v).then(|| v.to_owned())
}

/// Handles every request under `/scm/`.
pub async fn scm(
    State(shared): State<Arc<Serving>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<InfoRefsQuery>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/scm/").unwrap_or_default();
    if let Some(lfs) = crate::serve::path::parse_lfs(rest) {
        return match lfs {
            Ok((id, endpoint)) => crate::serve::lfs::handle(&shared, id, endpoint, req).await,
            Err(e) => crate::serve::lfs::refuse(StatusCode::BAD_REQUEST, e.to_string()),
        };
    }
    let (id, endpoint) = match parse_scm(rest) {
        Ok(x) => x,
        Err(PathError::NotGit) => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: this server only serves git smart HTTP",
            )
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let service = match &endpoint {
        ScmEndpoint::InfoRefs => match q.service.as_deref().and_then(Service::parse) {
            Some(s) => s,
            None => {
                return text(
                    StatusCode::FORBIDDEN,
                    "only git's smart HTTP protocol is served (dumb HTTP is not)",
                )
            }
        },
        ScmEndpoint::Rpc(s) => *s,
    };
    let method_ok = match endpoint {
        ScmEndpoint::InfoRefs => {
            req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD
        }
        ScmEndpoint::Rpc(_) => req.method() == axum::http::Method::POST,
    };
    if !method_ok {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    // Reads need the gate's word; pushes are the upstream's to judge.
    let set_cookie = if service == Service::ReceivePack {
        None
    } else {
        let admission = shared.gate.admit(req.headers(), &id, &shared.metrics).await;
        match http_access::gated(&shared, &id, admission) {
            http_access::Gated::Serve(c) => c,
            http_access::Gated::Refuse(r) => return r,
        }
    };
    let (repo_path, key) = match shared.lookup(&id) {
        Lookup::Ready(p, key) => (p, key),
        Lookup::Unknown => return http_access::not_mirrored(&id),
        Lookup::NotReady if service == Service::ReceivePack => (Default::default(), String::new()),
        Lookup::Withheld(_) if service == Service::ReceivePack => {
            (Default::default(), String::new())
        }
        Lookup::NotReady => {
            tracing::info!(repo = %id, "answered 503: not synchronized yet");
            let msg = format!("repository {id} is not synchronized yet");
            return elsewhere(unavailable(msg, "10"), NOT_READY);
        }
        Lookup::Withheld(why) => {
            tracing::info!(repo = %id, reason = why, "answered 503: withheld");
            let msg = format!(
                "repository {id} is not served by this node right now ({why}); try again shortly"
            );
            return elsewhere(unavailable(msg, "2"), WITHHELD);
        }
    };
    if service == Service::ReceivePack {
        let upstream = shared.gate.decisions.as_ref().map(|d| d.upstream().clone());
        return match (upstream, endpoint) {
            (Some(up), ScmEndpoint::InfoRefs) => push::advertise(&shared, &up, &id, req).await,
            (Some(up), ScmEndpoint::Rpc(_)) => push::receive(&shared, &up, &id, req).await,
            (None, endpoint) => push::refuse(&shared, &id, endpoint),
        };
    }
    let proto = git_protocol(req.headers());
    let version = proto.as_deref().map(pktline::protocol_version).unwrap_or(0);
    let log = |kind| ServeLog {
        shared: shared.shared.clone(),
        repo: id.to_string(),
        kind,
        protocol: version,
        client: peer.to_string(),
    };
    let target = Target {
        shared: &shared,
        id: &id,
        path: &repo_path,
        key: &key,
    };
    let mut response = match endpoint {
        ScmEndpoint::InfoRefs => match cached_advertisement(&target, version).await {
            Some(r) => {
                shared.metrics.advertisement("memory");
                r
            }
            None => {
                shared.metrics.advertisement("git");
                advertise(
                    &shared,
                    &repo_path,
                    proto.as_deref(),
                    version,
                    log("info_refs"),
                )
                .await
            }
        },
        ScmEndpoint::Rpc(_) => {
            rpc(&target, proto.as_deref(), version, req, log("upload_pack")).await
        }
    };
    if let Some(c) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// The repository a request is served from, and the ref state it serves.
struct Target<'a> {
    shared: &'a Arc<Serving>,
    id: &'a crate::names::RepoId,
    path: &'a std::path::Path,
    key: &'a str,
}

impl Target<'_> {
    async fn advertised(&self) -> Option<Arc<crate::serve::refs_cache::Advertised>> {
        match self.shared.refs.get(self.id, self.path, self.key).await {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(error = %e, "ref advertisement cache unavailable; asking git");
                None
            }
        }
    }
}

/// `info/refs` from memory for protocol v0 and v2 (v1 is left to git).
async fn cached_advertisement(t: &Target<'_>, version: u32) -> Option<Response> {
    if version == 1 {
        return None;
    }
    let a = t.advertised().await?;
    let body = if version == 2 {
        a.v2_caps.clone()
    } else {
        let mut p = pktline::pkt("# service=git-upload-pack\n");
        p.extend_from_slice(pktline::FLUSH);
        p.extend_from_slice(&a.v0);
        bytes::Bytes::from(p)
    };
    t.shared
        .metrics
        .served("http", "info_refs", body.len() as u64);
    Some(git_response(
        "application/x-git-upload-pack-advertisement",
        Body::from(body),
    ))
}

/// 503 for a request that found no place for a git process.
fn busy(shared: &Serving, e: crate::serve::processes::Busy) -> Response {
    shared.metrics.busy();
    unavailable(e.to_string(), "5")
}

async fn advertise(
    shared: &Serving,
    repo: &std::path::Path,
    proto: Option<&str>,
    version: u32,
    log: ServeLog,
) -> Response {
    let place = match shared.processes.acquire().await {
        Ok(p) => p,
        Err(e) => return busy(shared, e),
    };
    let child = match upload_pack::spawn(repo, Mode::Advertise, Exposure::Clients, proto) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start git: {e}"),
            )
        }
    };
    let prefix = if version == 2 {
        Vec::new()
    } else {
        let mut p = pktline::pkt("# service=git-upload-pack\n");
        p.extend_from_slice(pktline::FLUSH);
        p
    };
    let stream = match ServedStream::from_child(child, log, prefix.len() as u64, Some(place)) {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let head =
        futures_util::stream::once(
            async move { Ok::<_, std::io::Error>(bytes::Bytes::from(prefix)) },
        );
    let body = Body::from_stream(futures_util::StreamExt::chain(head, stream));
    git_response("application/x-git-upload-pack-advertisement", body)
}

async fn rpc(
    t: &Target<'_>,
    proto: Option<&str>,
    version: u32,
    req: Request,
    log: ServeLog,
) -> Response {
    let repo = t.path;
    let gzip = match upload_pack::rpc_headers(req.headers()) {
        Ok(g) => g,
        Err((status, why)) => return text(status, why),
    };
    let limit = t.shared.config.serve_max_request;
    let mut input = upload_pack::request_input(req.into_body(), gzip, limit);
    let mut raw = Vec::new();
    let deadline = tokio::time::Instant::now() + t.shared.config.body_timeout;
    if version == 2 {
        // An ls-refs command is answered from memory; anything else goes on, replayed whole.
        let peek = crate::serve::v2_request::peek_ls_refs(&mut input, &mut raw);
        let peeked = match tokio::time::timeout_at(deadline, peek).await {
            Ok(p) => p,
            Err(_) => return body_refused(t.shared, BodyError::Slow),
        };
        if let Ok(Some(args)) = peeked {
            if let Some(a) = t.advertised().await {
                let body = a.ls_refs_cached(&args);
                t.shared
                    .metrics
                    .served("http", "ls_refs", body.len() as u64);
                t.shared.metrics.advertisement("memory");
                return git_response("application/x-git-upload-pack-result", Body::from(body));
            }
        }
    }
    // The request is read whole, by server.bodyTimeout and within mirror.serve.maxRequestSize
    // (before git starts: a slow client holds no process): its framing is checked (a malformed
    // one gets 400 naming the problem, not an empty answer git reports as a broken connection),
    // and small ones are answered by the pack cache.
    if let Err(e) = read_body(&mut input, &mut raw, deadline).await {
        return body_refused(t.shared, e);
    }
    if let Some(problem) = crate::pktline::framing_error(&raw) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("malformed git request: {problem}"),
        );
    }
    if t.shared.packs.enabled() && raw.len() <= CACHEABLE_REQUEST {
        match t
            .shared
            .packs
            .serve(t.id, t.key, repo, proto, raw.clone(), &t.shared.processes)
            .await
        {
            Ok((stream, outcome)) => {
                t.shared.metrics.pack_cache(outcome.label());
                let source = match outcome {
                    crate::serve::pack_cache::Outcome::Hit => "cache",
                    crate::serve::pack_cache::Outcome::Shared => "cache-shared",
                    crate::serve::pack_cache::Outcome::Miss => "git-cached",
                };
                let body = Body::from_stream(LoggedStream::new(stream, log, source));
                return git_response("application/x-git-upload-pack-result", body);
            }
            Err(crate::serve::pack_cache::ServeError::Busy(e)) => return busy(t.shared, e),
            Err(crate::serve::pack_cache::ServeError::NoRoom) => {
                tracing::debug!("the pack cache's disk is nearly full; serving without it")
            }
            Err(crate::serve::pack_cache::ServeError::Io(e)) => {
                tracing::warn!(error = %e, "pack cache unavailable; serving without it")
            }
        }
    }
    let place = match t.shared.processes.acquire().await {
        Ok(p) => p,
        Err(e) => return busy(t.shared, e),
    };
    let input: Box<dyn AsyncRead + Send + Unpin> = Box::new(std::io::Cursor::new(raw));
    let child =
        match upload_pack::spawn_fed(repo, Exposure::Clients, proto, input, log.repo.clone()) {
            Ok(c) => c,
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot start git: {e}"),
                )
            }
        };
    match ServedStream::from_child(child, log, 0, Some(place)) {
        Ok(stream) => git_response(
            "application/x-git-upload-pack-result",
            Body::from_stream(stream),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn git_response(content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    no_cache(r.headers_mut());
    r
}
