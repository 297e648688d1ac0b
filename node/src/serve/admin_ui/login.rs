//! Logging in to the admin page: `GET /admin/login` (the form), `POST /admin/login` (upstream
//! user name and password of a `mirror.admins` user — see [`super::upstream_login`] — or the
//! admin token), `POST /admin/logout`. A login is a
//! new session with an admin grant ([`crate::access::sessions::ADMIN_GRANT`]).

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::html::{esc, page, respond, see_other};
use super::{viewer, Viewer};
use crate::serve::app_state::AppState;
use crate::serve::Serving;

/// The user a login with the admin token is recorded as.
pub const TOKEN_USER: &str = "admin-token";

/// How long a login lasts at most (the session also ends after `server.session.timeout` unused).
pub const LOGIN_TTL_MS: i64 = 8 * 3600 * 1000;

/// The login form's fields.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    token: String,
}

/// The login form, with `message` (an error) above it.
fn form_page(s: &Serving, status: StatusCode, message: &str) -> Response {
    let error = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=error role=alert>{}</p>", esc(message))
    };
    let upstream = if s.config.admins.is_empty() {
        "<p>No upstream user is an admin here (<code>mirror.admins</code> is not set): log in with \
         the admin token.</p>"
            .to_owned()
    } else {
        "<p>Admins (<code>mirror.admins</code>) log in with their upstream user name and password; \
         or with the admin token.</p>"
            .to_owned()
    };
    let body = format!(
        "<div class=login><section><h2>Log in</h2>{error}{upstream}\
<form method=post action=\"/admin/login\">\
<label for=username>Upstream user name</label><input id=username name=username autocomplete=username>\
<label for=password>Password</label><input id=password name=password type=password autocomplete=current-password>\
<p><button type=submit>Log in</button></p></form>\
<form method=post action=\"/admin/login\">\
<label for=token>Admin token (<code>mirror.admin.tokenFile</code>)</label>\
<input id=token name=token type=password autocomplete=off>\
<p><button type=submit>Log in with the token</button></p></form></section></div>"
    );
    let mut r = respond(status, page("mirrorfarm admin", "", &body));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mirrorfarm admin\""),
        );
    }
    r
}

/// The login form for a viewer who may not see the page (401 for nobody, 403 for a non-admin).
pub fn refused(s: &Serving, who: &Viewer) -> Response {
    match who {
        Viewer::NotAdmin { user } => form_page(
            s,
            StatusCode::FORBIDDEN,
            &format!("{user} is not an admin of this farm (mirror.admins): log in as an admin"),
        ),
        _ => form_page(s, StatusCode::UNAUTHORIZED, ""),
    }
}

/// `GET /admin/login`.
pub async fn form(State(s): State<AppState>) -> Response {
    form_page(&s.shared, StatusCode::OK, "")
}

/// Whether a form came from a page of this site: its `Origin` (browsers send one with every POST)
/// names the host it was sent to. Scripts that send none are let through: the token or the
/// password is what counts then.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    matches!((origin_host, host), (Some(o), Some(h)) if bare(o).eq_ignore_ascii_case(bare(h)))
}

/// A host without its port (the LB's `X-Forwarded-Host` has none; a browser's `Origin` has it
/// when it is not the scheme's).
fn bare(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `POST /admin/login`.
pub async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let s = &s.shared;
    if !same_origin(&headers) {
        return form_page(
            s,
            StatusCode::FORBIDDEN,
            "this form was sent from another site",
        );
    }
    let user = if !f.token.trim().is_empty() {
        match &s.config.admin_token {
            Some(t) if t.matches(&f.token) => TOKEN_USER.to_owned(),
            _ => {
                tracing::warn!("admin login with a wrong token");
                return form_page(s, StatusCode::UNAUTHORIZED, "wrong admin token");
            }
        }
    } else {
        match super::upstream_login::check(s, f.username.trim(), &f.password).await {
            Ok(user) => user,
            Err(super::upstream_login::Refusal(status, message)) => {
                return form_page(s, status, &message)
            }
        }
    };
    let now = crate::store::now_ms();
    let Some(session) = s.gate.sessions.start_admin(&user, now + LOGIN_TTL_MS, now) else {
        return form_page(
            s,
            StatusCode::SERVICE_UNAVAILABLE,
            "too many sessions: try again later",
        );
    };
    tracing::info!(user = %user, "admin logged in");
    let mut r = see_other("/admin");
    if let Some(c) = crate::serve::http_access::cookie(s, &session) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// The logout form's fields.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /admin/logout`: ends the session on every member.
pub async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Response {
    let s = &s.shared;
    let who = viewer(s, &headers);
    let Viewer::Admin { user, session } = &who else {
        return refused(s, &who);
    };
    if !s.admin_csrf.check(session, &f.csrf) {
        return form_page(
            s,
            StatusCode::FORBIDDEN,
            "the form was stale or forged: log out again",
        );
    }
    s.gate.sessions.remove(session, crate::store::now_ms());
    tracing::info!(user = %user, "admin logged out");
    let mut r = see_other("/admin/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("BITBUCKETSESSIONID=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn forms_from_another_site_are_told_apart() {
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[
            ("origin", "https://farm:8443"),
            ("host", "farm:8443")
        ])));
        assert!(same_origin(&headers(&[
            ("origin", "https://farm:8443"),
            ("host", "10.0.0.2:7990"),
            ("x-forwarded-host", "farm"),
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "https://evil"),
            ("host", "farm")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "null"),
            ("host", "farm")
        ])));
    }
}
