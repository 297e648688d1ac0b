//! The farm's admin page at `/admin`: who may see it ([`viewer`]), the login
//! ([`login`]), the page ([`page`]) and its actions ([`actions`]). Admins are the users of
//! `mirror.admins`, logged in with their upstream credentials, and holders of the admin token
//! (the login form, or `Authorization: Bearer` for scripts). A login is a session with an admin
//! grant: replicated like every session, so any member of the farm shows the page to it.

pub mod actions;
pub mod csrf;
pub mod html;
pub mod login;
pub mod page;
pub mod plots;
pub mod projects;
pub mod repos;
pub mod upstream_login;
pub mod words;

use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;

use crate::serve::app_state::AppState;
use crate::serve::Serving;

/// Who is looking at the admin page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A script with `Authorization: Bearer <admin token>` (no cookie: no CSRF to fear).
    Token,
    /// A logged-in admin: `user`, whose session is `session` (the cookie's session part).
    Admin {
        /// Who.
        user: String,
        /// The session, for CSRF tokens and logout.
        session: String,
    },
    /// A live session without an admin grant (a git user who is not an admin).
    NotAdmin {
        /// Who.
        user: String,
    },
    /// Nobody known.
    Anonymous,
}

impl Viewer {
    /// Whether the page and its actions are open to it.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Token | Self::Admin { .. })
    }

    /// Who, in words.
    pub fn name(&self) -> &str {
        match self {
            Self::Token => login::TOKEN_USER,
            Self::Admin { user, .. } | Self::NotAdmin { user } => user,
            Self::Anonymous => "nobody",
        }
    }
}

/// Tells the viewer from the request headers.
pub fn viewer(s: &Serving, headers: &HeaderMap) -> Viewer {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t);
    if let (Some(t), Some(b)) = (s.config.admin_token.as_ref(), bearer) {
        if t.matches(b) {
            return Viewer::Token;
        }
    }
    let now = crate::store::now_ms();
    let mut not_admin = None;
    for (session, _) in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(mirrorfarm_common::session::sessions_in_cookie_header)
    {
        if let Some(user) = s.gate.sessions.admin_of(session, now) {
            // Still an admin: one taken out of mirror.admins loses the page at once.
            let listed = user == login::TOKEN_USER || s.config.admins.contains(&user);
            if listed {
                return Viewer::Admin {
                    user,
                    session: session.to_owned(),
                };
            }
            not_admin = Some(Viewer::NotAdmin { user });
            continue;
        }
        if let Some(user) = s.gate.sessions.user_of(session, now) {
            not_admin = Some(Viewer::NotAdmin { user });
        }
    }
    not_admin.unwrap_or(Viewer::Anonymous)
}

/// The admin page's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(page::show))
        .route("/admin/login", get(login::form).post(login::submit))
        .route("/admin/logout", post(login::logout))
        .route("/admin/sync", post(actions::sync))
        .route("/admin/projects", post(projects::change))
        .route("/admin/projects.json", get(projects::json))
        .route(html::CSS_PATH, get(html::css))
        .route(html::JS_PATH, get(html::js))
}
