//! `GET /rest/mirroring/latest/repos/<PROJECT>/<repo>/generation[?after=N&wait=S]`: the farm
//! generation of a repository's served state and its refs hash, `{"generation": N, "refsHash":
//! "…"}`. With `after`, a long poll: the answer comes as soon as the generation is above `after`,
//! or when `wait` seconds (default 30, at most 60) are over, with the generation then (a caller
//! compares). A CI job reads the generation, pushes, then waits for `after=<it>`. The repository's
//! read rules apply (credentials or a session in authenticated mode; 404 as for git otherwise).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::config::Access;
use crate::names::RepoId;
use crate::serve::http_access::{gated, not_mirrored, Gated};
use crate::serve::Serving;

/// The longest wait a caller may ask for.
const MAX_WAIT: u64 = 60;
/// The wait when `after` is given without `wait`.
const DEFAULT_WAIT: u64 = 30;

/// The query (other parameters, such as a cache buster, are ignored).
#[derive(Debug, serde::Deserialize)]
pub struct GenerationQuery {
    after: Option<u64>,
    wait: Option<u64>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Generation {
    generation: u64,
    refs_hash: String,
}

/// The served generation of `id`, if it is mirrored (0 until a state is served).
fn current(serving: &Serving, id: &RepoId) -> Option<Generation> {
    let repos = serving.repos.read();
    let e = repos.get(id)?;
    if e.record.last_result == Some(crate::store::SyncResult::NotFound) {
        return None;
    }
    Some(Generation {
        generation: if e.servable() { e.record.generation } else { 0 },
        refs_hash: e.record.refs_hash.clone(),
    })
}

/// Parses `<PROJECT>/<repo>[.git]/generation`.
fn repo_of(rest: &str) -> Option<RepoId> {
    let path = rest.strip_suffix("/generation")?;
    if path.contains(['%', '\\']) || path.contains("//") {
        return None;
    }
    RepoId::parse(path).ok()
}

/// Handles one request.
pub async fn generation(
    State(s): State<Arc<Serving>>,
    Path(rest): Path<String>,
    Query(q): Query<GenerationQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = repo_of(&rest) else {
        return (
            StatusCode::NOT_FOUND,
            "expected /rest/mirroring/latest/repos/<PROJECT>/<repo>/generation\n",
        )
            .into_response();
    };
    let mut cookie = None;
    if s.config.access == Access::Authenticated {
        match gated(&s, &id, s.gate.admit(&headers, &id, &s.metrics).await) {
            Gated::Serve(c) => cookie = c,
            Gated::Refuse(r) => return r,
        }
    }
    let Some(mut now) = current(&s, &id) else {
        return not_mirrored(&id);
    };
    if let Some(after) = q.after {
        let wait = Duration::from_secs(q.wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT));
        let deadline = tokio::time::Instant::now() + wait;
        let mut stopping = s.stopping.clone();
        while now.generation <= after && !*stopping.borrow() {
            let changed = s.served_changed.notified();
            tokio::pin!(changed);
            // Registered before the check below, so a flip in between is not missed.
            changed.as_mut().enable();
            match current(&s, &id) {
                Some(g) if g.generation > after => {
                    now = g;
                    break;
                }
                Some(g) => now = g,
                None => return not_mirrored(&id),
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stopping.changed() => break,
            }
        }
        if let Some(g) = current(&s, &id) {
            now = g;
        }
    }
    let mut r = Json(now).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    if let Some(c) = cookie {
        r.headers_mut().insert(axum::http::header::SET_COOKIE, c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_repository() {
        assert_eq!(
            repo_of("PROJ/repo/generation")
                .map(|i| i.to_string())
                .as_deref(),
            Some("PROJ/repo")
        );
        assert_eq!(
            repo_of("PROJ/repo.git/generation")
                .map(|i| i.to_string())
                .as_deref(),
            Some("PROJ/repo")
        );
        for bad in [
            "PROJ/repo",
            "PROJ/../x/generation",
            "PROJ/%2e/generation",
            "generation",
        ] {
            assert!(repo_of(bad).is_none(), "{bad}");
        }
    }
}
