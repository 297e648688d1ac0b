//! Spawning `git upload-pack` for a client and streaming its output, with a log line per served
//! request (repository, protocol, bytes, duration, client address) when the stream ends.

use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::io::ReaderStream;

use crate::gitcmd;

/// How upload-pack is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--stateless-rpc --advertise-refs` (HTTP `info/refs`).
    Advertise,
    /// `--stateless-rpc` (HTTP POST).
    StatelessRpc,
    /// Plain, bidirectional (SSH).
    Stateful,
}

/// Starts `git upload-pack` on `repo` with stdin and stdout piped and stderr captured.
pub fn spawn(repo: &Path, mode: Mode, git_protocol: Option<&str>) -> std::io::Result<Child> {
    let mut cmd: Command = gitcmd::git();
    cmd.arg("upload-pack").arg("--strict");
    match mode {
        Mode::Advertise => {
            cmd.arg("--stateless-rpc").arg("--advertise-refs");
        }
        Mode::StatelessRpc => {
            cmd.arg("--stateless-rpc");
        }
        Mode::Stateful => {}
    }
    cmd.arg(repo);
    if let Some(p) = git_protocol {
        cmd.env("GIT_PROTOCOL", p);
    }
    let stdin = if mode == Mode::Advertise {
        Stdio::null()
    } else {
        Stdio::piped()
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn()
}

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
    pub shared: std::sync::Arc<crate::state::Shared>,
}

/// A child's stdout as a stream, owning the child: it is stopped if the client goes away.
pub struct ChildStream {
    inner: ReaderStream<ChildStdout>,
    child: Child,
}

impl Stream for ChildStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // The client went away, or upload-pack is still finishing: make sure it ends.
            let _ = self.child.start_kill();
        }
    }
}

/// A child's response, counted and logged when it ends.
pub type ServedStream = LoggedStream<ChildStream>;

impl ServedStream {
    /// Wraps `child` (its stdout must be piped and not yet taken); `prefix` bytes were already sent.
    pub fn from_child(mut child: Child, log: ServeLog, prefix: u64) -> Self {
        let stdout = child.stdout.take().expect("upload-pack stdout is piped");
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_stderr(stderr, log.repo.clone()));
        }
        let inner = ChildStream {
            inner: ReaderStream::with_capacity(stdout, 64 * 1024),
            child,
        };
        let mut s = LoggedStream::new(inner, log, "git");
        s.bytes = prefix;
        s
    }
}

/// Logs what upload-pack printed on stderr (bounded).
pub async fn log_stderr(stderr: tokio::process::ChildStderr, repo: String) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let _ = stderr.take(64 * 1024).read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    if !text.is_empty() {
        tracing::warn!(repo, stderr = %text, "upload-pack reported an error");
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
