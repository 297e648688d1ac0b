//! The node's Prometheus metrics (`GET /metrics`, names prefixed `mirrorfarm_`): syncs, sync
//! duration and lag, requests served by protocol, bytes served, active connections, upstream
//! reachability and repository counts.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::names::RepoId;
use crate::state::RepoEntry;
use crate::store::SyncResult;

/// `result` label of a sync.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok`, `unauthorized`, `unreachable`, `host_key_changed`, `not_found`, `failed`.
    pub result: String,
}

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServeLabels {
    /// `http` or `ssh`.
    pub protocol: String,
    /// `info_refs` (ref advertisement) or `upload_pack` (a clone or fetch).
    pub kind: String,
}

/// `protocol` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    /// `http` or `ssh`.
    pub protocol: String,
}

/// `repo` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabel {
    /// `PROJECT/repo`.
    pub repo: String,
}

/// Every metric of a node.
pub struct NodeMetrics {
    registry: Registry,
    /// Git requests served, all kinds (for the admin page's plots).
    served_total: AtomicU64,
    syncs: Family<ResultLabel, Counter>,
    sync_duration: Histogram,
    served: Family<ServeLabels, Counter>,
    served_bytes: Family<ProtocolLabel, Counter>,
    active: Family<ProtocolLabel, Gauge>,
    sync_lag: Family<RepoLabel, Gauge<f64, AtomicU64>>,
    upstream_reachable: Gauge,
    repos: Gauge,
    synced_repos: Gauge,
    advertisements: Family<SourceLabel, Counter>,
    pack_cache: Family<ResultLabel, Counter>,
    probes: Family<ResultLabel, Counter>,
    pack_cache_bytes: Gauge,
    auth_decisions: Family<AuthLabels, Counter>,
    sessions_live: Gauge,
    pushes: Family<ResultLabel, Counter>,
    staged_words: Family<ResultLabel, Counter>,
    webhooks: Family<ResultLabel, Counter>,
    notices: Family<ResultLabel, Counter>,
    busy: Counter,
    processes: Family<StateLabel, Gauge>,
}

/// `state` label of upload-pack places.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `running` or `waiting`.
    pub state: String,
}

/// Labels of an access decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// `cache` (a cached decision), `upstream` (this request asked), `shared` (waited for another
    /// request's check).
    pub source: String,
    /// `granted`, `denied`, `bad_credentials`, `offline` (a cached grant while the upstream cannot
    /// be asked), `unavailable`.
    pub outcome: String,
}

