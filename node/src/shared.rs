//! What every part of a node shares: configuration, home, identity, the state store, the tool
//! versions, the repository map and the metrics. The parts keep their own state elsewhere
//! (serving: its caches; the farm: its view).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::home::Home;
use crate::identity::Identity;
use crate::names::RepoId;
use crate::state::{Lookup, RepoEntry};
use crate::store::{Store, SyncResult};

/// Shared by every task of a node.
pub struct Shared {
    /// Validated configuration.
    pub config: Config,
    /// Home paths.
    pub home: Home,
    /// Identity (node ID, farm ID, key).
    pub identity: Identity,
    /// Durable store.
    pub store: Store,
    /// System git version.
    pub git: (u32, u32, u32),
    /// OpenSSH client version (for ssh:// upstreams), if checked.
    pub openssh: (u32, u32, u32),
    /// Repositories currently mirrored, with the running tally [`Shared::summary`] reads.
    pub repos: crate::repo_map::RepoMap,
    /// The first inventory of repositories has been taken.
    pub listed: AtomicBool,
    /// Every repository once had a complete state at the same time (see [`Shared::ready`]).
    pub was_ready: AtomicBool,
    /// Prometheus metrics.
    pub metrics: crate::metrics::NodeMetrics,
    /// Woken when a repository's staged or served state changed here (the farm's next pass
    /// publishes it, paced: [`crate::farm::pace`]).
    pub repos_changed: tokio::sync::Notify,
    /// Which repositories changed since the farm's last look ([`Shared::repo_changed`]).
    pub changed: parking_lot::Mutex<Changed>,
    /// Woken (all waiters) when a repository's served state advanced.
    pub served_changed: tokio::sync::Notify,
    /// Who may read and push: credentials, decisions, sessions.
    pub gate: crate::access::Gate,
    /// Since when another farm member has not reached the upstream (Unix ms; 0: it has).
    pub farm_stale_since: std::sync::atomic::AtomicI64,
    /// Git LFS: the object store and where objects come from.
    pub lfs: std::sync::Arc<crate::lfs::Lfs>,
    /// Which repositories the upstream has (listed at every reconcile).
    pub inventory: std::sync::Arc<crate::forge::inventory::Inventory>,
    /// What to mirror: the file's selection or the admin page's.
    pub selection: std::sync::Arc<crate::selection::Selection>,
    /// The last hour of this member, for the admin page's plots.
    pub series: crate::series::Series,
    /// The API token and the webhook secret (re-read on SIGHUP).
    pub secrets: std::sync::Arc<crate::secrets::Secrets>,
    /// The states this node staged and has not flipped yet, as a member's fetch lists them.
    pub staged_refs: crate::staged_refs::StagedRefs,
    /// Sync-complete notices (`mirror.notify.url`).
    pub notifier: Option<crate::sync::notify::Notifier>,
}

/// Repositories whose state changed since the farm last looked.
#[derive(Debug, Default)]
pub struct Changed {
    /// Any of them (a listing added or removed some).
    pub all: bool,
    /// These.
    pub repos: std::collections::HashSet<RepoId>,
}

impl Shared {
    /// `id`'s staged or served state changed: the farm publishes and acts on it at its next
    /// round, which this wakes (paced: [`crate::farm::pace`]).
    pub fn repo_changed(&self, id: &RepoId) {
        self.mark_changed(id);
        self.repos_changed.notify_one();
    }

    /// `id`'s state as the farm sees it changed: it is acted on at the farm's next round, which
    /// the caller wakes (news from other members wakes it at once, unpaced).
    pub fn mark_changed(&self, id: &RepoId) {
        self.changed.lock().repos.insert(id.clone());
    }

    /// Repositories came or went: the farm looks at all of them at its next round.
    pub fn all_changed(&self) {
        self.changed.lock().all = true;
        self.repos_changed.notify_one();
    }

    /// Whether nothing changed since [`Shared::take_changed`] last took it.
    pub fn nothing_changed(&self) -> bool {
        let c = self.changed.lock();
        !c.all && c.repos.is_empty()
    }

    /// What changed since the last call.
    pub fn take_changed(&self) -> Changed {
        std::mem::take(&mut *self.changed.lock())
    }

    /// Path of a repository's bare mirror.
    pub fn repo_path(&self, id: &RepoId) -> PathBuf {
        self.home.repos_dir().join(id.rel_path())
    }

    /// Whether the ssh client pins the upstream host key itself (`accept-new`, OpenSSH ≥ 7.6);
    /// older clients need ssh-keyscan first. Always true for non-SSH upstreams.
    pub fn pins_host_key_on_first_contact(&self) -> bool {
        !self.config.upstream.is_ssh() || self.openssh >= (7, 6, 0)
    }

    /// Looks up a repository for serving.
    pub fn lookup(&self, id: &RepoId) -> Lookup {
        let repos = self.repos.read();
        match repos.get(id) {
            None => Lookup::Unknown,
            Some(e) if e.record.last_result == Some(SyncResult::NotFound) => Lookup::Unknown,
            Some(RepoEntry {
                withheld: Some(why),
                ..
            }) => Lookup::Withheld(why),
            Some(e) if e.servable() => {
                Lookup::Ready(self.repo_path(id), e.record.refs_hash.clone())
            }
            Some(_) => Lookup::NotReady,
        }
    }

    /// Whether a load balancer may send this node requests (from `s`, a [`Shared::summary`]):
    /// once the first listing is taken, every mirrored repository has a complete state it vouches
    /// for. After that, a repository that arrives later (created upstream, a re-list) does not
    /// take the node out while its first sync runs — requests for it alone are sent elsewhere —
    /// but one it served and no longer vouches for (withheld) does.
    pub fn ready(&self, s: &crate::summary::Summary) -> bool {
        if !s.listed {
            return false;
        }
        if s.all_servable && !s.any_withheld {
            self.was_ready.store(true, Ordering::Release);
            return true;
        }
        self.was_ready.load(Ordering::Acquire) && !s.catching_up
    }

    /// The node's state word (`STARTING`, `AWAITING_AUTHORIZATION`, `SYNCHRONIZING`,
    /// `SYNCHRONIZED`, `STALE`, `CATCHING_UP`, `ERROR`), from [`Shared::summary`].
    pub fn node_state(&self) -> &'static str {
        self.summary().state()
    }

    /// Records since when another farm member has not reached the upstream.
    pub fn set_farm_stale_since(&self, since_ms: Option<i64>) {
        let v = since_ms.map_or(0, |t| t.max(1));
        self.farm_stale_since.store(v, Ordering::Release);
    }

    /// Seconds since the farm (this node, or the member fetching for it) last reached the
    /// upstream, while it cannot (`None` when it can); `s` is a [`Shared::summary`].
    pub fn stale_seconds(&self, s: &crate::summary::Summary, now_ms: i64) -> Option<u64> {
        let farm = Some(self.farm_stale_since.load(Ordering::Acquire)).filter(|t| *t != 0);
        let since = [s.oldest_unreached, farm].into_iter().flatten().min()?;
        Some((now_ms.saturating_sub(since).max(0) / 1000) as u64)
    }
}
