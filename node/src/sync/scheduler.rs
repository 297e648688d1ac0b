//! The sync scheduler: triggers (start, every synchronization interval, the REST endpoint),
//! coalescing (a trigger during a sync becomes one follow-up sync), a bound on concurrent syncs,
//! retries with backoff, and removal of repositories that are no longer mirrored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::forge::inventory::Wanted;
use crate::mirror_repo::MirrorRepo;
use crate::names::RepoId;
use crate::shared::Shared;
use crate::store::SyncResult;
use crate::sync::coordinator::{Coordinator, Source};
use crate::sync::fetch::{self, FetchPlan, SyncFailure, Synced};
use crate::sync::queue::{background_limit, Queue};
use crate::sync::{publish, transport};

mod finish;
mod listing;

/// A request to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Re-list and sync every repository.
    All,
    /// Sync one repository (this node's own decision, or passed on by another member).
    Repo(RepoId),
    /// A client asked this node to sync one repository: also passed on to whoever fetches it.
    Requested(RepoId),
    /// Sync one repository in a background place, ahead of the periodic syncs: catching up on
    /// one this node has come to lead (a member left). Hundreds come at once when a member
    /// leaves; they must not take the place a push's sync needs.
    Takeover(RepoId),
}

/// Sends triggers to the scheduler; cheap to clone.
#[derive(Clone, Debug)]
pub struct SyncHandle {
    tx: mpsc::UnboundedSender<Trigger>,
}

impl SyncHandle {
    /// Asks for a sync; returns at once.
    pub fn trigger(&self, t: Trigger) {
        let _ = self.tx.send(t);
    }
}

/// Creates the handle and the receiver the scheduler runs on.
pub fn channel() -> (SyncHandle, mpsc::UnboundedReceiver<Trigger>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (SyncHandle { tx }, rx)
}

const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Retry while waiting for the upstream admin to authorize the farm key.
const RETRY_AUTH: Duration = Duration::from_secs(15);
/// How long a new repository waits for its leader (another member) to hold a state of it
/// before it is synced here anyway.
const AWAIT_LEADER_MAX: Duration = Duration::from_secs(120);
/// How long running syncs get to finish at shutdown before they are stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