/// `source` label of a ref advertisement.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `memory` or `git`.
    pub source: String,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mirrorfarm");
        let syncs = Family::<ResultLabel, Counter>::default();
        registry.register("syncs", "Syncs with the upstream, by result", syncs.clone());
        let sync_duration = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register(
            "sync_duration_seconds",
            "Duration of syncs with the upstream",
            sync_duration.clone(),
        );
        let served = Family::<ServeLabels, Counter>::default();
        registry.register(
            "served_requests",
            "Git requests served, by protocol and kind",
            served.clone(),
        );
        let served_bytes = Family::<ProtocolLabel, Counter>::default();
        registry.register(
            "served_bytes",
            "Bytes of git responses served, by protocol",
            served_bytes.clone(),
        );
        let active = Family::<ProtocolLabel, Gauge>::default();
        registry.register(
            "active_connections",
            "Git responses or SSH connections open now",
            active.clone(),
        );
        let sync_lag = Family::<RepoLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "sync_lag_seconds",
            "Seconds since the last successful sync, per repository",
            sync_lag.clone(),
        );
        let upstream_reachable = Gauge::default();
        registry.register(
            "upstream_reachable",
            "1 when the last syncs reached the upstream",
            upstream_reachable.clone(),
        );
        let repos = Gauge::default();
        registry.register("repos", "Repositories mirrored", repos.clone());
        let synced_repos = Gauge::default();
        registry.register(
            "synced_repos",
            "Repositories with a complete state to serve",
            synced_repos.clone(),
        );
        let advertisements = Family::<SourceLabel, Counter>::default();
        registry.register(
            "advertisements",
            "Ref advertisements and ls-refs answers, by source: memory or git (clients), farm_memory or farm_git (members fetching a staged state)",
            advertisements.clone(),
        );
        let pack_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "pack_cache_requests",
            "Upload-pack requests answered through the pack cache: hit, shared (while written), miss",
            pack_cache.clone(),
        );
        let probes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconcile_probes",
            "Repositories a reconcile probe read the refs of (one command for all, over SSH or the local shell): unchanged (not fetched), changed or unanswered (fetched), followed (led by another member by the time it answered: not fetched here)",
            probes.clone(),
        );
        let pack_cache_bytes = Gauge::default();
        registry.register(
            "pack_cache_bytes",
            "Bytes of the pack cache's entries, complete and being written",
            pack_cache_bytes.clone(),
        );
        let auth_decisions = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_decisions",
            "Credential decisions, by source (cache, upstream, shared) and outcome",
            auth_decisions.clone(),
        );
        let sessions_live = Gauge::default();
        registry.register("sessions_live", "Live sessions", sessions_live.clone());
        let pushes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "pushes",
            "Pushes passed on to the upstream, by result (ok, refused, failed)",
            pushes.clone(),
        );
        let staged_words = Family::<ResultLabel, Counter>::default();
        registry.register(
            "farm_staged_words",
            "Members' words that they staged a new state, over the farm channel: sent, received",
            staged_words.clone(),
        );
        let webhooks = Family::<ResultLabel, Counter>::default();
        registry.register(
            "webhooks",
            "Webhook deliveries, by what became of them (sync, relist, ignored, unknown_repository, unverified, too_large, bad_payload, off)",
            webhooks.clone(),
        );
        let notices = Family::<ResultLabel, Counter>::default();
        registry.register(
            "notices",
            "Sync-complete notices POSTed to mirror.notify.url, by result (delivered, failed)",
            notices.clone(),
        );
        let busy = Counter::default();
        registry.register(
            "busy_refusals",
            "Requests refused because every upload-pack place stayed busy (mirror.serve.maxProcesses)",
            busy.clone(),
        );
        let processes = Family::<StateLabel, Gauge>::default();
        registry.register(
            "upload_pack_places",
            "Upload-pack processes serving clients, and requests waiting for a place",
            processes.clone(),
        );
        Self {
            busy,
            processes,
            auth_decisions,
            sessions_live,
            pushes,
            staged_words,
            webhooks,
            notices,
            pack_cache,
            probes,
            pack_cache_bytes,
            advertisements,
            registry,
            syncs,
            sync_duration,
            served,
            served_bytes,
            active,
            sync_lag,
            upstream_reachable,
            repos,
            synced_repos,
            served_total: AtomicU64::new(0),
        }
    }
}

fn result_word(r: &SyncResult) -> &'static str {
    match r {
        SyncResult::Ok => "ok",
        SyncResult::Unauthorized => "unauthorized",
        SyncResult::Unreachable => "unreachable",
        SyncResult::HostKeyChanged => "host_key_changed",
        SyncResult::NotFound => "not_found",
        SyncResult::Failed => "failed",
    }
}

impl NodeMetrics {
    /// Records a finished sync.
    pub fn sync_done(&self, result: &SyncResult, seconds: f64) {
        self.syncs
            .get_or_create(&ResultLabel {
                result: result_word(result).into(),
            })
            .inc();
        self.sync_duration.observe(seconds);
    }

