//! A node's HTTP/1.1 response head as the LB reads it: parsed with httparse, its bytes kept, the
//! body's framing decided, hop-by-hop headers left out; given on as pingora's response header or,
//! by the HTTP/1.1 front, as bytes.

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::Result;

use crate::rules::hop_by_hop;

/// A 502 for a node's bad or missing answer.
pub(crate) fn upstream_error(what: &str, e: impl std::fmt::Display) -> Box<pingora::Error> {
    pingora::Error::explain(pingora::ErrorType::HTTPStatus(502), format!("{what}: {e}"))
}

/// How the response body is delimited.
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A node's response head: its bytes as received and the headers passed on.
pub struct Head {
    /// The status code.
    pub code: u16,
    raw: Bytes,
    /// The status line's end in `raw` (before its CRLF).
    status_end: usize,
    /// Name and value ranges in `raw` of the headers passed on (not hop-by-hop).
    kept: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

impl Head {
    fn kept(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.kept
            .iter()
            .map(|(n, v)| (&self.raw[n.clone()], &self.raw[v.clone()]))
    }

    /// Whether the node says another member may answer this request instead (a 503 carrying
    /// [`mirrorfarm_common::elsewhere::HEADER`]).
    pub fn elsewhere(&self) -> bool {
        self.code == 503
            && self.kept().any(|(n, _)| {
                n.eq_ignore_ascii_case(mirrorfarm_common::elsewhere::HEADER.as_bytes())
            })
    }

    /// The head as pingora's response header (chunked bodies are framed again by pingora).
    pub fn to_response_header(&self) -> Result<ResponseHeader> {
        let mut response = ResponseHeader::build(self.code, Some(self.kept.len() + 1))?;
        for (name, value) in self.kept() {
            let name = http::HeaderName::from_bytes(name)
                .map_err(|e| upstream_error("bad header name from node", e))?;
            let value = http::HeaderValue::from_bytes(value)
                .map_err(|e| upstream_error("bad header value from node", e))?;
            response.append_header(name, value)?;
        }
        if matches!(self.framing, Framing::Chunked) {
            response.insert_header("transfer-encoding", "chunked")?;
        }
        Ok(response)
    }

    /// Whether an HTTP/1.1 client gets this body chunked (a body the node delimits by closing
    /// is chunked too, so the client's connection stays reusable).
    pub fn chunked_to_client(&self) -> bool {
        matches!(self.framing, Framing::Chunked | Framing::UntilClose)
    }

    /// Appends the head as sent to an HTTP/1.1 client: the node's status line and headers,
    /// without hop-by-hop ones, and `close` when the client's connection ends after it.
    pub fn write_http11(&self, out: &mut Vec<u8>, close: bool) {
        out.extend_from_slice(b"HTTP/1.1");
        let line = &self.raw[..self.status_end];
        // "HTTP/1.x SP code SP reason": keep from the first space on.
        let from = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
        out.extend_from_slice(&line[from..]);
        out.extend_from_slice(b"\r\n");
        for (name, value) in self.kept() {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if self.chunked_to_client() {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses the response head at the start of `buf`; when it is complete, splits it off (the
/// body's first bytes stay in `buf`). `None` while it is not.
pub(crate) fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(&buf[..]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(upstream_error("bad response from node", e)),
    };
    let code = r.code.unwrap_or(502);
    if (100..200).contains(&code) {
        return Err(upstream_error("node answered", "an interim (1xx) response"));
    }
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let mut kept = Vec::with_capacity(r.headers.len());
    // HTTP/1.0 closes unless asked to keep alive; HTTP/1.1 keeps alive unless asked to close.
    let (mut length, mut chunked, mut close) = (None, false, r.version == Some(0));
    for h in r.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|e| upstream_error("bad content-length from node", e))?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
        if !hop_by_hop(h.name) {
            kept.push((range(h.name.as_bytes()), range(h.value)));
        }
    }
    let framing = if head_only || code == 204 || code == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(l) = length {
        // A chunked body's length header is dropped (RFC 9112 6.3); here it frames the body.
        Framing::Length(l)
    } else {
        Framing::UntilClose
    };
    if chunked {
        kept.retain(|(name, _)| !buf[name.clone()].eq_ignore_ascii_case(b"content-length"));
    }
    let keep_alive = !close && !matches!(framing, Framing::UntilClose);
    // The status line ends at the head's first LF (a bare LF is accepted, as httparse does).
    let status_end = buf[..n]
        .iter()
        .position(|b| *b == b'\n')
        .map(|i| {
            if i > 0 && buf[i - 1] == b'\r' {
                i - 1
            } else {
                i
            }
        })
        .unwrap_or(0);
    Ok(Some(Head {
        code,
        raw: buf.split_to(n).freeze(),
        status_end,
        kept,
        framing,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lf_heads_are_passed_on_without_panicking() {
        // A node answering with bare LFs (httparse accepts them): the status line ends at the LF.
        let mut wire = BytesMut::from(&b"HTTP/1.1 200 OK\nContent-Length: 3\n\nx\r\n"[..]);
        let h = parse_head(&mut wire, false)
            .expect("parses")
            .expect("complete");
        let mut out = Vec::new();
        h.write_http11(&mut out, false);
        assert!(
            out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn response_heads_parse_with_framing_and_without_hop_by_hop_headers() {
        let mut wire = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nSet-Cookie: a=b\r\n\r\nhello"[..],
        );
        let h = parse_head(&mut wire, false)
            .expect("parses")
            .expect("complete");
        assert_eq!(&wire[..], b"hello", "the body's first bytes stay behind");
        assert!(matches!(h.framing, Framing::Length(5)));
        assert!(h.keep_alive);
        let response = h.to_response_header().expect("header");
        assert!(response.headers.get("connection").is_none());
        assert_eq!(
            response.headers.get("set-cookie").map(|v| v.as_bytes()),
            Some(&b"a=b"[..])
        );
        let mut out = Vec::new();
        h.write_http11(&mut out, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\n\r\n"
        );
        let h = parse_head(
            &mut BytesMut::from(&b"HTTP/1.0 200 Fine\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nX: y\r\n\r\n"[..]),
            false,
        )
        .expect("parses")
        .expect("complete");
        assert!(matches!(h.framing, Framing::Chunked));
        let mut out = Vec::new();
        h.write_http11(&mut out, true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 Fine\r\nX: y\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let h = parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"[..]),
            false,
        )
        .expect("parses")
        .expect("complete");
        assert!(matches!(h.framing, Framing::UntilClose));
        assert!(!h.keep_alive);
        let h = parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"[..]),
            false,
        )
        .expect("parses")
        .expect("complete");
        assert!(matches!(h.framing, Framing::Empty));
        assert!(parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]),
            false
        )
        .expect("parses")
        .is_none());
        assert!(parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]),
            false
        )
        .is_err());
        assert!(parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..]),
            false
        )
        .is_err());
    }
}
