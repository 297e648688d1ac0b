//! The HTTPS front's HTTP/1.1 loop. Requests without a body for the farm hostname (git's ref
//! advertisements, `/status`, web pages) are parsed with httparse and answered from a node on
//! this worker's kept-alive connections (see [`crate::upstream_get`]), the node's response head
//! passed on as bytes. Every other request — a body (`git-upload-pack`), an upgrade, HTTP/1.0,
//! another host, a node-only path, anything unusual — and every h2 connection goes through
//! pingora's HTTP proxy ([`FarmProxy`]), which is handed the bytes already read. pingora's
//! per-request session, header maps and phases cost more CPU per ref advertisement than the TLS
//! and the proxying themselves.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http_proxy::{FarmProxy, RequestCtx};
use crate::request_head::{self, Framing};
use crate::response_head::Head;
use crate::upstream_get::ResponseSink;

/// How long a kept-alive connection may sit idle between requests (pingora's default too).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// How long a client may take to send a whole request head once it started.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Bodies up to this size are written with the head, as one TLS record.
const COALESCE: usize = 16 * 1024;

/// The HTTPS service of one worker.
pub struct FastFront {
    /// pingora's proxy, for everything the fast path does not take.
    pub proxy: Arc<HttpProxy<FarmProxy>>,
    /// The same proxy logic (backends, pool, metrics) for the fast path.
    pub farm: FarmProxy,
}

/// What to do with a parsed request.
enum Route {
    /// Forward on the fast path.
    Fast {
        request: Vec<u8>,
        head_only: bool,
        cookie_route: Option<String>,
        close: bool,
        path: String,
    },
    /// Hand the connection to pingora for this request.
    Pingora,
}

