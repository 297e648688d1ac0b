//! Plain answers the HTTP handlers share: a text body, a 503 with `Retry-After` (marked for
//! another member to answer, where one may), and the headers
//! that keep caches from storing a git answer.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// 503 with `Retry-After` (seconds).
pub fn unavailable(message: String, retry_after: &'static str) -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    r
}

/// Marks a 503 as one another farm member may answer instead (the LB then sends it there);
/// `why` is [`mirrorfarm_common::elsewhere::WITHHELD`] or `NOT_READY`.
pub fn elsewhere(mut r: Response, why: &'static str) -> Response {
    r.headers_mut().insert(
        mirrorfarm_common::elsewhere::HEADER,
        HeaderValue::from_static(why),
    );
    r
}

/// A plain-text answer.
pub fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut body = msg.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Headers telling caches not to keep a git answer.
pub fn no_cache(h: &mut HeaderMap) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Fri, 01 Jan 1980 00:00:00 GMT"),
    );
}
