//! What the node knows of each repository now: its durable record, whether a sync runs, the
//! state it has staged and the earlier states it keeps, and whether it may serve it. The sync
//! scheduler and the farm write it; serving and /status read it.

use std::path::PathBuf;

use crate::names::RefName;
use crate::store::{RepoRecord, SyncResult};

/// One repository as the node knows it now.
#[derive(Debug, Clone, Default)]
pub struct RepoEntry {
    /// Durable record (generation, last results).
    pub record: RepoRecord,
    /// A sync is running.
    pub syncing: bool,
    /// The newest state this node has staged (complete, refs hidden), in a farm.
    pub staged: Option<StagedHint>,
    /// Hashes of the earlier states whose tips are still kept (hidden), newest first: requests
    /// negotiated against them still work here.
    pub kept: Vec<String>,
    /// Why this node does not serve the repository now (it cannot vouch for its state).
    pub withheld: Option<&'static str>,
    /// The last sync went to the upstream (not to a farm member).
    pub upstream_tried: bool,
    /// The upstream's fingerprint of the refs (a grokmirror manifest's) whose state, or a newer
    /// one, this node serves: a reconcile that lists the same one skips the repository.
    pub upstream_fingerprint: Option<String>,
    /// Since when (Unix ms) this node has held a newer state than the one it serves (staged,
    /// waiting for the farm's flip); none while it serves the newest state it holds.
    pub behind_since_ms: Option<i64>,
    /// What an interrupted sync may have left in its directory was cleaned up by this process
    /// (done before its first sync here, not at startup: a restart does not walk every mirror).
    pub recovered: bool,
}

impl RepoEntry {
    /// How far (ms) the served state is behind the upstream as far as this node knows at `now`
    /// (Unix ms): the time since it staged a newer state it does not serve yet; after a failed
    /// attempt, the time since the upstream last confirmed the served state (it may have moved
    /// since); 0 when the last attempt confirmed it; none before any success.
    pub fn lag_ms(&self, now: i64) -> Option<u64> {
        let behind = self
            .staged
            .as_ref()
            .is_some_and(|s| s.refs_hash != self.record.refs_hash);
        let since = |t: i64| now.saturating_sub(t).max(0) as u64;
        match (self.behind_since_ms, &self.record.last_result) {
            (Some(t), _) if behind => Some(since(t)),
            (_, Some(SyncResult::NotFound)) => None,
            (_, Some(SyncResult::Ok)) => self.record.last_success_ms.map(|_| 0),
            _ => self.record.last_success_ms.map(since),
        }
    }

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

/// A state a member has staged: its refs hash and the branch its HEAD names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedHint {
    /// Hash of the staged ref map (with HEAD).
    pub refs_hash: String,
    /// The branch HEAD names in it.
    pub head: Option<RefName>,
}
