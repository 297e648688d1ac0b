//! A served response as a stream, counted in the metrics and logged (repository, protocol, bytes,
//! duration, client address) when it ends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use tokio::process::Child;

use crate::upload_pack::ChildStream;

/// What is logged about one served request.
#[derive(Clone)]
pub struct ServeLog {
    /// `PROJECT/repo`.
    pub repo: String,
    /// `info_refs` or `upload_pack`.
    pub kind: &'static str,
    /// Protocol version asked for.
    pub protocol: u32,
    /// Client address.
    pub client: String,
    /// Where the served request is counted.
    pub shared: std::sync::Arc<crate::shared::Shared>,
}

/// A child's response, counted and logged when it ends.
pub type ServedStream = LoggedStream<ChildStream>;

impl ServedStream {
    /// Wraps `child` (its stdout must be piped and not yet taken); `prefix` bytes were already sent.
    pub fn from_child(
        mut child: Child,
        log: ServeLog,
        prefix: u64,
        place: Option<crate::serve::processes::Permit>,
    ) -> std::io::Result<Self> {
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(crate::upload_pack::log_stderr(stderr, log.repo.clone()));
        }
        let mut s = LoggedStream::new(ChildStream::new(child)?.holding(place), log, "git");
        s.bytes = prefix;
        Ok(s)
    }
}

/// Counts and logs a response that does not come from a child process (e.g. the pack cache).
pub struct LoggedStream<S> {
    inner: S,
    bytes: u64,
    started: Instant,
    log: ServeLog,
    source: &'static str,
    _active: crate::metrics::ActiveGuard,
}

impl<S> LoggedStream<S> {
    /// Wraps `inner`; `source` says where the bytes come from (for the log line).
    pub fn new(inner: S, log: ServeLog, source: &'static str) -> Self {
        let active = log.shared.metrics.track("http");
        Self {
            inner,
            bytes: 0,
            started: Instant::now(),
            log,
            source,
            _active: active,
        }
    }
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin> Stream for LoggedStream<S> {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let res = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(b))) = &res {
            self.bytes += b.len() as u64;
        }
        res
    }
}

impl<S> Drop for LoggedStream<S> {
    fn drop(&mut self) {
        self.log
            .shared
            .metrics
            .served("http", self.log.kind, self.bytes);
        tracing::info!(
            repo = %self.log.repo,
            protocol = "http",
            kind = self.log.kind,
            version = self.log.protocol,
            source = self.source,
            bytes = self.bytes,
            duration_ms = self.started.elapsed().as_millis() as u64,
            client = %self.log.client,
            "served"
        );
    }
}