struct Scheduler {
    shared: Arc<Shared>,
    coordinator: Arc<dyn Coordinator>,
    permits: Arc<Semaphore>,
    env: Arc<Vec<(&'static str, String)>>,
    /// Each sync's repository, result, and whether it went to the upstream (not a member).
    /// Running syncs: the repository, the result, whether it fetched from the upstream, and how
    /// long it took.
    tasks: JoinSet<(RepoId, Result<Synced, SyncFailure>, bool, Duration)>,
    running: HashSet<RepoId>,
    pending: HashSet<RepoId>,
    retries: BTreeMap<RepoId, (Instant, Duration)>,
    /// The listing under way (the loop goes on meanwhile: a forge may take minutes to list).
    listing: Option<tokio::task::JoinHandle<Wanted>>,
    /// Another listing was asked for while one ran.
    relist: bool,
    /// The upstream's fingerprint each running sync was started for (a manifest's).
    fingerprints: std::collections::HashMap<RepoId, String>,
    /// A reconcile's syncs not started yet.
    queue: Queue,
    /// The repository of each running task.
    task_repos: std::collections::HashMap<tokio::task::Id, RepoId>,
    /// New repositories waiting for their leader to hold a state, since when.
    awaited: std::collections::HashMap<RepoId, Instant>,
    /// How a reconcile probe reaches the upstream, when it is probed (see [`crate::sync::probe`]).
    probe: Option<crate::sync::probe::Via>,
    /// The reconcile probe under way.
    probing: Option<tokio::task::JoinHandle<()>>,
    /// The candidates of a reconcile that came while a probe ran: probed after it.
    probe_next: Option<Vec<crate::sync::probe::Candidate>>,
    /// What the probes found.
    answers: (
        mpsc::UnboundedSender<crate::sync::probe::Answer>,
        mpsc::UnboundedReceiver<crate::sync::probe::Answer>,
    ),
}

/// Runs until `shutdown` turns true.
pub async fn run(
    shared: Arc<Shared>,
    coordinator: Arc<dyn Coordinator>,
    mut rx: mpsc::UnboundedReceiver<Trigger>,
    mut shutdown: watch::Receiver<bool>,
) {
    let env = transport::upstream_env(
        &shared.home,
        &shared.config.upstream,
        shared.openssh,
        shared.config.ssh_persist,
    );
    // Not for a forge: its SSH server runs git's commands only.
    let probe = (shared.config.sync_probe && shared.inventory.forge().is_none())
        .then(|| crate::sync::probe::Via::of(&shared.config.upstream, &env))
        .flatten();
    let mut s = Scheduler {
        probe,
        probing: None,
        probe_next: None,
        answers: mpsc::unbounded_channel(),
        permits: Arc::new(Semaphore::new(shared.config.sync_concurrency)),
        env: Arc::new(env),
        shared,
        coordinator,
        tasks: JoinSet::new(),
        running: HashSet::new(),
        pending: HashSet::new(),
        retries: BTreeMap::new(),
        listing: None,
        relist: false,
        fingerprints: Default::default(),
        queue: Queue::default(),
        task_repos: Default::default(),
        awaited: Default::default(),
    };
    let mut interval = tokio::time::interval(s.shared.config.sync_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_retry = s.retries.values().map(|(at, _)| *at).min();
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = interval.tick() => s.list(false),
            listed = join_listing(&mut s.listing) => {
                s.listing = None;
                match listed {
                    Ok(wanted) => s.reconcile(wanted).await,
                    Err(e) => tracing::error!(error = %e, "listing repositories failed"),
                }
                if std::mem::take(&mut s.relist) {
                    s.list(true);
                }
            }
            Some(t) = rx.recv() => match t {
                Trigger::All => s.list(true),
                Trigger::Repo(id) => s.start(id),
                Trigger::Requested(id) => {
                    // Passed on to the leader: its word that it staged a new state starts this
                    // node's sync (a sync of the leader's state now would only find the old one
                    // and hold the repository busy while the word arrives).
                    if !s.coordinator.requested(&id) {
                        s.start(id);
                    }
                }
                Trigger::Takeover(id) => {
                    if s.running.contains(&id) {
                        // Synced again from the upstream once the running sync is done.
                        s.pending.insert(id);
                    } else {
                        s.queue.push_front(id);
                        s.fill();
                    }
                }
            },
            Some(done) = s.tasks.join_next_with_id(), if !s.tasks.is_empty() => {
                match done {
                    Ok((task, (id, res, from_upstream, took))) => {
                        s.task_repos.remove(&task);
                        s.finished(id, res, from_upstream, took).await
                    }
                    Err(e) => {
                        // Its repository is free again (else it would hold a place for good).
                        let repo = s.task_repos.remove(&e.id());
                        tracing::error!(error = %e, repo = ?repo.as_ref().map(ToString::to_string), "sync task failed");
                        if let Some(id) = repo {
                            s.running.remove(&id);
                            if let Some(entry) = s.shared.repos.write().get_mut(&id) {
                                entry.syncing = false;
                            }
                        }
                    }
                }
                s.fill();
            }
            _ = sleep_until(next_retry) => s.start_due_retries(),
            Some(answer) = s.answers.1.recv() => s.answered(answer),
            probed = join_probe(&mut s.probing) => {
                s.probing = None;
                if let Err(e) = probed {
                    tracing::error!(error = %e, "reconcile probe failed");
                }
                if let Some(next) = s.probe_next.take() {
                    s.start_probe(next);
                }
            }
        }
    }
    if let Some(l) = s.listing.take() {
        l.abort();
    }
    if let Some(p) = s.probing.take() {
        p.abort();
    }
    if !s.tasks.is_empty() {
        tracing::info!(
            running = s.tasks.len(),
            "waiting for running syncs before shutdown"
        );
        let drain = async { while s.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("stopping unfinished syncs (they resume at next start)");
            s.tasks.abort_all();
        }
    }
    if !s.shared.config.ssh_persist.is_zero() {
        transport::close_shared(&s.shared.home, &s.shared.config.upstream).await;
    }
}

async fn join_listing(
    listing: &mut Option<tokio::task::JoinHandle<Wanted>>,
) -> Result<Wanted, tokio::task::JoinError> {
    match listing {
        Some(l) => l.await,
        None => std::future::pending().await,
    }
}

