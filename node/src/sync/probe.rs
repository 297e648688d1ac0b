//! The reconcile probe: before a reconcile fetches every repository of an `ssh://` upstream, one
//! SSH command (over the shared connection) reads what each one advertises — a POSIX shell loop
//! over `git-upload-pack --advertise-refs`, the repositories' paths on its stdin — and only those
//! whose refs differ from the served state are fetched. A fetch per repository costs the
//! upstream an SSH session, a shell and an upload-pack, and this node a `git fetch` and an `ssh`
//! client; the probe costs one upload-pack per repository. An upstream that refuses the command
//! (a restricted shell such as `git-shell`), or any repository it does not answer for, gets the
//! fetch it got before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::names::RepoId;
use crate::pktline;
use crate::shared::Shared;
use crate::upstream_url::UpstreamUrl;

mod advert;

use advert::Advertised;

/// The command the upstream's login shell runs: for each path read, a header line, then the
/// repository's advertisement (ending with a flush packet) or a `# failed` line.
const SCRIPT: &str = "while IFS= read -r d; do printf '# %s\\n' \"$d\"; \
     git-upload-pack --advertise-refs \"$d\" </dev/null 2>/dev/null || printf '# failed\\n'; done";

/// How long the upstream may stay silent before the probe is given up.
const IDLE: Duration = Duration::from_secs(120);

