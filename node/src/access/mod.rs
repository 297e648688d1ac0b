//! Who may read and push: credentials checked with the upstream's own smart-HTTP endpoint
//! ([`upstream_check`]), the decisions cached ([`decisions`]), sessions for those who
//! authenticated ([`sessions`]). Serving asks [`Gate::admit`]; nothing here knows HTTP routes.

pub mod credential;
pub mod decisions;
pub mod sessions;
pub mod upstream_check;

use crate::config::{Access, Config, SessionMode};
use crate::names::RepoId;
use credential::{Credential, CredentialError, CredentialHasher};
use decisions::{Decisions, Outcome};
use sessions::{Sessions, Standing};

/// What the gate says of a read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Serve it. `new_session`: the session part of a cookie to set.
    Allowed {
        /// A session issued (or carried over to this node) by this request.
        new_session: Option<String>,
    },
    /// No usable credentials or session: 401 with this message.
    Unauthorized(String),
    /// The upstream says no (or has no such repository): answered as a repository not mirrored.
    NotFound,
    /// The upstream cannot be asked and nothing cached covers the request.
    Unavailable(String),
}

/// The access checks of a node.
pub struct Gate {
    /// `mirror.access`.
    pub access: Access,
    /// Hashes credentials with the farm's key.
    pub hasher: CredentialHasher,
    /// Cached upstream decisions (`None`: no auth URL, anonymous mode).
    pub decisions: Option<Decisions>,
    /// Sessions.
    pub sessions: Sessions,
    /// `mirror.auth.cacheTtl`: how long a grant recorded in a session lasts.
    grant_ttl_ms: i64,
    /// This node's route (the cookie's suffix).
    pub route: String,
}

/// Why the gate could not be set up.
pub type GateError = upstream_check::ClientError;

impl Gate {
    /// The gate for `config`.
    pub fn new(config: &Config, node_id: &str) -> Result<Self, GateError> {
        let a = &config.auth;
        let decisions = upstream_check::Upstream::new(a)?
            .map(|u| Decisions::new(u, a.cache_ttl, a.offline_ttl));
        let replicated = config.farm.is_some() && a.sessions == SessionMode::Replicated;
        Ok(Self {
            access: config.access,
            hasher: CredentialHasher::new(config.farm.as_ref().map(|f| f.secret.as_str())),
            decisions,
            sessions: Sessions::new(a.session_timeout, replicated),
            grant_ttl_ms: a.cache_ttl.as_millis() as i64,
            route: mirrorfarm_common::session::route_of_node(node_id),
        })
    }

    /// The credential of a request.
    pub fn credential(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Option<Credential>, CredentialError> {
        self.hasher.credential(headers)
    }

    /// Decides a read of `repo` by a request with these headers.
    pub async fn admit(
        &self,
        headers: &axum::http::HeaderMap,
        repo: &RepoId,
        metrics: &crate::metrics::NodeMetrics,
    ) -> Admission {
        if self.access == Access::Anonymous {
            return Admission::Allowed { new_session: None };
        }
        let now = crate::store::now_ms();
        let cookie_sessions: Vec<(String, bool)> = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(mirrorfarm_common::session::sessions_in_cookie_header)
            .map(|(s, route)| (s.to_owned(), route == self.route))
            .collect();
        let mut session_user: Option<(String, String)> = None;
        for (s, ours) in &cookie_sessions {
            match self.sessions.standing(s, repo, now) {
                // A session issued by another member (which failed over, or with stickiness off)
                // is carried over: the same session, with this node's route.
                Standing::Granted { .. } => {
                    return Admission::Allowed {
                        new_session: (!ours).then(|| s.clone()),
                    }
                }
                Standing::NoGrant { user } => session_user = Some((s.clone(), user)),
                Standing::None => {}
            }
        }
        let cred = match self.credential(headers) {
            Ok(Some(c)) => c,
            Ok(None) if session_user.is_some() => {
                return Admission::Unauthorized(
                    "your session does not cover this repository (or its grant expired): \
                     authenticate again"
                        .into(),
                )
            }
            Ok(None) => return Admission::Unauthorized("authentication required".into()),
            Err(e) => return Admission::Unauthorized(e.to_string()),
        };
        let Some(decisions) = &self.decisions else {
            return Admission::Unavailable("no upstream to check credentials with".into());
        };
        match decisions.decide(&cred, repo, metrics).await {
            // Read on a cached grant while the upstream is away: nothing new to record.
            Outcome::Granted { offline: true, .. } => Admission::Allowed { new_session: None },
            Outcome::Granted { decided_ms, .. } => {
                let session = session_user
                    .as_ref()
                    .filter(|(_, u)| *u == cred.user)
                    .map(|(s, _)| s.as_str());
                let new_session = self.sessions.grant(
                    session,
                    cred.key,
                    &cred.user,
                    repo,
                    decided_ms + self.grant_ttl_ms,
                    now,
                );
                Admission::Allowed { new_session }
            }
            Outcome::BadCredentials => {
                Admission::Unauthorized("the upstream refused these credentials".into())
            }
            Outcome::NoAccess => Admission::NotFound,
            Outcome::Unavailable(why) => Admission::Unavailable(format!(
                "cannot check your credentials with the upstream right now ({why}); try again shortly"
            )),
        }
    }
}
