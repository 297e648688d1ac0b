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
use crate::retry::{dropped_by_node, is_read};
use crate::rules::{self, Admission};

/// The proxy logic (cheap to clone: the HTTP/1.1 front holds one too).
#[derive(Clone)]
pub struct FarmProxy {
    /// The nodes.
    pub backends: Arc<Backends>,
    /// `lb.hostname`.
    pub hostname: String,
    /// Metrics.
    pub metrics: Arc<crate::metrics::LbMetrics>,
    /// This worker's kept-alive connections for requests without a body.
    pub pool: Arc<crate::upstream_get::Pool>,
    /// `lb.sticky`.
    pub sticky: bool,
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    in_flight: Option<InFlight>,
    tried: Vec<SocketAddr>,
    /// The node answered that another member may serve this request: send it there.
    elsewhere: bool,
    /// The node sent the head of its answer (a failure after it is not sent again).
    answered: bool,
}

/// The node route the request's `BITBUCKETSESSIONID` cookie names, if any.
fn cookie_route(session: &Session) -> Option<&str> {
    session
        .req_header()
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::route_in_cookie_header)
}

impl FarmProxy {
    /// Picks the node for this request: the one its cookie names while healthy, else the least
    /// loaded healthy one not tried yet; counts the request as in flight on it.
    fn choose(&self, session: &Session, ctx: &mut RequestCtx) -> Result<Arc<Backend>> {
        self.pick(cookie_route(session), ctx)
    }

    /// [`Self::choose`] with the route the request's session cookie names.
    pub(crate) fn pick(&self, route: Option<&str>, ctx: &mut RequestCtx) -> Result<Arc<Backend>> {
        let sticky = route
            .filter(|_| self.sticky)
            .and_then(|r| self.backends.by_route(r))
            .filter(|b| !ctx.tried.contains(&b.addr.http));
        let backend = match sticky {
            Some(b) => b,
            None => self
                .backends
                .least_loaded(false, &ctx.tried)
                .ok_or_else(|| {
                    tracing::warn!(
                        tried = ctx.tried.len(),
                        "answered 503: no healthy mirror node left to try"
                    );
                    Error::explain(ErrorType::HTTPStatus(503), "no healthy mirror node")
                })?,
        };
        ctx.tried.push(backend.addr.http);
        ctx.in_flight = Some(InFlight::new(backend.clone(), false));
        Ok(backend)
    }

    /// The label of the node a request went to (empty when none).
    pub(crate) fn backend_label(ctx: &RequestCtx) -> &str {
        ctx.in_flight
            .as_ref()
            .map(|f| f.backend().addr.label.as_str())
            .unwrap_or_default()
    }

    /// A node could not be reached: out of rotation until it passes checks; whether another
    /// node is left to try.
    pub(crate) fn unreachable(&self, ctx: &mut RequestCtx, why: &dyn std::fmt::Display) -> bool {
        if let Some(f) = ctx.in_flight.take() {
            if f.backend().set_healthy(false) {
                tracing::warn!(backend = %f.backend().addr.label, error = %why, "cannot connect to node; out of rotation until it passes checks");
            }
        }
        ctx.tried.len() < self.backends.all().len()
    }

    /// Whether a healthy node not tried for this request is left.
    fn others_left(&self, ctx: &RequestCtx) -> bool {
        self.backends.any_healthy_except(&ctx.tried)
    }

    /// The request head sent to a node for a request without a body.
    fn bodiless_head(&self, session: &Session) -> Vec<u8> {
        let req = session.req_header();
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        rules::node_request_head(
            &self.hostname,
            req.method.as_str().as_bytes(),
            req.uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .as_bytes(),
            req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            client,
        )
    }

    /// Forwards a request without a body on this worker's own connections (see
    /// [`crate::upstream_get`]), trying another node when one cannot be reached.
    async fn forward_bodiless(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let head_only = session.req_header().method == http::Method::HEAD;
        let request = self.bodiless_head(session);
        let route = cookie_route(session).map(str::to_owned);
        self.forward_to(session, route.as_deref(), &request, head_only, ctx)
            .await?;
        Ok(true)
    }

