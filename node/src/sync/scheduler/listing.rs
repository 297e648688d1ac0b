//! The scheduler's listings: taking one (here or from the farm) and reconciling the mirrors
//! with it (new ones synced, gone ones forgotten, unchanged ones by fingerprint skipped).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{remove_dir, Scheduler};
use crate::forge::inventory::Wanted;
use crate::names::RepoId;
use crate::store::SyncResult;
use crate::sync::probe;

impl Scheduler {
    /// Starts listing the repositories to mirror (once more after the one under way, if one is
    /// and this is `fresh`). In a farm one member lists the upstream for all; a periodic listing
    /// may be one taken in the last half interval, a `fresh` one (a trigger, a webhook) is taken
    /// after it was asked for.
    pub(super) fn list(&mut self, fresh: bool) {
        if self.listing.is_some() {
            self.relist |= fresh;
            return;
        }
        let shared = self.shared.clone();
        let coordinator = self.coordinator.clone();
        let max_age = if fresh {
            Duration::ZERO
        } else {
            self.shared.config.sync_interval / 2
        };
        let since = std::time::Instant::now();
        let since = since.checked_sub(max_age).unwrap_or(since);
        self.listing = Some(tokio::spawn(async move {
            if shared.inventory.lists_upstream() {
                if let Some(w) = coordinator.listing(fresh).await {
                    return w;
                }
            }
            shared.inventory.wanted_since(since).await
        }));
    }

    /// Takes a new listing: forgets the repositories no longer mirrored and syncs the others,
    /// but for those whose upstream fingerprint says this node already has their state.
    pub(super) async fn reconcile(&mut self, wanted: Wanted) {
        let removed = self.apply_inventory(&wanted);
        if !wanted.complete {
            tracing::warn!(
                "the listing of the upstream is incomplete (nothing listed before to keep): no mirror is removed"
            );
        }
        for id in removed {
            self.forget(id).await;
        }
        self.shared.listed.store(true, Ordering::Release);
        // The farm looks at every repository again (some came or went; the node is listed now).
        self.shared.all_changed();
        let (mut skipped, mut awaiting) = (0usize, 0usize);
        let mut candidates = Vec::new();
        for (id, fingerprint) in wanted.repos {
            // In a farm, a repository another member leads is followed through its gossip: no
            // periodic sync here (a new one, with nothing served yet, is synced from the leader).
            if self.followed(&id) {
                continue;
            }
            // A new one its leader holds nothing of yet: synced when the leader says it staged
            // a state (a fetch from it now would only be refused).
            if self.awaits_leader(&id) {
                awaiting += 1;
                continue;
            }
            if let Some(fp) = fingerprint {
                let current = self.shared.repos.read().get(&id).is_some_and(|e| {
                    e.servable() && e.upstream_fingerprint.as_deref() == Some(fp.as_str())
                });
                if current {
                    skipped += 1;
                    continue;
                }
                if !self.running.contains(&id) {
                    self.fingerprints.insert(id.clone(), fp);
                }
            } else if let Some(served) = self.probe_candidate(&id) {
                let mirror = self.shared.repo_path(&id);
                candidates.push(probe::Candidate::new(id, served, mirror));
                continue;
            }
            self.queue.push(id);
        }
        self.fill();
        self.start_probe(candidates);
        if awaiting > 0 {
            tracing::debug!(
                awaiting,
                "new repositories whose leader holds nothing yet: synced when it stages them"
            );
        }
        if skipped > 0 {
            tracing::debug!(
                skipped,
                "repositories unchanged upstream (by fingerprint) not synced"
            );
        }
    }

    /// Whether another member leads `id` and this node follows it through the leader's states
    /// (no periodic sync here): it serves the state of a successful sync (a repository whose last
    /// sync failed is synced again: its error may pass).
    fn followed(&self, id: &RepoId) -> bool {
        self.coordinator.led_elsewhere(id)
            && self
                .shared
                .repos
                .read()
                .get(id)
                .is_some_and(|e| e.servable() && e.record.last_result == Some(SyncResult::Ok))
    }

