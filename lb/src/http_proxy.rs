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

use crate::backends::{Backends, InFlight};

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
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    in_flight: Option<InFlight>,
    tried: Vec<SocketAddr>,
}

fn host_matches(host: &str, hostname: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let bare = match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h.to_owned(),
        _ => host,
    };
    bare == hostname
}

impl FarmProxy {
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

    async fn request_filter(&self, session: &mut Session, _ctx: &mut Self::CTX) -> Result<bool> {
        let req = session.req_header();
        let host = req
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        if !host_matches(&host, &self.hostname) {
            return Self::refuse(
                session,
                421,
                &format!("this server only answers for {}", self.hostname),
            )
            .await;
        }
        let path = req.uri.path().to_owned();
        if NODE_ONLY_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Self::refuse(session, 404, "not found").await;
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
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
        let mut peer = HttpPeer::new(backend.addr.http, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(3));
        peer.options.total_connection_timeout = Some(Duration::from_secs(5));
        // A clone of a large repository may spend minutes counting objects between writes.
        peer.options.read_timeout = Some(Duration::from_secs(600));
        peer.options.write_timeout = Some(Duration::from_secs(600));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        ctx.in_flight = Some(InFlight::new(backend, false));
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(f) = ctx.in_flight.take() {
            if f.backend().set_healthy(false) {
                tracing::warn!(backend = %f.backend().addr.label, peer = %peer, "cannot connect to node; out of rotation until it passes checks");
            }
        }
        if ctx.tried.len() < self.backends.all().len() {
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
            .map(|f| f.backend().addr.label.clone())
            .unwrap_or_default();
        self.metrics.request(&backend, status);
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