    /// Git requests served so far, all kinds.
    pub fn served_total(&self) -> u64 {
        self.served_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records a served request of `bytes`.
    pub fn served(&self, protocol: &str, kind: &str, bytes: u64) {
        self.served_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.served
            .get_or_create(&ServeLabels {
                protocol: protocol.into(),
                kind: kind.into(),
            })
            .inc();
        self.served_bytes
            .get_or_create(&ProtocolLabel {
                protocol: protocol.into(),
            })
            .inc_by(bytes);
    }

    /// Counts a ref advertisement answered from `source` (`memory` or `git`; for members,
    /// `farm_memory` or `farm_git`).
    pub fn advertisement(&self, source: &str) {
        self.advertisements
            .get_or_create(&SourceLabel {
                source: source.into(),
            })
            .inc();
    }

    /// Counts a repository a reconcile probe answered for.
    /// `result`: `unchanged`, `changed` or `unanswered`.
    pub fn probe(&self, result: &'static str, n: u64) {
        self.probes
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc_by(n);
    }

    /// Counts a request answered through the pack cache.
    /// `result`: `hit`, `shared` or `miss`.
    pub fn pack_cache(&self, result: &'static str) {
        self.pack_cache
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a staged-state word (`sent` or `received`).
    pub fn staged_word(&self, result: &'static str) {
        self.staged_words
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a webhook delivery by what became of it.
    pub fn webhook(&self, result: &'static str) {
        self.webhooks
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// What counts sync-complete notices by result (`delivered`, `failed`), for the tasks that
    /// send them.
    pub fn notice_counter(&self) -> std::sync::Arc<dyn Fn(&'static str) + Send + Sync> {
        let notices = self.notices.clone();
        std::sync::Arc::new(move |result| {
            notices
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .inc();
        })
    }

    /// Counts an access decision.
    pub fn auth_decision(&self, source: &'static str, outcome: &'static str) {
        self.auth_decisions
            .get_or_create(&AuthLabels {
                source: source.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Sets the number of live sessions.
    pub fn sessions_live(&self, n: usize) {
        self.sessions_live.set(n as i64);
    }

    /// Counts a request refused for want of an upload-pack place.
    pub fn busy(&self) {
        self.busy.inc();
    }

    /// Sets the upload-pack places taken and the requests waiting.
    pub fn places(&self, running: usize, waiting: usize) {
        for (state, n) in [("running", running), ("waiting", waiting)] {
            self.processes
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n as i64);
        }
    }

    /// Counts a push passed on (`ok`, `refused`, `failed`).
    pub fn push(&self, result: &'static str) {
        self.pushes
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts one open connection of `protocol` until the guard is dropped.
    pub fn track(&self, protocol: &str) -> ActiveGuard {
        let g = self
            .active
            .get_or_create(&ProtocolLabel {
                protocol: protocol.into(),
            })
            .clone();
        g.inc();
        ActiveGuard(g)
    }

    /// Encodes every metric in the Prometheus text format, refreshing the ones derived from the
    /// repositories (`snapshot`) and the pack cache's size.
    pub fn render(
        &self,
        snapshot: &std::collections::BTreeMap<RepoId, RepoEntry>,
        pack_cache_bytes: u64,
        lfs: &mirrorfarm_common::status::LfsStatus,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.sync_lag.clear();
        for (id, e) in snapshot {
            if let Some(ok) = e.record.last_success_ms {
                self.sync_lag
                    .get_or_create(&RepoLabel {
                        repo: id.to_string(),
                    })
                    .set((now - ok).max(0) as f64 / 1000.0);
            }
        }
        let unreachable = snapshot
            .values()
            .any(|e| e.record.last_result == Some(SyncResult::Unreachable));
        self.upstream_reachable.set(i64::from(!unreachable));
        self.repos.set(snapshot.len() as i64);
        self.synced_repos
            .set(snapshot.values().filter(|e| e.servable()).count() as i64);
        self.pack_cache_bytes.set(pack_cache_bytes as i64);
        let mut out = String::new();
        let text = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .and_then(|()| crate::lfs::metrics::encode(lfs, &mut out))
            .and_then(|()| crate::farm::gossip_bytes::encode(&mut out))
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
        if text.is_err() {
            out.clear();
        }
        out
    }
}

/// Decrements an active-connections gauge when dropped.
pub struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
