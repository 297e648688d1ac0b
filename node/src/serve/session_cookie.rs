//! Issues the `BITBUCKETSESSIONID` cookie, with this node's route, to clients that have none (or
//! one naming another node, after a fail-over), so the load balancer can keep them on one node.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use mirrorfarm_common::session;

/// What the middleware needs to know.
#[derive(Clone, Debug)]
pub struct CookieSettings {
    /// This node's route.
    pub route: String,
    /// Mark the cookie `Secure` (the base URL is https).
    pub secure: bool,
}

/// The axum middleware.
pub async fn issue(State(settings): State<CookieSettings>, req: Request, next: Next) -> Response {
    let cookies: Vec<String> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let ours = cookies
        .iter()
        .any(|c| session::route_in_cookie_header(c) == Some(settings.route.as_str()));
    let mut resp = next.run(req).await;
    // A response that sets the cookie itself (an admin's login) keeps its own.
    let sets_own = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with(&format!("{}=", session::COOKIE)));
    if !ours && !sets_own {
        let mut random = [0u8; 16];
        getrandom::getrandom(&mut random).expect("the OS random source is available");
        let value = session::new_value(&random, &settings.route);
        let secure = if settings.secure { "; Secure" } else { "" };
        let cookie = format!("{}={value}; Path=/; HttpOnly{secure}", session::COOKIE);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}