async fn join_probe(
    probing: &mut Option<tokio::task::JoinHandle<()>>,
) -> Result<(), tokio::task::JoinError> {
    match probing {
        Some(p) => p.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Scheduler {
    /// Starts queued syncs while the reconcile's share of places is free.
    fn fill(&mut self) {
        let limit = background_limit(self.shared.config.sync_concurrency);
        while self.running.len() < limit {
            let Some(id) = self.queue.pop() else { break };
            self.start_unless_awaiting(id);
        }
    }

    fn start(&mut self, id: RepoId) {
        self.queue.remove(&id);
        let known = {
            let mut repos = self.shared.repos.write();
            match repos.get_mut(&id) {
                Some(e) => {
                    e.syncing = true;
                    true
                }
                None => false,
            }
        };
        if !known {
            return;
        }
        if self.running.contains(&id) {
            self.pending.insert(id);
            return;
        }
        self.retries.remove(&id);
        self.running.insert(id.clone());
        let shared = self.shared.clone();
        let coordinator = self.coordinator.clone();
        let permits = self.permits.clone();
        let env = self.env.clone();
        let task_repo = id.clone();
        let handle = self.tasks.spawn(async move {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let started = std::time::Instant::now();
            if !shared.pins_host_key_on_first_contact() {
                if let Err(e) =
                    transport::pin_with_keyscan(&shared.home, &shared.config.upstream).await
                {
                    tracing::warn!(error = %e, "cannot pin the upstream host key with ssh-keyscan");
                }
            }
            let repo = MirrorRepo::new(shared.repo_path(&id));
            crate::sync::recover::once(&shared, &id, &repo).await;
            // In a farm, only the repository's leader fetches from the upstream; the others take
            // the state the leader staged from it.
            let source = coordinator.source(&id);
            let from_upstream = matches!(source, Source::Upstream);
            let (url, member_config, head_hint) = match source {
                Source::Upstream => (shared.config.upstream.repo_url(&id), None, None),
                Source::Member {
                    url,
                    git_config,
                    head_hint,
                } => (url, Some(git_config), head_hint),
            };
            let plan = FetchPlan {
                id: &id,
                repo: &repo,
                member_config,
                url,
                env: &env,
                timeout: shared.config.sync_timeout,
                git: shared.git,
            };
            let res =
                publish::stage_and_flip(&shared, &*coordinator, &plan, head_hint, permit, &permits)
                    .await;
            fetch::log_result(&id, &res, started.elapsed());
            let result = match &res {
                Ok(_) => SyncResult::Ok,
                Err(f) => f.kind.clone(),
            };
            shared
                .metrics
                .sync_done(&result, started.elapsed().as_secs_f64());
            (id, res, from_upstream, started.elapsed())
        });
        self.task_repos.insert(handle.id(), task_repo);
    }

    /// Starts a queued or retried sync, unless [`Self::awaits_leader`]: queued before the farm
    /// took shape (a member joined and leads it now, say), it would be refused by its leader and
    /// retried; the leader's word that it staged a state starts it. (A trigger — the leader's
    /// word, a client's request — always starts.)
    fn start_unless_awaiting(&mut self, id: RepoId) {
        if !self.running.contains(&id) && self.awaits_leader(&id) {
            tracing::debug!(repo = %id, "its leader holds nothing of it yet: synced on its word");
            return;
        }
        self.start(id);
    }

    /// A repository not served here whose leader (another member) holds nothing of it yet —
    /// for at most [`AWAIT_LEADER_MAX`] since this node first waited: one the leader never gets
    /// (gone upstream, say) is tried here then, and its error shows.
    pub(super) fn awaits_leader(&mut self, id: &RepoId) -> bool {
        let unserved = !self
            .shared
            .repos
            .read()
            .get(id)
            .is_some_and(|e| e.servable());
        if !unserved || !self.coordinator.awaits_leader(id) {
            self.awaited.remove(id);
            return false;
        }
        let since = *self.awaited.entry(id.clone()).or_insert_with(Instant::now);
        since.elapsed() < AWAIT_LEADER_MAX
    }

    fn start_due_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<(RepoId, Duration)> = self
            .retries
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, (_, d))| (id.clone(), *d))
            .collect();
        for (id, backoff) in due {
            self.start_unless_awaiting(id.clone());
            // Keep the backoff so the next failure doubles it.
            self.retries
                .insert(id, (now + Duration::from_secs(86_400), backoff));
        }
    }
}

async fn remove_dir(path: std::path::PathBuf) {
    if let Err(e) = tokio::fs::remove_dir_all(&path).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove repository directory");
        }
    }
}
