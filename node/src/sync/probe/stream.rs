//! Running the probe's command and reading its answer as it streams: one header line per
//! repository, then its ref advertisement in pkt-lines or a `# failed` line.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use super::advert::Advertised;
use super::{remote_path, Candidate, Via};
use crate::pktline;
use crate::upstream_url::UpstreamUrl;

/// How long the upstream may stay silent before the probe is given up.
const IDLE: Duration = Duration::from_secs(120);

/// Why a probe ended before every repository was answered for (the rest are fetched).
#[derive(Debug, thiserror::Error)]
pub(super) enum ProbeError {
    /// The command could not start.
    #[error("cannot start the probe: {0}")]
    Spawn(#[source] std::io::Error),
    /// Its output could not be read.
    #[error("reading the upstream's answer: {0}")]
    Read(#[source] std::io::Error),
    /// The upstream stopped answering.
    #[error("the upstream said nothing for {0:?}")]
    Idle(Duration),
    /// The output is not what the loop writes.
    #[error("the upstream's answer is not a ref advertisement ({0})")]
    Garbled(&'static str),
    /// The command ended early (refused: its stderr's first line).
    #[error("the command ended before answering for every repository: {0:?}")]
    Ended(String),
}

/// Runs the command and reads its answer, calling `answered` with each repository (taken off
/// `waiting`) and what it advertises (`None`: the upstream could not read it) as it comes.
pub(super) async fn probe(
    upstream: &UpstreamUrl,
    via: &Via,
    waiting: &mut VecDeque<Candidate>,
    mut answered: impl FnMut(Candidate, Option<Advertised>),
) -> Result<(), ProbeError> {
    let Some(mut cmd) = via.command(upstream) else {
        return Ok(());
    };
    let mut paths = String::new();
    for c in waiting.iter() {
        if let Some(p) = remote_path(upstream, &c.id) {
            paths.push_str(&p);
            paths.push('\n');
        }
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(ProbeError::Spawn)?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ProbeError::Spawn(std::io::Error::other("no pipes")));
    };
    let mut said = tokio::spawn(first_line(stderr));
    // Written beside the reading: the upstream answers while it reads.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(paths.as_bytes()).await;
        let _ = stdin.shutdown().await;
    });
    let mut out = BufReader::new(stdout);
    let res = async {
        while let Some(c) = waiting.front() {
            let Some(path) = remote_path(upstream, &c.id) else {
                break;
            };
            let Some(adv) = read_one(&mut out, &path).await? else {
                return Err(ProbeError::Ended(String::new()));
            };
            let Some(c) = waiting.pop_front() else { break };
            answered(c, adv);
        }
        Ok(())
    }
    .await;
    writer.abort();
    // Answered in full, the remote loop has read the end of its input and ssh ends by itself.
    if res.is_err()
        || tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    match res {
        Err(ProbeError::Ended(_)) => {
            // Bounded: an old OpenSSH's backgrounded master may hold stderr open.
            let line = tokio::time::timeout(Duration::from_secs(2), &mut said).await;
            said.abort();
            Err(ProbeError::Ended(
                line.ok().and_then(Result::ok).unwrap_or_default(),
            ))
        }
        other => {
            said.abort();
            other
        }
    }
}

/// The first line of what ssh (or the upstream) printed on stderr; the rest is read and dropped
/// (so that ssh never blocks on a full pipe).
async fn first_line(stderr: impl AsyncRead + Unpin) -> String {
    let mut err = BufReader::new(stderr);
    let (mut first, mut line) = (String::new(), Vec::new());
    loop {
        line.clear();
        match err.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        if first.is_empty() && !text.trim().is_empty() {
            first = text.trim().chars().take(300).collect();
        }
    }
    first
}

/// With a timeout of [`IDLE`].
async fn idle<T>(
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(IDLE, f)
        .await
        .map_err(|_| ProbeError::Idle(IDLE))?
        .map_err(ProbeError::Read)
}

/// Reads one repository's answer: `None` at the end of the output, `Some(None)` when the
/// upstream could not read it (it is fetched: the fetch tells why).
async fn read_one<R: AsyncRead + Unpin>(
    out: &mut BufReader<R>,
    path: &str,
) -> Result<Option<Option<Advertised>>, ProbeError> {
    let mut header = Vec::new();
    // Bounded: a header is `# ` and a path.
    let mut limited = (&mut *out).take(path.len() as u64 + 3);
    if idle(limited.read_until(b'\n', &mut header)).await? == 0 {
        return Ok(None);
    }
    if header
        .strip_prefix(b"# ")
        .map(|h| h.strip_suffix(b"\n").unwrap_or(h))
        != Some(path.as_bytes())
    {
        return Err(ProbeError::Garbled("a header for another repository"));
    }
    let mut adv = Advertised::default();
    loop {
        let mut head = [0u8; 4];
        idle(out.read_exact(&mut head)).await?;
        if &head == b"# fa" {
            let mut rest = Vec::new();
            idle((&mut *out).take(64).read_until(b'\n', &mut rest)).await?;
            return Ok(Some(None));
        }
        match pktline::length(head).ok_or(ProbeError::Garbled("a bad packet length"))? {
            0 => return Ok(Some(Some(adv))),
            n if n < 4 => return Err(ProbeError::Garbled("a special packet")),
            n => {
                let mut payload = vec![0u8; n - 4];
                idle(out.read_exact(&mut payload)).await?;
                adv.line(&payload);
            }
        }
    }
}
