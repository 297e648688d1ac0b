//! A lean upstream leg for requests without a body (`GET /…/info/refs`, `/status`, `/`): the
//! request head is written in one piece on a kept-alive connection from this worker's own pool,
//! the response head is parsed with httparse and the body is streamed to the client as it comes
//! (content-length, chunked or until close). pingora's general upstream path costs about as much
//! per request as the TLS termination and HTTP serving together (a pooled connection is handed to
//! an idle-watch task and back on every request); git's many small ref advertisements pay for it.
//! Requests with a body (`git-upload-pack` POSTs) keep pingora's path.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pingora::prelude::Session;
use pingora::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::response_head::{parse_head, upstream_error, Framing, Head};

/// Longest response head accepted from a node.
const MAX_HEAD: usize = 64 * 1024;
/// Idle connections kept per node and worker.
const MAX_IDLE: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A clone of a large repository may spend minutes between writes (as pingora's path allows).
const IO_TIMEOUT: Duration = Duration::from_secs(600);
const READ_CHUNK: usize = 64 * 1024;

/// Kept-alive connections to the nodes, for one worker.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<TcpStream>>>,
}

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        self.idle.lock().get_mut(&addr)?.pop()
    }

    fn put(&self, addr: SocketAddr, conn: TcpStream) {
        let mut idle = self.idle.lock();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE {
            list.push(conn);
        }
    }
}

/// What became of a forwarded request.
#[derive(Debug)]
pub enum Outcome {
    /// The response went to the client.
    Done,
    /// The node could not be reached; nothing was sent to the client (try another node).
    Unreachable(std::io::Error),
    /// The node does not serve the repository right now and says another member may; nothing
    /// was sent to the client (try another node).
    Elsewhere,
    /// The node took the request on a new connection and dropped it before any byte of an
    /// answer (a member stopping, say); nothing was sent to the client (try another node, but
    /// keep this one: one request it could not answer says nothing of the next).
    Dropped(std::io::Error),
}

async fn timed<T>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned()))?
}

/// Sends `request` (a complete request head without body) to the node at `addr` and streams its
/// answer to the client — unless the node says another member may answer and `others_left()`
/// (asked only then, not on every request) says one is.
pub async fn forward<S: ResponseSink>(
    session: &mut S,
    pool: &Pool,
    addr: SocketAddr,
    request: &[u8],
    head_only: bool,
    others_left: impl Fn() -> bool + Send,
) -> Result<Outcome> {
    for attempt in 0..2 {
        let (mut conn, reused) = match pool.take(addr).filter(|_| attempt == 0) {
            Some(c) => (c, true),
            None => match timed("connect", CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(c) => {
                    let _ = c.set_nodelay(true);
                    (c, false)
                }
                Err(e) => return Ok(Outcome::Unreachable(e)),
            },
        };
        if let Err(e) = timed("write", IO_TIMEOUT, conn.write_all(request)).await {
            if reused {
                continue; // a kept-alive connection the node has closed meanwhile
            }
            return Ok(Outcome::Unreachable(e));
        }
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let head = loop {
            if buf.len() >= MAX_HEAD {
                return Err(upstream_error("node response head", "too large"));
            }
            let read = timed("read", IO_TIMEOUT, conn.read_buf(&mut buf)).await;
            match read {
                Ok(0) | Err(_) if reused && buf.is_empty() => break None,
                // A new connection dropped before any byte of an answer (accepted as the node
                // stopped, say): the request is sent to another node.
                Ok(0) if buf.is_empty() => {
                    return Ok(Outcome::Dropped(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the node closed the connection before answering",
                    )))
                }
                Err(e) if buf.is_empty() && e.kind() != std::io::ErrorKind::TimedOut => {
                    return Ok(Outcome::Dropped(e))
                }
                Ok(0) => return Err(upstream_error("node", "closed the connection")),
                Err(e) => return Err(upstream_error("reading from node", e)),
                Ok(_) => {}
            }
            if let Some(head) = parse_head(&mut buf, head_only)? {
                break Some(head);
            }
        };
        let Some(head) = head else {
            continue;
        };
        if head.elsewhere() && others_left() {
            // Its short answer is not read: the connection is not kept.
            return Ok(Outcome::Elsewhere);
        }
        let empty = matches!(head.framing, Framing::Empty | Framing::Length(0));
        session.head(&head, empty).await?;
        let clean = match head.framing {
            Framing::Empty => buf.is_empty(),
            Framing::Length(n) => copy_length(session, &mut conn, buf, n).await?,
            Framing::Chunked => copy_chunked(session, &mut conn, buf).await?,
            Framing::UntilClose => copy_until_close(session, &mut conn, buf).await?,
        };
        if head.keep_alive && clean {
            pool.put(addr, conn);
        }
        return Ok(Outcome::Done);
    }
    Ok(Outcome::Unreachable(std::io::Error::other(
        "kept-alive connection closed, and a new one failed",
    )))
}

