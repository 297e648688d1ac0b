//! The stand-in forge's users: their SSH keys and what they may read, answered with each forge's
//! documented shapes (tests/fixtures/forges): GitLab's key by fingerprint and project membership,
//! GitHub Enterprise's key list, users by ID and collaborator permission, Gitea's users, their
//! keys and collaborator permission, Bitbucket's users, their SSH keys and the permission search.

use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::forge_standin::{bitbucket_page, decode, first, fixture, link_page, Inner, Kind};

/// A user of the stand-in forge.
pub(crate) struct User {
    pub(crate) login: String,
    pub(crate) id: u64,
    /// An OpenSSH public key line.
    pub(crate) key: String,
    /// `PROJECT/repo`s it may read.
    pub(crate) reads: Vec<String>,
}

impl User {
    fn blob(&self) -> &str {
        self.key.split_whitespace().nth(1).unwrap_or_default()
    }

    /// `SHA256:` and the unpadded base64 of the key blob's SHA-256, as OpenSSH prints it.
    fn fingerprint(&self) -> String {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.blob())
            .unwrap_or_default();
        let digest = Sha256::digest(&raw);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    fn may_read(&self, repo: &str) -> bool {
        self.reads.iter().any(|r| r == repo)
    }
}

fn query_str<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn not_found() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(json!({"message": "404 Not found"})),
    )
        .into_response()
}

