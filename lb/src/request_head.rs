//! Reading a request head on the LB's own HTTP/1.1 front: whether it can take the fast path (a
//! GET or HEAD without a body, for the farm's host, a path it forwards), and otherwise how many of
//! the buffered bytes are this request's for pingora (head and body as far as they can be told
//! apart: all of them for a chunked or ambiguous one, or a head too large or malformed, which
//! pingora answers). A pure function of the bytes, so its property tests need no connection.

use mirrorfarm_common::session;

use crate::rules::{self, Admission};

/// Longest request head read here; a longer one goes to pingora (which refuses it).
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Most headers a request read here may have; more go to pingora.
pub const MAX_HEADERS: usize = 64;

/// A request the fast path takes.
#[derive(Debug)]
pub struct FastHead {
    /// Bytes of its head (it has no body).
    pub used: usize,
    /// The head as sent to a node.
    pub request: Vec<u8>,
    /// A HEAD request.
    pub head_only: bool,
    /// The node route its session cookie names.
    pub cookie_route: Option<String>,
    /// `Connection: close`.
    pub close: bool,
    /// Its target.
    pub path: String,
}

/// What the buffered bytes hold.
#[derive(Debug)]
pub enum Framing {
    /// Not a whole head yet.
    Partial,
    /// Pingora's: this many of the buffered bytes are this request's.
    Pingora(usize),
    /// The fast path's.
    Fast(FastHead),
}

/// Frames the request at the start of `buf` for the farm `hostname`; `build` writes the head a
/// node gets (method, target, the client's headers).
pub fn frame(
    buf: &[u8],
    hostname: &str,
    build: impl FnOnce(&[u8], &[u8], &[httparse::Header<'_>]) -> Vec<u8>,
) -> Framing {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => return Framing::Partial,
        _ => return Framing::Pingora(buf.len()),
    };
    let mut body_len = Some(0usize);
    let (mut lengths, mut chunked) = (0u32, false);
    let (mut host, mut hosts, mut close, mut cookie_route, mut fast) = (None, 0, false, None, true);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = std::str::from_utf8(h.value).ok();
        } else if name.eq_ignore_ascii_case("content-length") {
            // A second Content-Length, or one beside Transfer-Encoding (in either order),
            // is ambiguous: every buffered byte goes to pingora, which refuses it.
            lengths += 1;
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|_| lengths == 1 && !chunked);
            fast &= body_len == Some(0);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
            body_len = None;
            fast = false;
        } else if name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("expect") {
            fast = false;
        } else if name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            fast &= !v.contains("upgrade");
            close |= v.contains("close");
        } else if name.eq_ignore_ascii_case("cookie") && cookie_route.is_none() {
            cookie_route = std::str::from_utf8(h.value)
                .ok()
                .and_then(session::route_in_cookie_header)
                .map(str::to_owned);
        }
    }
    let whole = body_len.map_or(buf.len(), |n| used.saturating_add(n));
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Framing::Pingora(whole);
    };
    let head_only = method == "HEAD";
    fast &= method == "GET" || head_only;
    // Anything but a forward (another host, a node-only path) is pingora's to refuse.
    fast &= path.starts_with('/') && hosts == 1;
    let path_only = path.split_once('?').map_or(path, |(p, _)| p);
    fast &= rules::admit(host, path_only, hostname) == Admission::Forward;
    if !fast {
        return Framing::Pingora(whole);
    }
    let request = build(method.as_bytes(), path.as_bytes(), req.headers);
    Framing::Fast(FastHead {
        used,
        request,
        head_only,
        cookie_route,
        close,
        path: path.to_owned(),
    })
}
