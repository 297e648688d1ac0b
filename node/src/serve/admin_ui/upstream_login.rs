//! Checking an admin's upstream user name and password. Only a `mirror.admins` user is checked
//! at all (the others are refused before anything is asked: no password oracle, no lockouts of
//! their upstream accounts). The upstream must guard the repository asked (401 without
//! credentials), accept the password (200: 403 or 404 say nothing — bans and firewalls answer
//! so too), and refuse the same secret under another user name — or, when it takes the secret
//! under any name (a forge's personal access token), its forge's API must say the secret is that
//! user's ([`crate::forge::owner`]); otherwise it cannot tell who logs in. Five failures for a user within five minutes hold its
//! logins for five minutes.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use base64::Engine;
use parking_lot::Mutex;

use crate::access::upstream_check::{CheckError, Upstream, Verdict};
use crate::forge::owner::Owner;
use crate::names::RepoId;
use crate::serve::Serving;

/// Failures that hold a user's logins.
const MAX_FAILURES: u32 = 5;
/// Over this long, and for this long.
const WINDOW_MS: i64 = 5 * 60 * 1000;
/// How many mirrored repositories are asked whether the upstream guards them, at most.
const PROBES: usize = 5;

/// Why a login was refused: the status and what the form says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub StatusCode, pub String);

/// The logins' memory: recent failures per user, and a repository the upstream guards.
#[derive(Default)]
pub struct Logins {
    failures: Mutex<HashMap<String, (u32, i64)>>,
    guarded: Mutex<Option<RepoId>>,
}

impl Logins {
    /// Whether `user`'s logins are held now.
    fn held(&self, user: &str, now: i64) -> bool {
        let mut f = self.failures.lock();
        f.retain(|_, (_, first)| now - *first < WINDOW_MS);
        f.get(user).is_some_and(|(n, _)| *n >= MAX_FAILURES)
    }

    fn failed(&self, user: &str, now: i64) {
        let mut f = self.failures.lock();
        if f.len() > 10_000 {
            f.clear();
        }
        let e = f.entry(user.to_owned()).or_insert((0, now));
        e.0 += 1;
    }

    fn succeeded(&self, user: &str) {
        self.failures.lock().remove(user);
    }
}

fn basic(
    hasher: &crate::access::credential::CredentialHasher,
    user: &str,
    password: &str,
) -> Option<crate::access::credential::Credential> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {b64}")).ok()?,
    );
    hasher.credential(&h).ok().flatten()
}

/// A repository the upstream guards (remembered once found).
async fn guarded(s: &Serving, upstream: &Upstream) -> Result<Option<RepoId>, CheckError> {
    let known = s.admin_logins.guarded.lock().clone();
    // Only while it is still mirrored (one gone upstream would answer 404 to every password).
    if let Some(r) = known.filter(|r| s.repos.read().contains_key(r)) {
        return Ok(Some(r));
    }
    let repos: Vec<RepoId> = s.repos.read().keys().take(PROBES).cloned().collect();
    for repo in repos {
        if upstream.demands_credentials(&repo).await? {
            *s.admin_logins.guarded.lock() = Some(repo.clone());
            return Ok(Some(repo));
        }
    }
    Ok(None)
}

/// The upstream takes `secret` under any user name: the login stands only if the forge says the
/// secret is `user`'s.
async fn owned_by(s: &Serving, user: &str, secret: &str, now: i64) -> Result<(), Refusal> {
    let any_name = || {
        tracing::warn!(user = %user, "admin login refused: the upstream takes this secret under any user name");
        Refusal(
            StatusCode::FORBIDDEN,
            "the upstream accepts this secret under any user name (a token?) and its API cannot \
             be asked whose it is, so it cannot tell who you are: log in with your password, or \
             with the admin token"
                .into(),
        )
    };
    let Some(forge) = s.inventory.forge() else {
        return Err(any_name());
    };
    match forge.owner_of(secret).await {
        Ok(Owner::User(owner)) if owner.eq_ignore_ascii_case(user) => Ok(()),
        Ok(Owner::User(owner)) => {
            s.admin_logins.failed(user, now);
            tracing::warn!(user = %user, owner = %owner, "admin login refused: the forge says the token is another user's");
            Err(Refusal(
                StatusCode::FORBIDDEN,
                format!("the upstream says this token is not {user}'s: log in with your own"),
            ))
        }
        Ok(Owner::Refused) => {
            s.admin_logins.failed(user, now);
            tracing::warn!(user = %user, "admin login refused: the forge's API does not take the token");
            Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "the upstream's API does not take this token: use one that may read your user \
                 (GitHub, Gitea: any; GitLab: read_user or api scope)"
                    .into(),
            ))
        }
        Ok(Owner::NotAsked) => Err(any_name()),
        Err(e) => {
            tracing::warn!(error = %e, "admin login: the forge's API cannot be asked");
            Err(Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the upstream's API cannot say whose this token is now ({e}): try again, or use the admin token"),
            ))
        }
    }
}

/// Checks `user`'s upstream password; the user, or why not.
pub async fn check(s: &Serving, user: &str, password: &str) -> Result<String, Refusal> {
    let refuse = |status, msg: &str| Err(Refusal(status, msg.to_owned()));
    if user.is_empty() || password.is_empty() {
        return refuse(StatusCode::UNAUTHORIZED, "give a user name and a password");
    }
    if !s.config.admins.iter().any(|a| a == user) {
        tracing::warn!(user = %user, "admin login refused: not in mirror.admins");
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("{user} is not an admin of this farm (mirror.admins)"),
        );
    }
    let now = crate::store::now_ms();
    if s.admin_logins.held(user, now) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many failed logins for {user}: try again in a few minutes, or use the admin token"),
        );
    }
    let Some(upstream) = s.gate.decisions.as_ref().map(|d| d.upstream()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this node cannot check upstream passwords (no plugin.mirroring.upstream.auth.url): \
             log in with the admin token",
        );
    };
    let unavailable = |e: CheckError| {
        tracing::warn!(error = %e, "admin login: the upstream cannot be asked");
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the upstream cannot check passwords now ({e}): try again, or use the admin token"
            ),
        )
    };
    let Some(repo) = guarded(s, upstream).await.map_err(unavailable)? else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the upstream reads the mirrored repositories without credentials, so it cannot tell \
             who you are: log in with the admin token",
        );
    };
    let wrong = || {
        s.admin_logins.failed(user, now);
        tracing::warn!(user = %user, "admin login: the upstream did not accept the password");
        Refusal(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password (or no read access to the mirrored repositories)".into(),
        )
    };
    let Some(cred) = basic(&s.gate.hasher, user, password) else {
        return Err(wrong());
    };
    if upstream.check(&cred, &repo).await.map_err(unavailable)? != Verdict::Granted {
        return Err(wrong());
    }
    // The same secret under a name nobody has: an upstream that takes it names nobody.
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).expect("the OS random source is available");
    let nobody: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let other = basic(
        &s.gate.hasher,
        &format!("mirrorfarm-nobody-{nobody}"),
        password,
    );
    if let Some(other) = other {
        if upstream.check(&other, &repo).await.map_err(unavailable)? == Verdict::Granted {
            owned_by(s, user, password, now).await?;
        }
    }
    s.admin_logins.succeeded(user);
    Ok(user.to_owned())
}
