//! The node's shared runtime state: configuration, identity, the state store and, per repository,
//! its durable record plus whether a sync is running. Serving and /status read it; the sync
//! scheduler writes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::home::Home;
use crate::identity::Identity;
use crate::names::RepoId;
use crate::store::{RepoRecord, Store, SyncResult};

/// One repository as the node knows it now.
#[derive(Debug, Clone, Default)]
pub struct RepoEntry {
    /// Durable record (generation, last results).
    pub record: RepoRecord,
    /// A sync is running.
    pub syncing: bool,
    /// The newest state this node has staged (complete, refs hidden), in a farm.
    pub staged: Option<crate::farm::keys::StagedHint>,
    /// Hashes of the earlier states whose tips are still kept (hidden), newest first: requests
    /// negotiated against them still work here.
    pub kept: Vec<String>,
    /// Why this node does not serve the repository now (it cannot vouch for its state).
    pub withheld: Option<&'static str>,
}

impl RepoEntry {
    /// Whether clients may be served this repository (it has a complete state).
    pub fn servable(&self) -> bool {
        self.record.generation > 0 && self.record.last_result != Some(SyncResult::NotFound)
    }

    /// Whether this state is one the node can serve wants for: the served one, the staged one or
    /// a kept earlier one.
    pub fn holds(&self, refs_hash: &str) -> bool {
        self.record.refs_hash == refs_hash
            || self
                .staged
                .as_ref()
                .is_some_and(|s| s.refs_hash == refs_hash)
            || self.kept.iter().any(|k| k == refs_hash)
    }

    /// The state word shown on /status.
    pub fn state(&self) -> &'static str {
        if self.servable() && self.withheld.is_some() {
            return "CATCHING_UP";
        }
        match (&self.record.last_result, self.record.generation) {
            (Some(SyncResult::NotFound), _) => "NOT_FOUND",
            (Some(SyncResult::Unauthorized), 0) => "AWAITING_AUTHORIZATION",
            (Some(SyncResult::HostKeyChanged), _) => "ERROR",
            (_, 0) if self.syncing || self.record.last_result.is_none() => "SYNCHRONIZING",
            (_, 0) => "ERROR",
            _ => "SYNCHRONIZED",
        }
    }
}

/// What serving learns about a requested repository.
#[derive(Debug)]
pub enum Lookup {
    /// Not mirrored here (or gone upstream).
    Unknown,
    /// Mirrored, but no complete state yet.
    NotReady,
    /// This node does not serve it now (it cannot vouch for its state in the farm): why.
    Withheld(&'static str),
    /// Serve from this bare repository, whose served ref state has this hash.
    Ready(PathBuf, String),
}

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
    /// Repositories currently mirrored.
    pub repos: RwLock<BTreeMap<RepoId, RepoEntry>>,
    /// The first inventory of repositories has been taken.
    pub listed: AtomicBool,
    /// Prometheus metrics.
    pub metrics: crate::metrics::NodeMetrics,
    /// The farm as gossip shows it (`None` without `farm.secret`).
    pub farm: RwLock<Option<crate::farm::view::FarmView>>,
    /// Cached upload-pack responses.
    pub packs: Arc<crate::serve::pack_cache::PackCache>,
    /// Ref advertisements from memory.
    pub refs: crate::serve::refs_cache::RefsCache,
    /// Wakes the farm gossip loop to publish at once (a state was staged or flipped).
    pub farm_changed: tokio::sync::Notify,
    /// Woken (all waiters) each time the farm view is rebuilt.
    pub farm_view_updated: tokio::sync::Notify,
}

impl Shared {
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
        let repos = self.repos.read().expect("repo map lock is never poisoned");
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

    /// A copy of the repository map.
    pub fn snapshot(&self) -> BTreeMap<RepoId, RepoEntry> {
        self.repos
            .read()
            .expect("repo map lock is never poisoned")
            .clone()
    }

    /// The node's state word (`STARTING`, `AWAITING_AUTHORIZATION`, `SYNCHRONIZING`,
    /// `SYNCHRONIZED`, `ERROR`).
    pub fn node_state(&self) -> &'static str {
        if !self.listed.load(Ordering::Acquire) {
            return "STARTING";
        }
        let repos = self.repos.read().expect("repo map lock is never poisoned");
        let results = || repos.values().map(|e| e.record.last_result.clone());
        if results().any(|r| r == Some(SyncResult::HostKeyChanged)) {
            return "ERROR";
        }
        if results().any(|r| r == Some(SyncResult::Unauthorized)) {
            return "AWAITING_AUTHORIZATION";
        }
        let active: Vec<_> = repos
            .values()
            .filter(|e| e.record.last_result != Some(SyncResult::NotFound))
            .collect();
        if active.iter().any(|e| e.servable() && e.withheld.is_some()) {
            return "CATCHING_UP";
        }
        if active.iter().all(|e| e.servable()) {
            return "SYNCHRONIZED";
        }
        if active.iter().any(|e| e.state() == "ERROR") && !active.iter().any(|e| e.syncing) {
            return "ERROR";
        }
        "SYNCHRONIZING"
    }
}
