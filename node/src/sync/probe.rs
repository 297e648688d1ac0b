//! The reconcile probe: before a reconcile fetches every repository of an `ssh://` or `file://`
//! upstream, one command (over SSH, through the shared connection; for `file://`, the local
//! shell) reads what each one advertises — a POSIX shell loop over `upload-pack
//! --advertise-refs`, the repositories' paths on its stdin — and only those whose state would
//! differ from the served one are fetched. A fetch per repository costs the upstream an SSH
//! session, a shell and an upload-pack, and this node a `git fetch` and an `ssh` client; the
//! probe costs one upload-pack per repository. An upstream that refuses the command (a
//! restricted shell such as `git-shell`), or any repository it does not answer for, gets the
//! fetch it got before.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::process::Command;
use tokio::sync::mpsc;

use crate::mirror_repo::MirrorRepo;
use crate::names::RepoId;
use crate::shared::Shared;
use crate::upstream_url::UpstreamUrl;

mod advert;
mod stream;

/// A repository to probe.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The repository.
    pub id: RepoId,
    /// The hash of its served state ([`crate::packed_refs::refs_hash`]).
    pub served: String,
    /// Its mirror (whose HEAD a sync keeps when it can).
    pub mirror: PathBuf,
    /// What the mirror's HEAD names, once read (`Some(None)`: detached, or no branch; `None`:
    /// not read, or unreadable — then it is fetched, and the sync tells what is wrong).
    head: Option<Option<String>>,
}

impl Candidate {
    /// Whether a sync would leave the served state as it is, the upstream advertising `adv`
    /// (`None`: it could not read the repository).
    pub(super) fn unchanged(&self, adv: Option<&advert::Advertised>) -> bool {
        match (adv, &self.head) {
            (Some(a), Some(current)) => a.matches(&self.served, current.as_deref()),
            _ => false,
        }
    }

    /// A repository to probe, served at `served`, mirrored in `mirror`.
    pub fn new(id: RepoId, served: String, mirror: PathBuf) -> Self {
        Self {
            id,
            served,
            mirror,
            head: None,
        }
    }
}

/// Reads each candidate's mirror HEAD (on the blocking pool: thousands of small files).
async fn read_heads(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    let read = tokio::task::spawn_blocking(move || {
        for c in &mut candidates {
            c.head = MirrorRepo::new(c.mirror.clone())
                .head_target_blocking()
                .ok();
        }
        candidates
    });
    read.await.unwrap_or_default()
}

/// What the probe found for one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Fetch it: it changed, or the probe could not tell.
    Fetch(RepoId),
    /// The upstream holds the state of this hash, which was the one served when the probe began.
    Confirmed(RepoId, String),
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

/// The loop the upstream's shell runs with `upload_pack`: for each path read, a header line,
/// then the repository's advertisement (ending with a flush packet) or a `# failed` line.
fn script(upload_pack: &str) -> String {
    format!(
        "while IFS= read -r d; do printf '# %s\\n' \"$d\"; \
         {upload_pack} --advertise-refs \"$d\" </dev/null 2>/dev/null || printf '# failed\\n'; done"
    )
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

    /// The command that runs [`script`] at the upstream.
    fn command(&self, upstream: &UpstreamUrl) -> Option<Command> {
        let mut cmd = Command::new("sh");
        match (self, upstream) {
            (
                Self::Ssh(ssh),
                UpstreamUrl::Ssh {
                    user, host, port, ..
                },
            ) => {
                // git runs GIT_SSH_COMMAND through the shell the same way (it is a command
                // line); `exec`: the process this node stops is ssh itself.
                cmd.arg("-c")
                    .arg(format!("exec {ssh} \"$@\""))
                    .arg("mirrorfarm-probe");
                if let Some(p) = port {
                    cmd.arg("-p").arg(p.to_string());
                }
                cmd.arg("--").arg(match user {
                    Some(u) => format!("{u}@{host}"),
                    None => host.clone(),
                });
                // What a fetch runs there.
                cmd.arg(script("git-upload-pack"));
            }
            (Self::Local, UpstreamUrl::File { .. }) => {
                // The git a local fetch runs (its exec-path's upload-pack).
                cmd.arg("-c").arg(script("git upload-pack"));
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

/// Probes `candidates`, sending each one's [`Answer`] to `answers` as soon as it is known (all
/// of them, also those the upstream did not answer for).
pub async fn run(
    shared: Arc<Shared>,
    via: Via,
    candidates: Vec<Candidate>,
    answers: mpsc::UnboundedSender<Answer>,
) {
    let started = Instant::now();
    let total = candidates.len();
    let ids: Vec<RepoId> = candidates.iter().map(|c| c.id.clone()).collect();
    let candidates = read_heads(candidates).await;
    if candidates.len() != total {
        // The blocking pool failed (shutting down, say): the reconcile fetches as before.
        for id in ids {
            let _ = answers.send(Answer::Fetch(id));
        }
        return;
    }
    drop(ids);
    let mut waiting: VecDeque<Candidate> = candidates.into();
    let (mut unchanged, mut changed) = (0u64, 0u64);
    let res = stream::probe(&shared.config.upstream, &via, &mut waiting, |c, adv| {
        let answer = if c.unchanged(adv.as_ref()) {
            unchanged += 1;
            Answer::Confirmed(c.id, c.served)
        } else {
            changed += 1;
            Answer::Fetch(c.id)
        };
        let _ = answers.send(answer);
    })
    .await;
    let unanswered = waiting.len() as u64;
    for c in waiting {
        let _ = answers.send(Answer::Fetch(c.id));
    }
    // Unchanged ones are counted as the scheduler takes them (one may have moved here since).
    shared.metrics.probe("changed", changed);
    shared.metrics.probe("unanswered", unanswered);
    let took = started.elapsed().as_millis() as u64;
    static WARNED_ENDED: AtomicBool = AtomicBool::new(false);
    static WARNED_FAILED: AtomicBool = AtomicBool::new(false);
    match res {
        Ok(()) => tracing::info!(
            repos = total,
            unchanged,
            changed,
            duration_ms = took,
            "reconcile probe done: fetching only what changed"
        ),
        Err(e @ stream::ProbeError::Ended(_)) if !WARNED_ENDED.swap(true, Ordering::Relaxed) => {
            tracing::warn!(
                error = %e,
                repos = total,
                unanswered,
                "the upstream did not answer the reconcile probe (a restricted shell such as git-shell?): those repositories are fetched one by one (warned once)"
            )
        }
        Err(e @ stream::ProbeError::Ended(_)) => {
            tracing::debug!(error = %e, unanswered, "reconcile probe refused")
        }
        Err(e) if !WARNED_FAILED.swap(true, Ordering::Relaxed) => tracing::warn!(
            error = %e,
            repos = total,
            unanswered,
            duration_ms = took,
            "the reconcile probe failed: the repositories it did not answer for are fetched one by one (warned once)"
        ),
        Err(e) => tracing::info!(error = %e, unanswered, "reconcile probe failed"),
    }
}

#[cfg(test)]
mod tests;