/// Where a response goes: pingora's client session, the HTTP/1.1 front's own connection (or,
/// in tests, memory).
#[async_trait::async_trait]
pub trait ResponseSink: Send {
    /// Writes the response head; `end` when no body follows.
    async fn head(&mut self, head: &Head, end: bool) -> Result<()>;
    /// Writes the next piece of the body; `end` on the last.
    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()>;
}

#[async_trait::async_trait]
impl ResponseSink for Session {
    async fn head(&mut self, head: &Head, end: bool) -> Result<()> {
        let response = head.to_response_header()?;
        self.write_response_header(Box::new(response), end).await
    }

    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        self.write_response_body(data, end).await
    }
}

async fn read_more<R: AsyncRead + Unpin>(conn: &mut R, buf: &mut BytesMut) -> Result<()> {
    buf.reserve(READ_CHUNK);
    match timed("read", IO_TIMEOUT, conn.read_buf(buf)).await {
        Ok(0) => Err(upstream_error("node", "closed the connection mid-body")),
        Ok(_) => Ok(()),
        Err(e) => Err(upstream_error("reading from node", e)),
    }
}

/// Streams a body of `n` bytes; true when the connection ends exactly after it.
async fn copy_length<S: ResponseSink, R: AsyncRead + Unpin + Send>(
    session: &mut S,
    conn: &mut R,
    mut buf: BytesMut,
    mut n: u64,
) -> Result<bool> {
    while n > 0 {
        if buf.is_empty() {
            read_more(conn, &mut buf).await?;
        }
        let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let chunk: Bytes = buf.split_to(take).freeze();
        n -= take as u64;
        session.body(Some(chunk), n == 0).await?;
    }
    Ok(buf.is_empty())
}

/// Streams a chunked body (decoded; trailers dropped); true when the connection ends exactly
/// after it.
async fn copy_chunked<S: ResponseSink, R: AsyncRead + Unpin + Send>(
    session: &mut S,
    conn: &mut R,
    mut buf: BytesMut,
) -> Result<bool> {
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if buf.len() > 1024 {
                return Err(upstream_error(
                    "chunked body from node",
                    "bad chunk size line",
                ));
            }
            read_more(conn, &mut buf).await?;
        };
        let line = std::str::from_utf8(&buf[..line_end]).unwrap_or("");
        let size = u64::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| upstream_error("chunked body from node", e))?;
        buf.advance(line_end + 2);
        if size == 0 {
            // Trailers (ignored) up to the empty line.
            loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    buf.advance(i + 2);
                    if i == 0 {
                        session.body(None, true).await?;
                        return Ok(buf.is_empty());
                    }
                    continue;
                }
                if buf.len() > MAX_HEAD {
                    return Err(upstream_error(
                        "chunked body from node",
                        "trailers too large",
                    ));
                }
                read_more(conn, &mut buf).await?;
            }
        }
        let mut left = size;
        while left > 0 {
            if buf.is_empty() {
                read_more(conn, &mut buf).await?;
            }
            let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            left -= take as u64;
            session
                .body(Some(buf.split_to(take).freeze()), false)
                .await?;
        }
        while buf.len() < 2 {
            read_more(conn, &mut buf).await?;
        }
        if &buf[..2] != b"\r\n" {
            return Err(upstream_error(
                "chunked body from node",
                "missing chunk end",
            ));
        }
        buf.advance(2);
    }
}

/// Streams a body delimited by the end of the connection; never reusable.
async fn copy_until_close<S: ResponseSink, R: AsyncRead + Unpin + Send>(
    session: &mut S,
    conn: &mut R,
    mut buf: BytesMut,
) -> Result<bool> {
    loop {
        if !buf.is_empty() {
            session.body(Some(buf.split().freeze()), false).await?;
        }
        buf.reserve(READ_CHUNK);
        match timed("read", IO_TIMEOUT, conn.read_buf(&mut buf)).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(upstream_error("reading from node", e)),
        }
    }
    session.body(None, true).await?;
    Ok(false)
}

#[cfg(test)]
mod tests;
