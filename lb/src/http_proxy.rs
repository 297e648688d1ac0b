//! The HTTPS front: requests for the farm hostname are proxied to a node over plain HTTP with
//! `X-Forwarded-*` headers; a `BITBUCKETSESSIONID` cookie keeps a client on the node that issued it
//! while that node is healthy; other requests go to the least-loaded healthy node; a failed
//! connect is retried on another node at once. Node-only endpoints are not forwarded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mirrorfarm_common::session;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::backends::{Backend, Backends, InFlight};

/// Paths the LB keeps from the world (nodes serve them on their own listeners only).
pub const NODE_ONLY_PREFIXES: &[&str] = &["/rest/mirroring/", "/metrics"];

/// The proxy logic.
pub struct FarmProxy {
    /// The nodes.
    pub backends: Arc<Backends>,
    /// `lb.hostname`.
    pub hostname: String,
    /// Metrics.
    pub metrics: Arc<crate::metrics::LbMetrics>,
    /// This worker's kept-alive connections for requests without a body.
    pub pool: crate::upstream_get::Pool,
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    in_flight: Option<InFlight>,
    tried: Vec<SocketAddr>,
}

fn host_matches(host: &str, hostname: &str) -> bool {
    let host = host.trim();
    let bare = match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    bare.eq_ignore_ascii_case(hostname)
}