/// Why a probe ended before every repository was answered for (the rest are fetched).
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("cannot run ssh: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("reading the upstream's answer: {0}")]
    Read(#[source] std::io::Error),
    #[error("the upstream said nothing for {0:?}")]
    Idle(Duration),
    #[error("the upstream's answer is not a ref advertisement ({0})")]
    Garbled(&'static str),
    #[error("the command ended before answering for every repository: {0:?}")]
    Ended(String),
}

/// A repository to probe: its id and the hash of the state served.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The repository.
    pub id: RepoId,
    /// The hash of its served state ([`crate::packed_refs::refs_hash`]).
    pub served: String,
}

/// The path the probe asks for: git's ssh transport's (`ssh://host/~user/x` → `~user/x`), or
/// the directory of a `file://` upstream.
pub fn remote_path(upstream: &UpstreamUrl, id: &RepoId) -> Option<String> {
    let path = match upstream {
        UpstreamUrl::Ssh { base, .. } => {
            let path = format!("{base}/{}", id.rel_path());
            match path.strip_prefix("/~") {
                Some(rest) => format!("~{rest}"),
                None => path,
            }
        }
        UpstreamUrl::File { path } => path.join(id.rel_path()).to_str()?.to_owned(),
        UpstreamUrl::Https { .. } => return None,
    };
    (!path.contains('\n')).then_some(path)
}

/// How the probe reaches the upstream.
#[derive(Debug, Clone)]
pub enum Via {
    /// `ssh://`: git's `GIT_SSH_COMMAND` for it.
    Ssh(String),
    /// `file://`: the local shell.
    Local,
}

impl Via {
    /// The way to probe `upstream` (`env`: git's environment for it), if it can be probed.
    pub fn of(upstream: &UpstreamUrl, env: &[(&'static str, String)]) -> Option<Self> {
        match upstream {
            UpstreamUrl::Ssh { .. } => env
                .iter()
                .find(|(k, _)| *k == "GIT_SSH_COMMAND")
                .map(|(_, v)| Self::Ssh(v.clone())),
            UpstreamUrl::File { .. } => Some(Self::Local),
            UpstreamUrl::Https { .. } => None,
        }
    }

    /// The command that runs [`SCRIPT`] at the upstream.
    fn command(&self, upstream: &UpstreamUrl) -> Option<Command> {
        let mut cmd = Command::new("sh");
        match (self, upstream) {
            (
                Self::Ssh(ssh),
                UpstreamUrl::Ssh {
                    user, host, port, ..
                },
            ) => {
                // git runs GIT_SSH_COMMAND through the shell the same way (it is a command line).
                cmd.arg("-c")
                    .arg(format!("{ssh} \"$@\""))
                    .arg("mirrorfarm-probe");
                if let Some(p) = port {
                    cmd.arg("-p").arg(p.to_string());
                }
                cmd.arg("--").arg(match user {
                    Some(u) => format!("{u}@{host}"),
                    None => host.clone(),
                });
                cmd.arg(SCRIPT);
            }
            (Self::Local, UpstreamUrl::File { .. }) => {
                cmd.arg("-c").arg(SCRIPT);
            }
            _ => return None,
        }
        cmd.env("LC_ALL", "C")
            .env_remove("GIT_DIR")
            .env_remove("GIT_PROTOCOL")
            .env_remove("GIT_CONFIG_PARAMETERS");
        Some(cmd)
    }
}

/// Probes `candidates`, sending each one that must be fetched (changed, or not answered for) to
/// `refetch` as soon as that is known.
pub async fn run(
    shared: Arc<Shared>,
    via: Via,
    candidates: Vec<Candidate>,
    refetch: mpsc::UnboundedSender<RepoId>,
) {
    let started = Instant::now();
    let total = candidates.len();
    let mut waiting: VecDeque<Candidate> = candidates.into();
    let (mut unchanged, mut changed) = (0u64, 0u64);
    let res = probe(&shared.config.upstream, &via, &mut waiting, |id, same| {
        if same {
            unchanged += 1;
        } else {
            changed += 1;
            let _ = refetch.send(id);
        }
    })
    .await;
    let unanswered = waiting.len() as u64;
    for c in waiting {
        let _ = refetch.send(c.id);
    }
    shared.metrics.probe("unchanged", unchanged);
    shared.metrics.probe("changed", changed);
    shared.metrics.probe("unanswered", unanswered);
    static WARNED: AtomicBool = AtomicBool::new(false);
    match res {
        Ok(()) => {
            tracing::info!(
                repos = total,
                unchanged,
                changed,
                unanswered,
                duration_ms = started.elapsed().as_millis() as u64,
                "reconcile probe done: fetching only what changed"
            );
        }
        Err(e) if !WARNED.swap(true, Ordering::Relaxed) => tracing::warn!(
            error = %e,
            repos = total,
            unchanged,
            unanswered,
            "the upstream did not answer the reconcile probe for every repository (a restricted shell such as git-shell?): the rest are fetched one by one"
        ),
        Err(e) => tracing::debug!(error = %e, unanswered, "reconcile probe incomplete"),
    }
}

/// Runs the command and reads its answer, calling `answered(id, unchanged)` for each repository
/// (taken off `waiting`) as it comes.
async fn probe(
    upstream: &UpstreamUrl,
    via: &Via,
    waiting: &mut VecDeque<Candidate>,
    mut answered: impl FnMut(RepoId, bool),
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
        return Err(ProbeError::Garbled("no pipes"));
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
            answered(c.id, adv.as_ref().is_some_and(|a| a.matches(&c.served)));
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

/// The first line of what ssh (or the upstream) printed on stderr; the rest is read and dropped.
async fn first_line(stderr: impl AsyncRead + Unpin) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut first = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        if first.is_empty() && !l.trim().is_empty() {
            first = l.chars().take(300).collect();
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
    let mut header = String::new();
    if idle(out.read_line(&mut header)).await? == 0 {
        return Ok(None);
    }
    if header.strip_prefix("# ").map(|h| h.trim_end_matches('\n')) != Some(path) {
        return Err(ProbeError::Garbled("a header for another repository"));
    }
    let mut adv = Advertised::default();
    loop {
        let mut head = [0u8; 4];
        idle(out.read_exact(&mut head)).await?;
        if &head == b"# fa" {
            let mut rest = String::new();
            idle(out.read_line(&mut rest)).await?;
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

#[cfg(test)]
mod tests;
