//! The one place `git upload-pack` starts, with one environment and one set of settings: for
//! clients (HTTP and SSH, what the farm has flipped to) and for other farm members (the state this
//! node staged, too). Also the pieces every HTTP caller needs: a request body as git's input
//! (gzip or not, bounded), and a child's output as a stream that stops the child when dropped.

use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::GzipDecoder;
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use tokio::io::{AsyncRead, BufReader};
use tokio::process::{Child, ChildStdout};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::gitcmd;
use crate::mirror_repo::{STAGING, STAGING_HEAD};

/// The error a capped request body gives once it passes its limit.
#[derive(Debug, thiserror::Error)]
#[error("the request is larger than {0} bytes")]
pub struct TooLarge(pub u64);

/// Whether a read failed because the body passed its limit.
pub fn is_too_large(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

/// A reader that fails with [`TooLarge`] (never a silent end) once more than `left` bytes come.
struct Capped<R> {
    inner: R,
    limit: u64,
    left: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Capped<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let n = (buf.filled().len() - before) as u64;
            if n > self.left {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    TooLarge(self.limit),
                )));
            }
            self.left -= n;
        }
        res
    }
}

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

/// Which refs are advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// What clients see: the served refs (the hidden namespace stays hidden).
    Clients,
    /// What farm members fetch: the staged state too (`refs/mirrorfarm/staging/…` and
    /// `refs/mirrorfarm/staging-head`), before the farm flips to it.
    Staged,
}

/// Starts `git upload-pack --strict` on `repo` with stdout and stderr piped (stdin piped unless
/// it only advertises). `git_protocol` is the client's `GIT_PROTOCOL` (validated by the caller).
pub fn spawn(
    repo: &Path,
    mode: Mode,
    exposure: Exposure,
    git_protocol: Option<&str>,
) -> std::io::Result<Child> {
    let mut cmd = gitcmd::git();
    if exposure == Exposure::Staged {
        // Un-hide the staged state (the repository hides all of refs/mirrorfarm).
        let staging = STAGING.trim_end_matches('/');
        cmd.arg("-c")
            .arg(format!("uploadpack.hideRefs=!{staging}"))
            .arg("-c")
            .arg(format!("uploadpack.hideRefs=!{STAGING_HEAD}"))
            // A keep-alive every second while it counts objects: the member fetching can tell a
            // busy leader from one gone silent (its `http.lowSpeedLimit`).
            .arg("-c")
            .arg("uploadpack.keepAlive=1");
    }
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

/// Starts a stateless-RPC `git upload-pack` (an HTTP POST's answer) and feeds it `input` in a
/// task of its own; `label` names the request if its body breaks off (upload-pack reports the
/// rest on stderr).
pub fn spawn_fed(
    repo: &Path,
    exposure: Exposure,
    git_protocol: Option<&str>,
    mut input: Box<dyn AsyncRead + Send + Unpin>,
    label: String,
) -> std::io::Result<Child> {
    let mut child = spawn(repo, Mode::StatelessRpc, exposure, git_protocol)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("upload-pack input is not piped"))?;
    tokio::spawn(async move {
        if let Err(e) = tokio::io::copy(&mut input, &mut stdin).await {
            // A broken request (bad gzip, client gone) ends upload-pack's input.
            tracing::debug!(request = %label, error = %e, "request body ended early");
        }
    });
    Ok(child)
}

/// The whole advertisement (`--stateless-rpc --advertise-refs`) for clients, within `limit`.
pub async fn advertisement(
    repo: &Path,
    git_protocol: Option<&str>,
    limit: std::time::Duration,
) -> Result<Bytes, gitcmd::GitError> {
    let mut child =
        spawn(repo, Mode::Advertise, Exposure::Clients, git_protocol).map_err(|source| {
            gitcmd::GitError::Spawn {
                program: "git upload-pack".into(),
                source,
            }
        })?;
    let out = gitcmd::collect(&mut child, "upload-pack --advertise-refs", limit).await?;
    Ok(Bytes::from(out.stdout))
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

/// Checks the headers of an upload-pack POST: whether its body is gzipped, or why it is refused
/// (415 with a message) before git runs.
pub fn rpc_headers(
    headers: &axum::http::HeaderMap,
) -> Result<bool, (axum::http::StatusCode, &'static str)> {
    use axum::http::{header, StatusCode};
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None => false,
        Some(b"gzip") | Some(b"x-gzip") => true,
        Some(_) => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported Content-Encoding",
            ))
        }
    };
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/x-git-upload-pack-request");
    if !ct_ok {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type application/x-git-upload-pack-request",
        ));
    }
    Ok(gzip)
}

/// An HTTP request body as upload-pack's input: gunzipped when `gzip`; past `limit` bytes
/// (decompressed) it fails with [`TooLarge`].
pub fn request_input(
    body: axum::body::Body,
    gzip: bool,
    limit: u64,
) -> Box<dyn AsyncRead + Send + Unpin> {
    let reader = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let inner: Box<dyn AsyncRead + Send + Unpin> = if gzip {
        Box::new(GzipDecoder::new(BufReader::new(reader)))
    } else {
        Box::new(reader)
    };
    Box::new(Capped {
        inner,
        limit,
        left: limit,
    })
}

/// A child's stdout as a stream, owning the child: it is stopped if the reader goes away.
pub struct ChildStream {
    inner: ReaderStream<ChildStdout>,
    child: Child,
    /// The place the process holds (`mirror.serve.maxProcesses`), given back with it.
    place: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ChildStream {
    /// Wraps `child`, whose stdout is piped and not yet taken.
    pub fn new(mut child: Child) -> std::io::Result<Self> {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("upload-pack stdout is not piped"))?;
        Ok(Self {
            inner: ReaderStream::with_capacity(stdout, 256 * 1024),
            child,
            place: None,
        })
    }

    /// Holds `place` until the stream is dropped.
    pub fn holding(mut self, place: Option<tokio::sync::OwnedSemaphorePermit>) -> Self {
        self.place = place;
        self
    }
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
            // The reader went away, or upload-pack is still finishing: make sure it ends.
            let _ = self.child.start_kill();
        }
    }
}
