//! Who may use the admin routes (the sync trigger, `/metrics`, the full `/status`): the node's own
//! host, or a caller presenting `Authorization: Bearer <mirror.admin.tokenFile's token>`. A request
//! relayed by a proxy on the node's host (it carries `X-Forwarded-For`, as the LB's do) is not the
//! host's own.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::AdminToken;
use crate::serve::Serving;

/// What a caller may see and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A process on the node's own host, talking to it directly.
    OwnHost,
    /// Anyone who presented the admin token.
    Admin,
    /// Anyone else.
    Other,
}

impl Caller {
    /// Whether the admin routes are open to it.
    pub fn is_admin(self) -> bool {
        self != Self::Other
    }
}

/// Headers by which a proxy says it relayed a request (the LB always sends `X-Forwarded-For`).
const RELAYED: [&str; 4] = ["x-forwarded-for", "forwarded", "x-real-ip", "via"];

/// Tells the caller from the client address and the request headers.
pub fn caller(peer: SocketAddr, headers: &HeaderMap, token: Option<&AdminToken>) -> Caller {
    let relayed = RELAYED.iter().any(|h| headers.contains_key(*h));
    if peer.ip().to_canonical().is_loopback() && !relayed {
        return Caller::OwnHost;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    match (token, bearer) {
        (Some(t), Some(b)) if t.matches(b) => Caller::Admin,
        _ => Caller::Other,
    }
}

/// Lets through admin callers only (401 with `WWW-Authenticate: Bearer` otherwise).
pub async fn require_admin(
    State(s): State<std::sync::Arc<Serving>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if caller(peer, req.headers(), s.config.admin_token.as_ref()).is_admin() {
        return next.run(req).await;
    }
    let mut r = (
        StatusCode::UNAUTHORIZED,
        "this route needs the admin token (Authorization: Bearer …, see mirror.admin.tokenFile)\n",
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mirrorfarm admin\""),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_told_apart() {
        let local = SocketAddr::from(([127, 0, 0, 1], 5000));
        let remote = SocketAddr::from(([192, 0, 2, 7], 5000));
        let token = AdminToken::new("admin-token-0123456789");
        let mut h = HeaderMap::new();
        assert_eq!(caller(local, &h, Some(&token)), Caller::OwnHost);
        assert_eq!(caller(remote, &h, Some(&token)), Caller::Other);
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        assert_eq!(
            caller(local, &h, Some(&token)),
            Caller::Other,
            "relayed by a local proxy"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer admin-token-0123456789"),
        );
        assert_eq!(caller(local, &h, Some(&token)), Caller::Admin);
        assert_eq!(
            caller(remote, &h, None),
            Caller::Other,
            "no token configured"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong"),
        );
        assert_eq!(caller(remote, &h, Some(&token)), Caller::Other);
    }
}