    /// Sends `request` (a head without body) to the node `route` names or the least loaded one,
    /// the next node when one cannot be reached, and the answer to `sink`.
    pub(crate) async fn forward_to<S: crate::upstream_get::ResponseSink>(
        &self,
        sink: &mut S,
        route: Option<&str>,
        request: &[u8],
        head_only: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        loop {
            let backend = self.pick(route, ctx)?;
            let outcome = crate::upstream_get::forward(
                sink,
                &self.pool,
                backend.addr.http,
                request,
                head_only,
                || self.backends.any_healthy_except(&ctx.tried),
            )
            .await?;
            match outcome {
                crate::upstream_get::Outcome::Done => return Ok(()),
                crate::upstream_get::Outcome::Elsewhere => {
                    tracing::debug!(backend = %backend.addr.label, "node does not serve the repository right now; trying another");
                }
                crate::upstream_get::Outcome::Dropped(e) => {
                    if !self.others_left(ctx) {
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(502),
                            format!("the mirror node dropped the request: {e}"),
                        ));
                    }
                    tracing::debug!(backend = %backend.addr.label, error = %e, "node dropped a request before answering; trying another");
                }
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
        let host = match req.headers.get("host") {
            Some(h) => h.to_str().ok(),
            None => req.uri.authority().map(|a| a.as_str()),
        };
        match rules::admit(host, req.uri.path(), &self.hostname) {
            Admission::Forward => {}
            Admission::Misdirected => {
                return Self::refuse(
                    session,
                    421,
                    &format!("this server only answers for {}", self.hostname),
                )
                .await;
            }
            Admission::NodeOnly => return Self::refuse(session, 404, "not found").await,
            Admission::BadPath => {
                return Self::refuse(
                    session,
                    400,
                    "paths with //, dot-segments or percent-encoding are not served",
                )
                .await
            }
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
        // A new try: what the node before it answered does not count.
        ctx.answered = false;
        let mut peer = HttpPeer::new(backend.addr.http, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(3));
        peer.options.total_connection_timeout = Some(Duration::from_secs(5));
        // A clone of a large repository may spend minutes counting objects between writes.
        peer.options.read_timeout = Some(Duration::from_secs(600));
        peer.options.write_timeout = Some(Duration::from_secs(600));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.answered = true;
        let read = is_read(session.req_header());
        let elsewhere = upstream_response.status.as_u16() == 503
            && upstream_response
                .headers
                .contains_key(mirrorfarm_common::elsewhere::HEADER);
        // Sent again only with all of the body read so far kept for it (pingora keeps 64 KiB);
        // otherwise the node's own 503 goes to the client.
        let whole = !session.as_ref().retry_buffer_truncated();
        if read && elsewhere && whole && self.others_left(ctx) {
            ctx.elsewhere = true;
            ctx.in_flight = None;
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "the node does not serve the repository right now; trying another",
            ));
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let read = is_read(session.req_header());
        let whole = !session.as_ref().retry_buffer_truncated();
        if std::mem::take(&mut ctx.elsewhere) {
            // `upstream_response_filter` checked the body is whole.
            e.set_retry(true);
        } else if read && whole && !ctx.answered && dropped_by_node(&e) && self.others_left(ctx) {
            // A read the node dropped before answering (a new connection accepted as it
            // stopped, say): sent to another node.
            tracing::debug!(backend = %Self::backend_label(ctx), error = %e, "node dropped a read before answering; trying another");
            e.set_retry(true);
        } else if !(session.req_header().method.is_idempotent() || is_read(session.req_header()))
            || session.as_ref().retry_buffer_truncated()
        {
            // pingora's own policy, with a fetch's POST counted as the read it is: a request
            // that met a kept-alive connection the node had just closed (a node stopping, say)
            // is sent again.
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
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
            .map(|a| a.ip());
        let previous = upstream
            .headers
            .get("x-forwarded-for")
            .map(|v| v.as_bytes());
        let xff = rules::forwarded_for(previous, client);
        upstream.insert_header("X-Forwarded-For", xff)?;
        upstream.insert_header("X-Forwarded-Proto", rules::FORWARDED_PROTO)?;
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
        let backend = Self::backend_label(ctx);
        self.metrics.request(backend, status);
        if let Some(e) = e {
            tracing::warn!(path = %session.req_header().uri.path(), status, backend, error = %e, "request failed");
        } else {
            tracing::debug!(path = %session.req_header().uri.path(), status, backend, "request");
        }
        ctx.in_flight = None;
    }
}
