//! The gate's answers as HTTP: 401 with `WWW-Authenticate: Basic realm="<setup.displayName>"`,
//! 404 exactly as for a repository not mirrored, 503 while the upstream cannot be asked; and the
//! session cookie of a request that authenticated.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use mirrorfarm_common::session;

use crate::access::Admission;
use crate::names::RepoId;
use crate::serve::reply::{text, unavailable};
use crate::serve::Serving;

/// The 404 of a repository that is not mirrored (or that the caller may not know about).
pub fn not_mirrored(id: &RepoId) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("repository {id} is not mirrored here"),
    )
}

/// 401 asking for Basic credentials in this farm's realm.
pub fn unauthorized(serving: &Serving, msg: String) -> Response {
    let mut r = text(StatusCode::UNAUTHORIZED, msg);
    let realm = serving.config.display_name.replace(['"', '\\'], "'");
    if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// A request the gate let through (with the cookie to set, if any), or the answer refusing it.
pub enum Gated {
    /// Serve it; set this cookie on the answer.
    Serve(Option<HeaderValue>),
    /// Answer with this.
    Refuse(Response),
}

/// The gate's word as HTTP.
pub fn gated(serving: &Serving, id: &RepoId, a: Admission) -> Gated {
    match a {
        Admission::Allowed { new_session } => {
            Gated::Serve(new_session.and_then(|s| cookie(serving, &s)))
        }
        Admission::Unauthorized(msg) => Gated::Refuse(unauthorized(serving, msg)),
        Admission::NotFound => Gated::Refuse(not_mirrored(id)),
        Admission::Unavailable(msg) => Gated::Refuse(unavailable(msg, "30")),
    }
}

/// `Set-Cookie` for session part `session` with this node's route.
pub fn cookie(serving: &Serving, session: &str) -> Option<HeaderValue> {
    let secure = if serving.config.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={session}.{}; Path=/; HttpOnly; SameSite=Lax{secure}",
        session::COOKIE,
        serving.gate.route
    ))
    .ok()
}
