//! One sync of one repository: fetch the upstream's refs into the hidden staging namespace
//! (clients keep being served the previous state meanwhile), then flip the visible refs to the
//! staged state in one atomic step.

use std::time::{Duration, Instant};

use crate::gitcmd::{self, GitError};
use crate::mirror_repo::{MirrorRepo, RepoError, STAGING, STAGING_HEAD};
use crate::names::{RefName, RepoId};
use crate::packed_refs::{refs_hash, RefMap};
use crate::store::SyncResult;
use crate::sync::classify::classify;

/// What a successful sync did.
#[derive(Debug, Clone)]
pub struct Synced {
    /// Refs added, changed or removed.
    pub changed: usize,
    /// Those refs (the first [`crate::sync::notify::MAX_LISTED_REFS`]).
    pub changed_refs: Vec<crate::sync::notify::ChangedRef>,
    /// Hash of the ref map now served.
    pub refs_hash: String,
    /// How long it took.
    pub elapsed: Duration,
    /// A newer state appeared in the farm while this one waited: sync again at once.
    pub again: bool,
    /// Bytes the repository takes on disk, when counted (after a change, or when never counted).
    pub size_bytes: Option<u64>,
}

/// A state fetched into the hidden staging namespace: complete, not yet advertised.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The staged refs (visible names).
    pub refs: RefMap,
    /// The branch HEAD will name.
    pub head: Option<RefName>,
    /// Hash of refs and HEAD, as it will be served.
    pub hash: String,
    /// The refs served when this state was staged, the ones kept from the state before, and
    /// the branch HEAD named: read together with the staged refs (one `for-each-ref`); only
    /// this sync writes the repository's refs, so they still hold when it flips.
    served: RefMap,
    previous: RefMap,
    served_head: Option<String>,
}

impl Staged {
    /// The objects the refs served when it was staged name.
    pub fn served_tips(&self) -> Vec<String> {
        self.served.values().map(|v| v.oid.clone()).collect()
    }
}

/// Why a sync failed.
#[derive(Debug, Clone)]
pub struct SyncFailure {
    /// What kind of failure.
    pub kind: SyncResult,
    /// Message for logs and /status.
    pub message: String,
}

impl From<RepoError> for SyncFailure {
    fn from(e: RepoError) -> Self {
        let message = e.to_string();
        let kind = match &e {
            RepoError::Git(GitError::Status { stderr, .. }) => classify(stderr),
            RepoError::Git(GitError::Timeout { .. }) => SyncResult::Unreachable,
            _ => SyncResult::Failed,
        };
        Self { kind, message }
    }
}

/// Settings of one sync.
pub struct FetchPlan<'a> {
    /// The repository.
    pub id: &'a RepoId,
    /// Its local mirror.
    pub repo: &'a MirrorRepo,
    /// The URL to fetch from.
    pub url: String,
    /// Environment for the upstream transport.
    pub env: &'a [(&'static str, String)],
    /// Time limit of the fetch.
    pub timeout: Duration,
    /// Version of the system git (decides how repositories are kept in serving shape).
    pub git: (u32, u32, u32),
    /// Fetching from another farm member (the repository's leader) rather than the upstream:
    /// git's `-c` settings for its farm channel.
    pub member_config: Option<Vec<String>>,
}

/// Fetches into the staging namespace. `head_hint` is the branch HEAD should name when it is one
/// at the upstream HEAD's commit (a follower passes its leader's choice; otherwise the current one).
pub async fn stage(
    plan: &FetchPlan<'_>,
    head_hint: Option<RefName>,
) -> Result<Staged, SyncFailure> {
    let repo = plan.repo;
    let current_head = repo.prepare().await?;
    fetch(plan, true).await?;
    let sets = repo.read_ref_sets().await?;
    let hint = head_hint.or_else(|| current_head.as_deref().and_then(RefName::parse));
    let head = choose_head(
        &sets.staged,
        sets.staged_head.as_deref(),
        hint.as_ref().map(RefName::as_str),
    )
    .or_else(|| current_head.as_deref().and_then(RefName::parse));
    let hash = refs_hash(&sets.staged, head.as_ref());
    Ok(Staged {
        refs: sets.staged,
        head,
        hash,
        served: sets.visible,
        previous: sets.previous,
        served_head: current_head,
    })
}

