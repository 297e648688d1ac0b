//! Git objects between members: smart HTTP on the farm channel, advertising the state this node
//! staged (hidden from clients until the farm flips), so followers stage a leader's new state
//! before anyone advertises it. Only member nodes are served. Between a sync's stage and flip, a
//! member's fetch costs one `git upload-pack` (the one sending objects): the ref advertisement
//! (protocol v0), or the capability advertisement and `ls-refs` (v2), are written from memory
//! ([`crate::staged_refs`]).

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::farm::channel::{require_node, Channel, Peer, Refusal};
use crate::names::RepoId;
use crate::pktline;
use crate::serve::{v0_advert, v2_request};
use crate::upload_pack::{self, ChildStream, Exposure, Mode};
use tokio::io::AsyncReadExt;

/// Query of `info/refs`.
#[derive(Debug, serde::Deserialize)]
pub struct InfoRefsQuery {
    service: Option<String>,
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    Refusal(status, msg.into()).into_response()
}

/// The mirror a member asks for: a node's certificate, a mirrored repository.
fn target(
    c: &Channel,
    peer: &Peer,
    project: &str,
    repo: &str,
) -> Result<(RepoId, std::path::PathBuf), Refusal> {
    require_node(peer)?;
    let id = repo
        .strip_suffix(".git")
        .and_then(|r| RepoId::parse(&format!("{project}/{r}")).ok())
        .ok_or_else(|| Refusal(StatusCode::BAD_REQUEST, "bad repository path".into()))?;
    let shared = &c.farm.shared;
    let known = shared
        .repos
        .read()
        .get(&id)
        .is_some_and(|e| e.record.generation > 0 || e.staged.is_some());
    if !known {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("{id} is not held here"),
        ));
    }
    let path = shared.repo_path(&id);
    Ok((id, path))
}

fn git_protocol(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("git-protocol")?.to_str().ok()?;
    pktline::protocol_value_ok(v).then(|| v.to_owned())
}

fn git_response(content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn stream(mut child: tokio::process::Child, label: String) -> Result<ChildStream, Refusal> {
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(upload_pack::log_stderr(stderr, label));
    }
    ChildStream::new(child).map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET …/info/refs?service=git-upload-pack`.
pub async fn info_refs(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Path((project, repo)): Path<(String, String)>,
    Query(q): Query<InfoRefsQuery>,
    headers: HeaderMap,
) -> Response {
    let (id, path) = match target(&c, &peer, &project, &repo) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if q.service.as_deref() != Some("git-upload-pack") {
        return text(
            StatusCode::FORBIDDEN,
            "only git-upload-pack is served between members",
        );
    }
    let proto = git_protocol(&headers);
    let v2 = proto.as_deref().map(pktline::protocol_version) == Some(2);
    let shared = &c.farm.shared;
    // v2's capabilities name no ref: git's own, kept.
    if v2 {
        match shared.staged_refs.caps(&path).await {
            Ok(caps) => {
                return git_response(
                    "application/x-git-upload-pack-advertisement",
                    Body::from(caps),
                )
            }
            Err(e) => {
                tracing::warn!(repo = %id, error = %e, "cannot read git's capabilities: git advertises")
            }
        }
    }
    let mut prefix = Vec::new();
    if !v2 {
        prefix = pktline::pkt("# service=git-upload-pack\n");
        prefix.extend_from_slice(pktline::FLUSH);
    }
    // A v0 advertisement of a state staged here is written from memory.
    if proto
        .as_deref()
        .is_none_or(|p| pktline::protocol_version(p) == 0)
    {
        if let Some(list) = shared.staged_refs.get(&id) {
            match shared.staged_refs.v0_caps(&path).await {
                Ok(caps) => {
                    shared.metrics.advertisement("farm_memory");
                    prefix.extend(v0_advert::advertisement(&list, caps));
                    return git_response(
                        "application/x-git-upload-pack-advertisement",
                        Body::from(prefix),
                    );
                }
                Err(e) => {
                    tracing::warn!(repo = %id, error = %e, "cannot read git's capabilities: git advertises")
                }
            }
        }
        shared.metrics.advertisement("farm_git");
    }
    let child = match upload_pack::spawn(&path, Mode::Advertise, Exposure::Staged, proto.as_deref())
    {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start git: {e}"),
            )
        }
    };
    let out = match stream(child, format!("{project}/{repo} (farm)")) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let head =
        futures_util::stream::once(
            async move { Ok::<_, std::io::Error>(bytes::Bytes::from(prefix)) },
        );
    git_response(
        "application/x-git-upload-pack-advertisement",
        Body::from_stream(futures_util::StreamExt::chain(head, out)),
    )
}

/// `POST …/git-upload-pack`.
pub async fn upload_pack(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Path((project, repo)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (id, path) = match target(&c, &peer, &project, &repo) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let headers = req.headers();
    let gzip = match upload_pack::rpc_headers(headers) {
        Ok(g) => g,
        Err((status, why)) => return text(status, why),
    };
    let proto = git_protocol(headers);
    let v2 = proto.as_deref().map(pktline::protocol_version) == Some(2);
    let shared = &c.farm.shared;
    let mut input = upload_pack::request_input(
        req.into_body(),
        gzip,
        c.farm.shared.config.serve_max_request,
    );
    if v2 {
        // An `ls-refs` of a state staged here is answered from memory; anything else goes on to
        // git, replayed whole.
        let mut raw = Vec::new();
        let peek = v2_request::peek_ls_refs(&mut input, &mut raw);
        let peeked = tokio::time::timeout(shared.config.body_timeout, peek).await;
        if let Ok(Ok(Some(args))) = peeked {
            if let Some(list) = shared.staged_refs.get(&id) {
                shared.metrics.advertisement("farm_memory");
                return git_response(
                    "application/x-git-upload-pack-result",
                    Body::from(list.ls_refs_cached(&args)),
                );
            }
            shared.metrics.advertisement("farm_git");
        }
        input = Box::new(std::io::Cursor::new(raw).chain(input));
    }
    let label = format!("{project}/{repo} (farm)");
    let child =
        match upload_pack::spawn_fed(&path, Exposure::Staged, proto.as_deref(), input, label) {
            Ok(c) => c,
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot start git: {e}"),
                )
            }
        };
    match stream(child, format!("{project}/{repo} (farm)")) {
        Ok(out) => git_response(
            "application/x-git-upload-pack-result",
            Body::from_stream(out),
        ),
        Err(r) => r.into_response(),
    }
}
