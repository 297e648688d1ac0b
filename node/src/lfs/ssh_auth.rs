//! The farm's own way into the upstream's LFS server when no user's credentials come with a
//! request (prefetch, SSH users, sessions): `git-lfs-authenticate <path> download|upload` run
//! over SSH with the farm's upstream key (what git-lfs itself does for an ssh:// remote; Bitbucket,
//! GitHub, GitLab and Gitea answer it), answered with the LFS endpoint and a header that
//! authorizes it. Answers are kept until shortly before they expire; they are never logged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::lfs::upstream::{AuthenticateDoc, UpstreamError};
use crate::names::RepoId;
use crate::sync::transport::sh_quote;
use crate::upstream_url::UpstreamUrl;

/// How long one `git-lfs-authenticate` may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The largest answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// How long an answer without an expiry is reused.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Runs `git-lfs-authenticate` on an ssh:// upstream.
pub struct SshAuth {
    /// The ssh command line (as git's `GIT_SSH_COMMAND`).
    ssh: String,
    /// `-p <port> -l <user> -- <host>`, quoted.
    target: String,
    /// The upstream's base path.
    base: String,
    cache: Mutex<HashMap<(RepoId, bool), (AuthenticateDoc, Instant)>>,
}

impl SshAuth {
    /// For `upstream` when it is ssh://, with the command line git fetches with.
    pub fn new(upstream: &UpstreamUrl, ssh_command: Option<String>) -> Option<Self> {
        let (
            UpstreamUrl::Ssh {
                user,
                host,
                port,
                base,
            },
            Some(ssh),
        ) = (upstream, ssh_command)
        else {
            return None;
        };
        let mut target = String::new();
        if let Some(p) = port {
            target.push_str(&format!("-p {p} "));
        }
        if let Some(u) = user {
            target.push_str(&format!("-l {} ", sh_quote(u)));
        }
        target.push_str(&format!("-- {}", sh_quote(host)));
        Some(Self {
            ssh,
            target,
            base: base.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The endpoint and header for `repo` (`upload`: for sending objects).
    pub async fn authenticate(
        &self,
        repo: &RepoId,
        upload: bool,
    ) -> Result<AuthenticateDoc, UpstreamError> {
        let key = (repo.clone(), upload);
        if let Some((doc, until)) = self.cache.lock().get(&key) {
            if Instant::now() < *until {
                return Ok(doc.clone());
            }
        }
        let path = format!("{}/{}", self.base, repo.rel_path());
        let op = if upload { "upload" } else { "download" };
        let remote = format!("git-lfs-authenticate {} {op}", sh_quote(&path));
        let line = format!("{} {} {}", self.ssh, self.target, sh_quote(&remote));
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(line)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let no = |why: String| UpstreamError::NoFarmAccess(why);
        let out = tokio::time::timeout(TIMEOUT, cmd.output())
            .await
            .map_err(|_| no("git-lfs-authenticate over SSH did not answer in time".into()))?
            .map_err(|e| no(format!("cannot run ssh: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err.lines().next().unwrap_or("").trim();
            return Err(no(format!("git-lfs-authenticate over SSH failed: {first}")));
        }
        if out.stdout.len() > MAX_ANSWER {
            return Err(no("git-lfs-authenticate answered too much".into()));
        }
        let doc: AuthenticateDoc = serde_json::from_slice(&out.stdout)
            .map_err(|e| no(format!("git-lfs-authenticate answered something else: {e}")))?;
        let ttl = doc
            .expires_in
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TTL);
        // Reused until 30 s (or half its life) before it runs out.
        let keep = ttl.saturating_sub(Duration::from_secs(30).min(ttl / 2));
        self.cache
            .lock()
            .insert(key, (doc.clone(), Instant::now() + keep));
        Ok(doc)
    }
}