/// Makes a staged state the served one in one atomic step (the replaced state and the one before
/// it stay hidden so requests negotiated against them still work). Follow with [`maintain`] when
/// refs changed.
pub async fn flip(plan: &FetchPlan<'_>, staged: &Staged) -> Result<Synced, SyncFailure> {
    let started = Instant::now();
    let repo = plan.repo;
    let (current, current_head) = (&staged.served, staged.served_head.as_deref());
    let (changed, changed_refs) = changes(current, &staged.refs);
    let head_changed =
        staged.head.is_some() && staged.head.as_ref().map(RefName::as_str) != current_head;
    if changed > 0 || head_changed {
        repo.apply(
            &staged.refs,
            current,
            &staged.previous,
            staged.head.as_ref(),
            current_head,
        )
        .await?;
    }
    Ok(Synced {
        changed,
        changed_refs,
        refs_hash: staged.hash.clone(),
        elapsed: started.elapsed(),
        again: false,
        size_bytes: None,
    })
}

/// Keeps the repository cheap to serve after its refs changed (the new state is already served).
pub async fn maintain(plan: &FetchPlan<'_>) {
    let t = Instant::now();
    match plan.repo.maintain(plan.git).await {
        Ok(()) => {
            tracing::debug!(repo = %plan.id, duration_ms = t.elapsed().as_millis() as u64, "repository maintained")
        }
        Err(e) => {
            tracing::warn!(repo = %plan.id, error = %e, "repository maintenance failed (serving continues)")
        }
    }
}

/// The first git whose `fetch` takes `--no-auto-maintenance`; before it, `gc.auto=0` keeps the
/// `gc --auto` it runs from doing anything.
const NO_AUTO_MAINTENANCE: (u32, u32, u32) = (2, 29, 0);

async fn fetch(plan: &FetchPlan<'_>, with_head: bool) -> Result<(), SyncFailure> {
    let mut args: Vec<String> = plan
        .member_config
        .iter()
        .flatten()
        .flat_map(|c| ["-c".to_owned(), c.clone()])
        .collect();
    // No `git maintenance run --auto` (or `gc --auto`) after each fetch: a process more per
    // sync, detached, that could repack beside this node's own maintenance (`maintain`).
    let flag = plan.git >= NO_AUTO_MAINTENANCE;
    if !flag {
        args.extend(["-c".to_owned(), "gc.auto=0".to_owned()]);
    }
    args.extend(["fetch".to_owned(), "--quiet".into()]);
    if flag {
        args.push("--no-auto-maintenance".into());
    }
    args.extend([
        "--prune".to_owned(),
        "--force".into(),
        "--no-tags".into(),
        "--".into(),
        plan.url.clone(),
    ]);
    // From the upstream: all its refs and HEAD. From the leader: the state it staged (which its
    // farm channel exposes), so followers stage before the leader advertises.
    if plan.member_config.is_some() {
        args.push(format!("+{STAGING}*:{STAGING}*"));
        if with_head {
            args.push(format!("+{STAGING_HEAD}:{STAGING_HEAD}"));
        }
    } else {
        args.push(format!("+refs/*:{STAGING}*"));
        if with_head {
            args.push(format!("+HEAD:{STAGING_HEAD}"));
        }
    }
    // Members are reached directly, never through a proxy of the environment.
    let member_env = [("NO_PROXY", "*".to_owned()), ("no_proxy", "*".to_owned())];
    let env = if plan.member_config.is_some() {
        &member_env[..]
    } else {
        plan.env
    };
    let res = gitcmd::run(Some(plan.repo.path()), &args, env, None, plan.timeout).await;
    match res {
        Ok(_) => Ok(()),
        // An empty upstream (or one with an unborn HEAD) has no HEAD to fetch: fetch the refs alone.
        Err(GitError::Status { stderr, .. })
            if with_head
                && (stderr.contains("couldn't find remote ref HEAD")
                    || stderr.contains(&format!("couldn't find remote ref {STAGING_HEAD}"))) =>
        {
            let _ = gitcmd::run(
                Some(plan.repo.path()),
                ["update-ref", "-d", STAGING_HEAD],
                &[],
                None,
                plan.timeout,
            )
            .await;
            Box::pin(fetch(plan, false)).await
        }
        Err(e) => Err(RepoError::from(e).into()),
    }
}

/// Picks the branch HEAD should name: the current one if the upstream HEAD still points where it
/// does, else a branch at the upstream HEAD's commit (preferring main, then master).
fn choose_head(staged: &RefMap, head_oid: Option<&str>, current: Option<&str>) -> Option<RefName> {
    let oid = head_oid?;
    let at_head = |n: &RefName| n.as_str().starts_with("refs/heads/") && staged[n].oid == oid;
    if let Some(c) = current.and_then(RefName::parse) {
        if staged.contains_key(&c) && at_head(&c) {
            return Some(c);
        }
    }
    let candidates: Vec<&RefName> = staged.keys().filter(|n| at_head(n)).collect();
    for pref in ["refs/heads/main", "refs/heads/master"] {
        if let Some(c) = candidates.iter().find(|c| c.as_str() == pref) {
            return Some((*c).clone());
        }
    }
    candidates.first().map(|c| (*c).clone())
}