    /// The hash of `id`'s served state when a reconcile probe may stand in for its fetch: the
    /// upstream is probed, this node fetches it from there, and it serves the state of a
    /// successful sync (nothing newer staged, no sync running).
    fn probe_candidate(&self, id: &RepoId) -> Option<String> {
        if self.probe.is_none() || self.running.contains(id) {
            return None;
        }
        let served = self.shared.repos.read().get(id).and_then(|e| {
            let staged_newer = e
                .staged
                .as_ref()
                .is_some_and(|s| s.refs_hash != e.record.refs_hash);
            (e.servable()
                && e.withheld.is_none()
                && e.record.last_result == Some(SyncResult::Ok)
                && !staged_newer)
                .then(|| e.record.refs_hash.clone())
        })?;
        self.coordinator.fetches_upstream(id).then_some(served)
    }

    /// Starts a reconcile probe of `candidates`; while one runs, they wait for it to end (the
    /// newest reconcile's replacing an older one's).
    pub(super) fn start_probe(&mut self, candidates: Vec<probe::Candidate>) {
        let (Some(via), false) = (&self.probe, candidates.is_empty()) else {
            return;
        };
        if self.probing.is_some() {
            tracing::debug!(
                repos = candidates.len(),
                "a reconcile probe is under way: probing again after it"
            );
            self.probe_next = Some(candidates);
            return;
        }
        self.probing = Some(tokio::spawn(probe::run(
            self.shared.clone(),
            via.clone(),
            candidates,
            self.answers.0.clone(),
        )));
    }

    /// Takes a probe's answer for one repository: fetched, or — when it still serves the state
    /// the upstream confirmed and no sync runs — recorded as synced now, without a fetch.
    pub(super) fn answered(&mut self, answer: probe::Answer) {
        let (id, hash) = match answer {
            // Led by another member by now (a node probes at its start, before the farm's view
            // shows the others, everything it holds): following it fetches what its leader has.
            probe::Answer::Fetch(id) | probe::Answer::Confirmed(id, _) if self.followed(&id) => {
                self.shared.metrics.probe("followed", 1);
                return;
            }
            probe::Answer::Fetch(id) => {
                self.queue.push(id);
                self.fill();
                return;
            }
            probe::Answer::Confirmed(id, hash) => (id, hash),
        };
        // Still a repository the probe may stand for, at the state it confirmed (it may have
        // moved here meanwhile, or a sync may run: then that, or a fetch, tells).
        if self.probe_candidate(&id).as_deref() != Some(hash.as_str()) {
            self.shared.metrics.probe("changed", 1);
            if !self.running.contains(&id) {
                self.queue.push(id);
                self.fill();
            }
            return;
        }
        self.shared.metrics.probe("unchanged", 1);
        let Some(rec) = self.shared.repos.read().get(&id).map(|e| {
            let mut rec = e.record.clone();
            let now = crate::store::now_ms();
            rec.last_sync_ms = Some(now);
            rec.last_success_ms = Some(now);
            rec
        }) else {
            return;
        };
        // Durable with the next group commit; a crash loses only these times.
        if let Err(e) = self.shared.store.write_soon(&id, rec.clone()) {
            tracing::error!(repo = %id, error = %e, "cannot record a confirmed state");
        }
        if let Some(e) = self.shared.repos.write().get_mut(&id) {
            e.record = rec;
        }
    }

    /// Adds what the listing holds; removes (and returns) what it does not, when it is complete.
    fn apply_inventory(&mut self, wanted: &Wanted) -> Vec<RepoId> {
        let mut repos = self.shared.repos.write();
        let removed: Vec<RepoId> = repos
            .keys()
            .filter(|k| wanted.complete && !wanted.repos.contains_key(*k))
            .cloned()
            .collect();
        for id in &removed {
            repos.remove(id);
        }
        for id in wanted.repos.keys() {
            repos.get_or_default(id);
        }
        removed
    }

    /// Stops mirroring a repository: the caller already took it out of the served map.
    async fn forget(&mut self, id: RepoId) {
        tracing::info!(repo = %id, "repository is no longer mirrored; removing it");
        self.retries.remove(&id);
        self.pending.remove(&id);
        self.fingerprints.remove(&id);
        self.awaited.remove(&id);
        // Through the record writer: a finished sync's record waiting there is not written
        // after the removal.
        if let Err(e) = self.shared.store.write_now(&id, None).await {
            tracing::error!(repo = %id, error = %e, "cannot remove repository record");
        }
        if !self.running.contains(&id) {
            remove_dir(self.shared.repo_path(&id)).await;
        }
    }
}