fn json(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// `/repos/{owner}/{repo}/collaborators/{user}/permission` → (`owner/repo`, user).
fn collaborator_path(rest: &str) -> Option<(String, String)> {
    let r = rest.strip_prefix("/repos/")?.strip_suffix("/permission")?;
    let (repo, user) = r.split_once("/collaborators/")?;
    Some((decode(repo), decode(user)))
}

/// Answers a users/keys/permissions request, or `None` when `rest` is not one.
pub(crate) fn answer(s: &Inner, rest: &str, query: &str) -> Option<Response> {
    match s.kind {
        Kind::Gitlab => gitlab(s, rest, query),
        Kind::Github => github(s, rest, query),
        Kind::Gitea => gitea(s, rest, query),
        Kind::Bitbucket => bitbucket(s, rest, query),
    }
}

fn gitlab(s: &Inner, rest: &str, query: &str) -> Option<Response> {
    if rest == "/keys" {
        let fp = decode(query_str(query, "fingerprint").unwrap_or_default());
        let Some(u) = s.users.iter().find(|u| u.fingerprint() == fp) else {
            return Some(not_found());
        };
        let mut v = fixture("gitlab/keys_by_fingerprint.json");
        v["key"] = json!(u.key);
        // The documented example's key expired in 2020.
        v["expires_at"] = Value::Null;
        v["user"]["id"] = json!(u.id);
        v["user"]["username"] = json!(u.login);
        return Some(json(v));
    }
    let r = rest.strip_prefix("/projects/")?;
    let (project, user_id) = r.split_once("/members/all/")?;
    let project = decode(project);
    let user = s.users.iter().find(|u| u.id.to_string() == user_id);
    Some(match user.filter(|u| u.may_read(&project)) {
        Some(u) => {
            let mut v = fixture("gitlab/project_member_all.json");
            v["id"] = json!(u.id);
            v["username"] = json!(u.login);
            v["access_level"] = json!(20);
            json(v)
        }
        None => not_found(),
    })
}

fn permission(s: &Inner, rest: &str, file: &str) -> Option<Response> {
    let (repo, login) = collaborator_path(rest)?;
    let user = s.users.iter().find(|u| u.login == login);
    let mut v = fixture(file);
    v["permission"] = json!(if user.is_some_and(|u| u.may_read(&repo)) {
        "read"
    } else {
        "none"
    });
    v["user"]["login"] = json!(login);
    Some(json(v))
}

fn github(s: &Inner, rest: &str, query: &str) -> Option<Response> {
    let path = format!("{}{rest}", "/api/v3");
    if rest == "/admin/keys" {
        let t = first(fixture("github/ghes_admin_keys.json"));
        let items = s
            .users
            .iter()
            .map(|u| {
                let mut k = t.clone();
                k["key"] = json!(u.key);
                k["user_id"] = json!(u.id);
                k["id"] = json!(u.id * 10);
                k
            })
            .collect();
        return Some(link_page(items, query, s, &path));
    }
    if let Some(id) = rest.strip_prefix("/user/") {
        let u = s.users.iter().find(|u| u.id.to_string() == id);
        // The documented "Get a user" answer carries far more; a client reads `login`.
        return Some(match u {
            Some(u) => json(json!({"login": u.login, "id": u.id, "type": "User"})),
            None => not_found(),
        });
    }
    permission(s, rest, "github/collaborator_permission.json")
}

fn gitea(s: &Inner, rest: &str, query: &str) -> Option<Response> {
    let path = format!("{}{rest}", "/api/v1");
    let template = first(fixture("gitea/user_keys.json"));
    if rest == "/admin/users" {
        let items = s
            .users
            .iter()
            .map(|u| {
                let mut v = template["user"].clone();
                v["login"] = json!(u.login);
                v["id"] = json!(u.id);
                v
            })
            .collect();
        return Some(link_page(items, query, s, &path));
    }
    if let Some(login) = rest
        .strip_prefix("/users/")
        .and_then(|r| r.strip_suffix("/keys"))
    {
        let items = s
            .users
            .iter()
            .filter(|u| u.login == decode(login))
            .map(|u| {
                let mut k = template.clone();
                k["key"] = json!(u.key);
                k["fingerprint"] = json!(u.fingerprint());
                k["user"]["login"] = json!(u.login);
                k
            })
            .collect();
        return Some(link_page(items, query, s, &path));
    }
    permission(s, rest, "gitea/collaborator_permission.json")
}

fn bitbucket(s: &Inner, rest: &str, query: &str) -> Option<Response> {
    let user_of = |u: &User| {
        let mut v = first(fixture("bitbucket/admin_users.json"));
        v["name"] = json!(u.login);
        v["slug"] = json!(u.login);
        v["id"] = json!(u.id);
        v
    };
    match rest {
        "/rest/api/1.0/admin/users" => Some(bitbucket_page(
            s.users.iter().map(user_of).collect(),
            query,
            s.page_size,
        )),
        "/rest/ssh/1.0/keys" => {
            let who = decode(query_str(query, "user").unwrap_or_default());
            let t = first(fixture("bitbucket/ssh_keys.json"));
            let keys = s
                .users
                .iter()
                .filter(|u| u.login == who)
                .map(|u| {
                    let mut k = t.clone();
                    k["text"] = json!(u.key);
                    k
                })
                .collect();
            Some(bitbucket_page(keys, query, s.page_size))
        }
        "/rest/api/1.0/users" => {
            let filter = decode(query_str(query, "filter").unwrap_or_default());
            let repo = format!(
                "{}/{}",
                decode(query_str(query, "permission.projectKey").unwrap_or_default()),
                decode(query_str(query, "permission.repositorySlug").unwrap_or_default())
            );
            let asked_read = query_str(query, "permission") == Some("REPO_READ");
            let found = s
                .users
                .iter()
                .filter(|u| u.login.contains(&filter) && asked_read && u.may_read(&repo))
                .map(user_of)
                .collect();
            Some(bitbucket_page(found, query, s.page_size))
        }
        _ => None,
    }
}

/// `GET <prefix>/user` with a user's personal token: that user, in the forge's documented shape
/// (GitHub and Gitea `login`, GitLab `username`); 401 for a token that is nobody's. `None` for
/// any other request, or one with the farm's own token.
pub(crate) fn own_user(s: &Inner, headers: &axum::http::HeaderMap, path: &str) -> Option<Response> {
    if path != format!("{}/user", s.kind.prefix())
        || crate::forge_standin::authorized(s.kind, headers, &s.token)
    {
        return None;
    }
    let owner = s
        .personal
        .iter()
        .find(|(t, _)| crate::forge_standin::authorized(s.kind, headers, t));
    let Some((_, login)) = owner else {
        return Some(
            (
                axum::http::StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": "Bad credentials"})),
            )
                .into_response(),
        );
    };
    Some(json(match s.kind {
        Kind::Github => {
            let mut v = fixture("github/user.json");
            v["login"] = json!(login);
            v
        }
        Kind::Gitlab => {
            let mut v = fixture("gitlab/user.json");
            v["username"] = json!(login);
            v
        }
        Kind::Gitea => {
            let mut v = fixture("gitea/user.json");
            v["login"] = json!(login);
            v["username"] = json!(login);
            v
        }
        Kind::Bitbucket => return Some(not_found()),
    }))
}