/// How many refs changed between two states, and the first of them.
fn changes(old: &RefMap, new: &RefMap) -> (usize, Vec<crate::sync::notify::ChangedRef>) {
    use crate::sync::notify::{ChangedRef, MAX_LISTED_REFS};
    let changed = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| ChangedRef {
            name: k.as_str().to_owned(),
            before: old.get(k).map(|o| o.oid.clone()),
            after: Some(v.oid.clone()),
        });
    let removed = old
        .iter()
        .filter(|(k, _)| !new.contains_key(*k))
        .map(|(k, v)| ChangedRef {
            name: k.as_str().to_owned(),
            before: Some(v.oid.clone()),
            after: None,
        });
    let mut total = 0;
    let mut listed = Vec::new();
    for c in changed.chain(removed) {
        total += 1;
        if listed.len() < MAX_LISTED_REFS {
            listed.push(c);
        }
    }
    (total, listed)
}

/// Logs a finished sync, one line per sync.
pub fn log_result(id: &RepoId, res: &Result<Synced, SyncFailure>, elapsed: Duration) {
    match res {
        Ok(s) => {
            tracing::info!(repo = %id, duration_ms = elapsed.as_millis() as u64, refs_changed = s.changed, "sync ok")
        }
        Err(f) => {
            tracing::warn!(repo = %id, duration_ms = elapsed.as_millis() as u64, result = ?f.kind, error = %f.message, "sync failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed_refs::RefValue;

    fn map(items: &[(&str, &str)]) -> RefMap {
        items
            .iter()
            .map(|(n, o)| {
                (
                    RefName::parse(n).expect("ref"),
                    RefValue {
                        oid: o.to_string(),
                        peeled: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn head_choice_and_change_count() {
        let staged = map(&[
            ("refs/heads/dev", "1"),
            ("refs/heads/main", "1"),
            ("refs/heads/x", "2"),
        ]);
        let pick = |cur| choose_head(&staged, Some("1"), cur).map(|r| r.to_string());
        assert_eq!(pick(None).as_deref(), Some("refs/heads/main"));
        assert_eq!(
            pick(Some("refs/heads/dev")).as_deref(),
            Some("refs/heads/dev")
        );
        assert_eq!(
            pick(Some("refs/heads/x")).as_deref(),
            Some("refs/heads/main")
        );
        assert!(choose_head(&staged, None, None).is_none());
        let old = map(&[("refs/heads/main", "0"), ("refs/heads/gone", "3")]);
        let (n, listed) = changes(&old, &staged);
        assert_eq!(n, 4);
        let gone = listed
            .iter()
            .find(|c| c.name == "refs/heads/gone")
            .expect("deleted ref listed");
        assert_eq!(
            (gone.before.as_deref(), gone.after.as_deref()),
            (Some("3"), None)
        );
        let main = listed
            .iter()
            .find(|c| c.name == "refs/heads/main")
            .expect("changed ref listed");
        assert_eq!(
            (main.before.as_deref(), main.after.as_deref()),
            (Some("0"), Some("1"))
        );
    }

    #[tokio::test]
    async fn a_fetch_leaves_no_automatic_maintenance_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = dir.path().join("up.git");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("git runs");
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        let up_s = up.to_str().expect("utf-8 path");
        git(&["init", "-q", "--bare", up_s]);
        let tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
        let commit = git(&[
            "-C",
            up_s,
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit-tree",
            tree,
            "-m",
            "one",
        ]);
        git(&["-C", up_s, "update-ref", "refs/heads/main", commit.trim()]);
        let trace = dir.path().join("trace");
        let env = [("GIT_TRACE", trace.display().to_string())];
        let (id, repo) = (
            RepoId::parse("P/r").expect("id"),
            MirrorRepo::new(dir.path().join("P/r.git")),
        );
        let plan = FetchPlan {
            id: &id,
            repo: &repo,
            url: format!("file://{up_s}"),
            env: &env,
            timeout: Duration::from_secs(60),
            git: crate::gitcmd::check_git().await.expect("git version"),
            member_config: None,
        };
        let staged = stage(&plan, None).await.expect("stage");
        assert_eq!(staged.refs.len(), 1, "{:?}", staged.refs);
        let trace = std::fs::read_to_string(&trace).expect("trace");
        // The trace shows the processes the fetch started (the upload-pack at least), and none
        // of them is git's automatic maintenance.
        assert!(trace.contains("git-upload-pack"), "{trace}");
        assert!(
            !trace.contains("maintenance run") && !trace.contains("gc --auto"),
            "{trace}"
        );
    }
}
