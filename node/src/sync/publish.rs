//! Making a staged state the served one: stage, let the coordinator decide when, flip in one
//! atomic step, and record the new state (memory, store, the farm's notice) with its generation.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::shared::Shared;
use crate::state::RepoEntry;
use crate::store::{now_ms, SyncResult};
use crate::sync::coordinator::{Coordinator, Verdict};
use crate::sync::fetch::{self, FetchPlan, SyncFailure, Synced};

/// Stages the new state, waits until the coordinator lets it flip, and flips to it. The
/// concurrency permit may be given back while waiting and is taken again to flip.
pub(crate) async fn stage_and_flip(
    shared: &Shared,
    coordinator: &dyn Coordinator,
    plan: &FetchPlan<'_>,
    head_hint: Option<crate::names::RefName>,
    permit: tokio::sync::OwnedSemaphorePermit,
    permits: &Arc<Semaphore>,
) -> Result<Synced, SyncFailure> {
    let t = std::time::Instant::now();
    let staged = fetch::stage(plan, head_hint).await?;
    let from_member = plan.member_config.is_some();
    tracing::debug!(repo = %plan.id, duration_ms = t.elapsed().as_millis() as u64, hash = %staged.hash, from_member, "staged");
    if !from_member {
        // This node took the state from the upstream (it leads the repository, or stands alone):
        // the LFS objects of the new commits are fetched beside the flip.
        let tips = staged.refs.values().map(|v| v.oid.clone()).collect();
        let old = staged.served_tips();
        crate::lfs::prefetch::start(&shared.lfs, plan.id, plan.repo.path().to_owned(), tips, old);
    }
    // Members fetching this state list it from memory until the flip (in a farm, where they
    // fetch from the member that took it from the upstream; one that took it from a member is
    // not fetched from, or rarely: a member asking it then is answered by git).
    let listed = (shared.config.farm.is_some() && !from_member)
        .then(|| shared.staged_refs.keep(plan.id, &staged));
    let t = std::time::Instant::now();
    let (verdict, permit) = coordinator.staged(plan.id, &staged, permit).await;
    drop(listed);
    tracing::debug!(repo = %plan.id, waited_ms = t.elapsed().as_millis() as u64, ?verdict, "may flip");
    let generation = match verdict {
        Verdict::Flip(g) => g,
        Verdict::Again { served } => {
            tracing::info!(repo = %plan.id, "the farm moved on while this state was staged; syncing again");
            return Ok(Synced {
                changed: 0,
                changed_refs: Vec::new(),
                refs_hash: served,
                elapsed: Duration::ZERO,
                again: true,
                size_bytes: None,
            });
        }
    };
    let _permit = match permit {
        Some(p) => p,
        None => permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed"),
    };
    flip_and_publish(shared, plan, &staged, generation).await
}

/// Flips to `staged`, serves the new state at once (memory, store; the farm's gossip at its next
/// pass), then maintains the repository.
async fn flip_and_publish(
    shared: &Shared,
    plan: &FetchPlan<'_>,
    staged: &fetch::Staged,
    generation: Option<u64>,
) -> Result<Synced, SyncFailure> {
    let t = std::time::Instant::now();
    let synced = fetch::flip(plan, staged).await?;
    tracing::debug!(repo = %plan.id, duration_ms = t.elapsed().as_millis() as u64, "flipped");
    let record = {
        let mut repos = shared.repos.write();
        repos.get_mut(plan.id).and_then(|e| {
            advance(e, &synced.refs_hash, generation).then(|| {
                e.record.last_result = Some(SyncResult::Ok);
                e.record.last_success_ms = Some(now_ms());
                e.record.clone()
            })
        })
    };
    if let Some(rec) = record {
        shared.repo_changed(plan.id);
        shared.served_changed.notify_waiters();
        // This node took the state from the upstream: it tells (one member per flip).
        if let (Some(n), None) = (&shared.notifier, &plan.member_config) {
            n.send(crate::sync::notify::Notice::new(
                plan.id,
                rec.generation,
                &rec.refs_hash,
                &synced.changed_refs,
                synced.changed,
            ));
        }
        if let Err(e) = shared.store.write_now(plan.id, Some(rec)).await {
            tracing::error!(repo = %plan.id, error = %e, "cannot record the new state");
        }
    }
    if synced.changed > 0 {
        fetch::maintain(plan).await;
    }
    let mut synced = synced;
    let uncounted = shared
        .repos
        .read()
        .get(plan.id)
        .is_some_and(|e| e.record.size_bytes.is_none());
    if synced.changed > 0 || uncounted {
        match crate::disk_size::of(plan.repo.path().to_owned()).await {
            Ok(b) => synced.size_bytes = Some(b),
            Err(e) => {
                tracing::debug!(repo = %plan.id, error = %e, "cannot count the repository's size")
            }
        }
    }
    Ok(synced)
}

/// Makes `refs_hash` the served state of `e` (the generation moves on, to `generation` when the
/// farm gives one; the replaced state is kept, two deep); false when it already was.
pub(crate) fn advance(e: &mut RepoEntry, refs_hash: &str, generation: Option<u64>) -> bool {
    if e.record.refs_hash == refs_hash && e.record.generation > 0 {
        return false;
    }
    if !e.record.refs_hash.is_empty() {
        // The replaced state's tips stay hidden in the repository (previous, older).
        e.kept.insert(0, std::mem::take(&mut e.record.refs_hash));
        e.kept.truncate(2);
    }
    e.record.refs_hash = refs_hash.to_owned();
    e.record.generation = generation.unwrap_or(e.record.generation + 1);
    if e.staged.as_ref().is_none_or(|s| s.refs_hash == refs_hash) {
        e.behind_since_ms = None;
    }
    true
}