#[async_trait]
impl ServerApp for FastFront {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if !matches!(stream.selected_alpn_proto(), None | Some(ALPN::H1)) {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        self.serve(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

impl FastFront {
    async fn serve(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            if *shutdown.borrow() {
                let _ = stream.shutdown().await;
                return;
            }
            let mut deadline = None;
            let (route, used) = loop {
                if let Some(decided) = self.route(&buf, client) {
                    break decided;
                }
                if !read_more(&mut stream, &mut buf, shutdown, &mut deadline).await {
                    return;
                }
            };
            match route {
                Route::Pingora => {
                    let mut session = ServerSession::new_http1(stream);
                    session.set_keepalive(Some(KEEPALIVE_IDLE.as_secs()));
                    // This request's bytes only: pingora does not reuse a connection with bytes
                    // read past a request, so what the client pipelined after it stays here.
                    session.set_pipelined_prefix(buf.split_to(used.min(buf.len())));
                    match self.proxy.process_new_http(session, shutdown).await {
                        Some(reused) => stream = reused.consume().0,
                        None => return,
                    }
                }
                Route::Fast {
                    request,
                    head_only,
                    cookie_route,
                    close,
                    path,
                } => {
                    buf.advance(used);
                    let close = close || *shutdown.borrow();
                    let mut sink = RawSink {
                        stream: &mut stream,
                        close,
                        chunked: false,
                        pending: Vec::new(),
                        head_sent: false,
                        status: 0,
                    };
                    let mut ctx = RequestCtx::default();
                    let res = self
                        .farm
                        .forward_to(
                            &mut sink,
                            cookie_route.as_deref(),
                            &request,
                            head_only,
                            &mut ctx,
                        )
                        .await;
                    let backend = FarmProxy::backend_label(&ctx);
                    let reusable = match res {
                        Ok(()) => {
                            let status = sink.status;
                            self.farm.metrics.request(backend, status);
                            tracing::debug!(path, status, backend, "request");
                            !close
                        }
                        Err(e) => {
                            let status = match e.etype() {
                                ErrorType::HTTPStatus(c) => *c,
                                _ => 502,
                            };
                            self.farm.metrics.request(backend, status);
                            tracing::warn!(path, status, backend, error = %e, "request failed");
                            if !sink.head_sent {
                                let _ = sink.error(status).await;
                            }
                            false
                        }
                    };
                    drop(ctx);
                    if stream.flush().await.is_err() || !reusable {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            }
        }
    }

    /// Decides where the request in `buf` goes (parsing its head once; `None` while the head is
    /// not all here). For the fast path, also
    /// the length of its head; for pingora, how many of the buffered bytes are this request's
    /// (head and body, as far as they can be told apart: all of them for a chunked one, or a head
    /// too large or malformed, which pingora answers).
    fn route(&self, buf: &[u8], client: Option<std::net::IpAddr>) -> Option<(Route, usize)> {
        let framed = request_head::frame(buf, &self.farm.hostname, |method, path, headers| {
            crate::rules::node_request_head(
                &self.farm.hostname,
                method,
                path,
                headers.iter().map(|h| (h.name, h.value)),
                client,
            )
        });
        match framed {
            Framing::Partial => None,
            Framing::Pingora(whole) => Some((Route::Pingora, whole)),
            Framing::Fast(h) => Some((
                Route::Fast {
                    request: h.request,
                    head_only: h.head_only,
                    cookie_route: h.cookie_route,
                    close: h.close,
                    path: h.path,
                },
                h.used,
            )),
        }
    }
}

/// Reads more of a request head into `buf`; false when the connection is done (closed, idle
/// longer than the keep-alive, shutting down while idle, or the head not whole by `deadline`,
/// which is set at its first byte).
async fn read_more(
    stream: &mut Stream,
    buf: &mut BytesMut,
    shutdown: &ShutdownWatch,
    deadline: &mut Option<tokio::time::Instant>,
) -> bool {
    let now = tokio::time::Instant::now();
    let idle = buf.is_empty();
    let until = if idle {
        now + KEEPALIVE_IDLE
    } else {
        *deadline.get_or_insert(now + HEAD_TIMEOUT)
    };
    buf.reserve(4096);
    let mut shutdown = shutdown.clone();
    let read = tokio::select! {
        r = tokio::time::timeout_at(until, stream.read_buf(buf)) => r,
        _ = shutdown.changed(), if idle => return false,
    };
    matches!(read, Ok(Ok(n)) if n > 0)
}

/// Writes a node's response to the client's connection as HTTP/1.1.
struct RawSink<'s> {
    stream: &'s mut Stream,
    close: bool,
    chunked: bool,
    /// The head (and small body pieces) not yet written, to go out in one TLS record.
    pending: Vec<u8>,
    head_sent: bool,
    /// The status passed on.
    status: u16,
}

fn write_error(e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::WriteError, "writing to the client", e)
}

impl RawSink<'_> {
    async fn flush_pending(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.stream
                .write_all(&self.pending)
                .await
                .map_err(write_error)?;
            self.pending.clear();
        }
        Ok(())
    }

    async fn error(&mut self, status: u16) -> Result<()> {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("Error");
        let text = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reason}\n",
            reason.len() + 1
        );
        self.stream
            .write_all(text.as_bytes())
            .await
            .map_err(write_error)?;
        self.stream.flush().await.map_err(write_error)
    }
}

#[async_trait]
impl ResponseSink for RawSink<'_> {
    async fn head(&mut self, head: &Head, end: bool) -> Result<()> {
        self.chunked = head.chunked_to_client();
        self.head_sent = true;
        self.status = head.code;
        head.write_http11(&mut self.pending, self.close);
        if end {
            self.flush_pending().await?;
        }
        Ok(())
    }

    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        let data = data.unwrap_or_default();
        if self.chunked && !data.is_empty() {
            use std::io::Write;
            let _ = write!(self.pending, "{:x}\r\n", data.len());
        }
        if self.pending.len() + data.len() <= COALESCE {
            self.pending.extend_from_slice(&data);
        } else {
            self.flush_pending().await?;
            self.stream.write_all(&data).await.map_err(write_error)?;
        }
        if self.chunked && !data.is_empty() {
            self.pending.extend_from_slice(b"\r\n");
        }
        if end {
            if self.chunked {
                self.pending.extend_from_slice(b"0\r\n\r\n");
            }
            self.flush_pending().await?;
        }
        Ok(())
    }
}
