//! Which failed requests the LB sends to another node: reads only (a push is never sent twice),
//! and only failures before the node answered.

use pingora::http::RequestHeader;
use pingora::{Error, ErrorType};

/// Whether a request only reads (a fetch's POST is as safe to send again as a GET; a push is
/// not).
pub fn is_read(req: &RequestHeader) -> bool {
    req.method == http::Method::GET
        || req.method == http::Method::HEAD
        || (req.method == http::Method::POST && req.uri.path().ends_with("/git-upload-pack"))
}

/// Whether `e` is the node closing or resetting the connection (not a timeout, not the client).
pub fn dropped_by_node(e: &Error) -> bool {
    *e.esource() == pingora::ErrorSource::Upstream
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_drops() {
        let req = |m: &str, p: &str| RequestHeader::build(m, p.as_bytes(), None).expect("head");
        assert!(is_read(&req("GET", "/scm/P/r.git/info/refs")));
        assert!(is_read(&req("POST", "/scm/P/r.git/git-upload-pack")));
        assert!(!is_read(&req("POST", "/scm/P/r.git/git-receive-pack")));
        let up = |t: ErrorType| Error::new(t).into_up();
        assert!(dropped_by_node(&up(ErrorType::ConnectionClosed)));
        assert!(dropped_by_node(&up(ErrorType::ReadError)));
        assert!(
            !dropped_by_node(&up(ErrorType::ReadTimedout)),
            "a slow node is not a drop"
        );
        assert!(
            !dropped_by_node(&Error::new(ErrorType::ConnectionClosed).into_down()),
            "the client closing is not the node dropping"
        );
    }
}