impl FarmProxy {
    /// Picks the node for this request: the one its cookie names while healthy, else the least
    /// loaded healthy one not tried yet; counts the request as in flight on it.
    fn choose(&self, session: &Session, ctx: &mut RequestCtx) -> Result<Arc<Backend>> {
        let route = session
            .req_header()
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session::route_in_cookie_header)
            .map(str::to_owned);
        let sticky = route
            .as_deref()
            .and_then(|r| self.backends.by_route(r))
            .filter(|b| !ctx.tried.contains(&b.addr.http));
        let backend = match sticky {
            Some(b) => b,
            None => self
                .backends
                .least_loaded(false, &ctx.tried)
                .ok_or_else(|| {
                    Error::explain(ErrorType::HTTPStatus(503), "no healthy mirror node")
                })?,
        };
        ctx.tried.push(backend.addr.http);
        ctx.in_flight = Some(InFlight::new(backend.clone(), false));
        Ok(backend)
    }

    /// A node could not be reached: out of rotation until it passes checks; whether another
    /// node is left to try.
    fn unreachable(&self, ctx: &mut RequestCtx, why: &dyn std::fmt::Display) -> bool {
        if let Some(f) = ctx.in_flight.take() {
            if f.backend().set_healthy(false) {
                tracing::warn!(backend = %f.backend().addr.label, error = %why, "cannot connect to node; out of rotation until it passes checks");
            }
        }
        ctx.tried.len() < self.backends.all().len()
    }

    /// The request head sent to a node for a request without a body.
    fn bodiless_head(&self, session: &Session) -> Vec<u8> {
        let req = session.req_header();
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(req.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(
            req.uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .as_bytes(),
        );
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut host = None;
        let mut xff = None;
        for (name, value) in req.headers.iter() {
            match name.as_str() {
                "host" => host = Some(value.as_bytes()),
                "x-forwarded-for" => xff = value.to_str().ok().filter(|v| !v.is_empty()),
                "x-forwarded-proto" | "x-forwarded-host" => {}
                n if crate::upstream_get::hop_by_hop(n) => {}
                n => {
                    out.extend_from_slice(n.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(host.unwrap_or(self.hostname.as_bytes()));
        out.extend_from_slice(b"\r\nX-Forwarded-For: ");
        if let Some(prev) = xff {
            out.extend_from_slice(prev.as_bytes());
            out.extend_from_slice(b", ");
        }
        if let Some(a) = session.client_addr().and_then(|a| a.as_inet()) {
            use std::io::Write;
            let _ = write!(out, "{}", a.ip());
        }
        out.extend_from_slice(b"\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: ");
        out.extend_from_slice(self.hostname.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out
    }

    /// Forwards a request without a body on this worker's own connections (see
    /// [`crate::upstream_get`]), trying another node when one cannot be reached.
    async fn forward_bodiless(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let head_only = session.req_header().method == http::Method::HEAD;
        let request = self.bodiless_head(session);
        loop {
            let backend = self.choose(session, ctx)?;
            let outcome = crate::upstream_get::forward(
                session,
                &self.pool,
                backend.addr.http,
                &request,
                head_only,
            )
            .await?;
            match outcome {
                crate::upstream_get::Outcome::Done => return Ok(true),
                crate::upstream_get::Outcome::Unreachable(e) => {
                    if !self.unreachable(ctx, &e) {
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(502),
                            format!("no mirror node reachable: {e}"),
                        ));
                    }
                }
            }
        }
    }

    async fn refuse(session: &mut Session, code: u16, message: &str) -> Result<bool> {
        let mut resp = ResponseHeader::build(code, Some(3))?;
        resp.insert_header("Content-Type", "text/plain; charset=utf-8")?;
        resp.insert_header("Content-Length", (message.len() + 1).to_string())?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from(format!("{message}\n"))), true)
            .await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for FarmProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let req = session.req_header();
        let host_ok = match req.headers.get("host").and_then(|h| h.to_str().ok()) {
            Some(h) => host_matches(h, &self.hostname),
            None => req
                .uri
                .authority()
                .is_some_and(|a| host_matches(a.as_str(), &self.hostname)),
        };
        if !host_ok {
            return Self::refuse(
                session,
                421,
                &format!("this server only answers for {}", self.hostname),
            )
            .await;
        }
        let path = req.uri.path();
        if NODE_ONLY_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Self::refuse(session, 404, "not found").await;
        }
        let bodiless = (req.method == http::Method::GET || req.method == http::Method::HEAD)
            && req
                .headers
                .get("content-length")
                .is_none_or(|v| v.as_bytes() == b"0")
            && req.headers.get("transfer-encoding").is_none()
            && !session.is_upgrade_req();
        if bodiless {
            return self.forward_bodiless(session, ctx).await;
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let backend = self.choose(session, ctx)?;
        let mut peer = HttpPeer::new(backend.addr.http, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(3));
        peer.options.total_connection_timeout = Some(Duration::from_secs(5));
        // A clone of a large repository may spend minutes counting objects between writes.
        peer.options.read_timeout = Some(Duration::from_secs(600));
        peer.options.write_timeout = Some(Duration::from_secs(600));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if self.unreachable(ctx, peer) {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let xff = match upstream
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.is_empty() => format!("{prev}, {client}"),
            _ => client,
        };
        upstream.insert_header("X-Forwarded-For", xff)?;
        upstream.insert_header("X-Forwarded-Proto", "https")?;
        upstream.insert_header("X-Forwarded-Host", self.hostname.as_str())?;
        if upstream.headers.get("host").is_none() {
            upstream.insert_header("Host", self.hostname.as_str())?;
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let backend = ctx
            .in_flight
            .as_ref()
            .map(|f| f.backend().addr.label.as_str())
            .unwrap_or_default();
        self.metrics.request(backend, status);
        if let Some(e) = e {
            tracing::warn!(path = %session.req_header().uri.path(), status, backend, error = %e, "request failed");
        } else {
            tracing::debug!(path = %session.req_header().uri.path(), status, backend, "request");
        }
        ctx.in_flight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_matching() {
        assert!(host_matches("git.example.com", "git.example.com"));
        assert!(host_matches("Git.Example.com:8443", "git.example.com"));
        assert!(!host_matches("evil.com", "git.example.com"));
        assert!(!host_matches("git.example.com.evil.com", "git.example.com"));
        assert!(!host_matches("", "git.example.com"));
    }
}
