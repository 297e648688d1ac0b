//! Push webhooks: each forge's signature checked against `mirror.webhook.secretFile` in constant
//! time, then the event read for what it means to the farm: a repository's refs changed (sync
//! it), or the upstream's repositories changed (list them again).
//!
//! Signatures, as each forge documents them (tests/fixtures/forges/README.md):
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`;
//! - Gitea / Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>` (and
//!   `X-Hub-Signature-256` as GitHub's);
//! - GitLab: `X-Gitlab-Token: <the secret>`;
//! - Bitbucket Data Center: `X-Hub-Signature: sha256=<hex HMAC-SHA256>`.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::names::RepoId;
use crate::secrets::Secret;

/// The largest webhook body read (GitHub caps its payloads at 25 MB, but a push's is a few KB;
/// a larger body is refused before it is read).
pub const MAX_BODY: usize = 1 << 20;

/// What a verified event asks of the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The refs of this repository (`PROJECT/repo` as the forge names it) changed.
    RefsChanged(String),
    /// Repositories were created, deleted, renamed or moved: list the upstream again.
    Relist,
    /// A ping, or an event the farm has nothing to do with (its name, for the answer).
    Ignored(String),
}

/// Why a request is not a verified event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No signature header of any forge.
    #[error("no webhook signature (X-Hub-Signature-256, X-Gitea-Signature, X-Gitlab-Token or X-Hub-Signature)")]
    Unsigned,
    /// A signature that does not match.
    #[error("the webhook signature does not match mirror.webhook.secretFile's secret")]
    BadSignature,
    /// Signed, but not JSON of a known shape.
    #[error("not a webhook payload this farm reads: {0}")]
    Payload(String),
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn hmac_hex_matches(secret: &Secret, body: &[u8], hex: &str) -> bool {
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let mut m = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    m.update(body);
    // `verify_slice` compares in constant time.
    m.verify_slice(&expected).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn equal_constant_time(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    // Compare digests: the time depends on neither the content nor the length of the secret.
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Checks the request's signature against `secret`, whichever forge's header it carries.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &Secret) -> Result<(), Refused> {
    let hub = |name| header(headers, name).and_then(|v| v.strip_prefix("sha256="));
    let signed = if let Some(sig) = hub("x-hub-signature-256").or_else(|| hub("x-hub-signature")) {
        hmac_hex_matches(secret, body, sig)
    } else if let Some(sig) =
        header(headers, "x-gitea-signature").or_else(|| header(headers, "x-forgejo-signature"))
    {
        hmac_hex_matches(secret, body, sig)
    } else if let Some(token) = header(headers, "x-gitlab-token") {
        equal_constant_time(token.as_bytes(), secret.expose().as_bytes())
    } else {
        return Err(Refused::Unsigned);
    };
    if signed {
        Ok(())
    } else {
        Err(Refused::BadSignature)
    }
}

#[derive(Deserialize)]
struct Named {
    full_name: String,
}

#[derive(Deserialize)]
struct HubPayload {
    #[serde(default)]
    action: Option<String>,
    repository: Option<Named>,
}

#[derive(Deserialize)]
struct GitlabProject {
    path_with_namespace: String,
}

#[derive(Deserialize)]
struct GitlabPayload {
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    object_kind: Option<String>,
    #[serde(default)]
    project: Option<GitlabProject>,
    #[serde(default)]
    path_with_namespace: Option<String>,
}

#[derive(Deserialize)]
struct BitbucketProject {
    key: String,
}

#[derive(Deserialize)]
struct BitbucketRepo {
    slug: String,
    project: BitbucketProject,
}

#[derive(Deserialize)]
struct BitbucketPayload {
    repository: BitbucketRepo,
}

fn payload<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| Refused::Payload(e.to_string()))
}

/// Reads a verified event.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Event, Refused> {
    let gitea = header(headers, "x-gitea-event").or_else(|| header(headers, "x-forgejo-event"));
    if let Some(event) = gitea.or_else(|| header(headers, "x-github-event")) {
        return match event {
            "push" | "create" | "delete" => {
                let p: HubPayload = payload(body)?;
                let repo = p
                    .repository
                    .ok_or_else(|| Refused::Payload("no repository".into()))?;
                Ok(Event::RefsChanged(repo.full_name))
            }
            "repository" => {
                let p: HubPayload = payload(body)?;
                Ok(match p.action.as_deref() {
                    Some("created" | "deleted" | "renamed" | "transferred") => Event::Relist,
                    other => Event::Ignored(format!("repository {}", other.unwrap_or("?"))),
                })
            }
            other => Ok(Event::Ignored(other.to_owned())),
        };
    }
    if let Some(event) = header(headers, "x-gitlab-event") {
        let p: GitlabPayload = payload(body)?;
        let kind = p
            .event_name
            .clone()
            .or(p.object_kind.clone())
            .unwrap_or_default();
        return Ok(match kind.as_str() {
            "push" | "tag_push" | "repository_update" => match (p.project, p.path_with_namespace) {
                (Some(project), _) => Event::RefsChanged(project.path_with_namespace),
                (None, Some(path)) => Event::RefsChanged(path),
                (None, None) => return Err(Refused::Payload("no project".into())),
            },
            "project_create" | "project_destroy" | "project_rename" | "project_transfer"
            | "group_rename" | "group_destroy" => Event::Relist,
            _ => Event::Ignored(format!("{event}: {kind}")),
        });
    }
    if let Some(event) = header(headers, "x-event-key") {
        return match event {
            "repo:refs_changed" => {
                let p: BitbucketPayload = payload(body)?;
                Ok(Event::RefsChanged(format!(
                    "{}/{}",
                    p.repository.project.key, p.repository.slug
                )))
            }
            "repo:modified" | "repo:forked" => Ok(Event::Relist),
            other => Ok(Event::Ignored(other.to_owned())),
        };
    }
    Err(Refused::Payload(
        "no event header (X-GitHub-Event, X-Gitea-Event, X-Gitlab-Event or X-Event-Key)".into(),
    ))
}

/// The mirrored repository a forge's name means: exactly, else ignoring ASCII case (forges
/// treat names so; Bitbucket's keys are upper case, its URLs lower).
pub fn resolve<'a>(name: &str, mirrored: impl IntoIterator<Item = &'a RepoId>) -> Option<RepoId> {
    let name = name.strip_suffix(".git").unwrap_or(name);
    let mut folded = None;
    for id in mirrored {
        let s = id.to_string();
        if s == name {
            return Some(id.clone());
        }
        if folded.is_none() && s.eq_ignore_ascii_case(name) {
            folded = Some(id.clone());
        }
    }
    folded
}

/// The `X-Hub-Signature-256` value of `body` under `secret` (for notices this farm sends).
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    m.update(body);
    let bytes = m.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
