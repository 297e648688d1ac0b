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
    /// The object the staged upstream HEAD names (`refs/mirrorfarm/staging-head`), if any.
    pub head_oid: Option<String>,
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

    /// The refs served while this state is staged, and the branch HEAD names.
    pub fn served(&self) -> (&RefMap, Option<&str>) {
        (&self.served, self.served_head.as_deref())
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
        head_oid: sets.staged_head,
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

/// The first git whose `fetch` takes `--no-auto-maintenance` (older ones start a `gc --auto`
/// after each fetch, which the mirror's `gc.auto = 0` keeps idle).
const NO_AUTO_MAINTENANCE: (u32, u32, u32) = (2, 29, 0);

async fn fetch(plan: &FetchPlan<'_>, with_head: bool) -> Result<(), SyncFailure> {
    let mut args: Vec<String> = plan
        .member_config
        .iter()
        .flatten()
        .flat_map(|c| ["-c".to_owned(), c.clone()])
        .collect();
    args.extend(["fetch".to_owned(), "--quiet".into()]);
    // No `git maintenance run --auto` after each fetch: a process more per sync, with nothing
    // to do (the mirror's `gc.auto = 0`: the node maintains its mirrors itself, see `maintain`).
    if plan.git >= NO_AUTO_MAINTENANCE {
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
    // From a member: no proxy (its `-c http.proxy=`) and nothing of the environment's changed.
    let env = match &plan.member_config {
        Some(_) => &[],
        None => plan.env,
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
pub(crate) fn choose_head(
    staged: &RefMap,
    head_oid: Option<&str>,
    current: Option<&str>,
) -> Option<RefName> {
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
mod tests;
