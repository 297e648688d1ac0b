//! Where an LFS object comes from: this member's store, else one download on this node that
//! takes it from another member (over the farm channel, [`crate::lfs::members`]), else from the
//! upstream's LFS server — and in a farm only the repository's leader downloads from the
//! upstream, so however many members and clients ask at once, the upstream serves each object
//! once. An object is served for a repository only once it is known for it
//! ([`crate::lfs::known`]).

use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures_util::Stream;

use crate::config::Config;
use crate::farm::Farm;
use crate::lfs::batch::{Action, BatchRequest};
use crate::lfs::flight::{Flight, Flights, Source, Started};
use crate::lfs::known::Known;
use crate::lfs::oid::LfsOid;
use crate::lfs::stats::LfsStats;
use crate::lfs::store::{LfsStore, StoreError};
use crate::lfs::token::TokenKey;
use crate::lfs::upstream::{Auth, UpstreamLfs, IDLE};
use crate::names::RepoId;

/// Read size of objects served from the store.
const READ_CHUNK: usize = 256 * 1024;
/// Downloads from the upstream running at once on a node (more wait their turn).
const UPSTREAM_SLOTS: usize = 8;

/// An object's bytes on their way to a client or member.
pub type ObjectStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// An object to send: its length, its bytes, where they came from (`local`, `member`,
/// `upstream`).
pub struct ObjectBody {
    /// Its size.
    pub len: u64,
    /// Its bytes.
    pub stream: ObjectStream,
    /// Where this node got it.
    pub source: &'static str,
}

/// Why an object cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum LfsError {
    /// Neither this node nor (where it asked) the farm or the upstream has it.
    #[error("LFS object {0} is not available")]
    NotFound(LfsOid),
    /// Its download failed, or brought no byte in time.
    #[error("LFS object {oid}: {why}")]
    Failed {
        /// The object.
        oid: LfsOid,
        /// Why.
        why: String,
    },
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading it.
    #[error("LFS object: {0}")]
    Io(#[from] std::io::Error),
}

/// A node's LFS service.
pub struct Lfs {
    /// `mirror.lfs.*` and the endpoint.
    pub config: crate::config::LfsConfig,
    /// The objects held here.
    pub store: LfsStore,
    /// Which repositories each object is known for.
    pub known: Known,
    /// Signs and checks tokens.
    pub tokens: TokenKey,
    /// Downloads in progress.
    pub flights: Arc<Flights>,
    /// The upstream's LFS server.
    pub upstream: UpstreamLfs,
    /// Counters for /status and /metrics.
    pub stats: LfsStats,
    /// Places for downloads from the upstream.
    pub(crate) upstream_slots: tokio::sync::Semaphore,
    pub(crate) farm: OnceLock<Weak<Farm>>,
}

impl Lfs {
    /// The service for `config` over `store` (whose root also holds the known pairs).
    pub fn new(config: &Config, store: LfsStore, known: Known, upstream: UpstreamLfs) -> Self {
        let tokens = match &config.farm {
            Some(f) => TokenKey::from_farm_secret(&f.secret),
            None => TokenKey::random(),
        };
        Self {
            config: config.lfs.clone(),
            store,
            known,
            tokens,
            flights: Arc::default(),
            upstream,
            stats: LfsStats::default(),
            upstream_slots: tokio::sync::Semaphore::new(UPSTREAM_SLOTS),
            farm: OnceLock::new(),
        }
    }

    /// Makes the farm's members sources (once the node has joined).
    pub fn attach_farm(&self, farm: &Arc<Farm>) {
        let _ = self.farm.set(Arc::downgrade(farm));
    }

    pub(crate) fn farm(&self) -> Option<Arc<Farm>> {
        self.farm.get().and_then(Weak::upgrade)
    }

    /// The LFS part of `/status`.
    pub fn status(&self) -> mirrorfarm_common::status::LfsStatus {
        let mut s = self.stats.snapshot();
        s.max_bytes = self.config.max_size;
        s.downloading = self.flights.len() as u64;
        s
    }

    /// Whether this node holds `oid` or is downloading it (for any repository).
    pub async fn holds(&self, oid: &LfsOid) -> bool {
        self.flights.get(oid).is_some() || self.store.size(oid).await.is_some()
    }

    /// Whether this node holds `oid` (or is downloading it) as an object of `repo`.
    pub async fn holds_for(&self, repo: &RepoId, oid: &LfsOid) -> bool {
        self.known.contains(repo, oid).await && self.holds(oid).await
    }

    /// Whether a member asking for `oid` of `repo` would be served from here: known for the
    /// repository, and stored or downloading from the upstream.
    pub async fn serves_member(&self, repo: &RepoId, oid: &LfsOid) -> bool {
        let flying = self
            .flights
            .get(oid)
            .is_some_and(|f| f.source == Source::Upstream);
        self.known.contains(repo, oid).await && (flying || self.store.size(oid).await.is_some())
    }

    /// The object from this node's store or download, if it has either (`upstream_only`: only
    /// a download fed by the upstream counts, as for a member's request: two members never wait
    /// on each other).
    pub(crate) async fn here(
        &self,
        oid: &LfsOid,
        upstream_only: bool,
    ) -> Result<Option<ObjectBody>, LfsError> {
        if let Some((file, len)) = self.store.open_object(oid).await? {
            self.store.touch(oid).await;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK);
            return Ok(Some(ObjectBody {
                len,
                stream: Box::pin(stream),
                source: "local",
            }));
        }
        match self.flights.get(oid) {
            Some(f) if !upstream_only || f.source == Source::Upstream => {
                Ok(Some(follow(&f).await?))
            }
            _ => Ok(None),
        }
    }

    /// A client's download of `oid` of `repo` (`size` as its token says): from here, else from
    /// another member, else (when this node leads the repository, stands alone or the leader
    /// cannot be reached) from the upstream with the farm's own access.
    pub async fn open(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
    ) -> Result<ObjectBody, LfsError> {
        if let Some(b) = self.here(oid, false).await? {
            return Ok(b);
        }
        // Fed by members, unless this node is where the farm's download happens.
        let from = if self.peers(repo).leader.is_some() {
            Source::Member
        } else {
            Source::Upstream
        };
        let (me, repo2, oid2) = (self.clone(), repo.clone(), oid.clone());
        let started = self
            .flights
            .start(&self.store, (oid, size), from, move |feeder| async move {
                me.feed_from_farm(&repo2, &oid2, size, feeder).await
            })
            .await?;
        if let Started::Flying(f) = &started {
            self.after(f.clone());
        }
        self.flown(started, oid).await
    }

    /// A member's request: the object from here when it is known for `repo`, else (`fetch`,
    /// asked of the leader) downloaded from the upstream with the farm's own access; `None`
    /// when neither.
    pub async fn open_for_member(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
        fetch: bool,
    ) -> Result<Option<ObjectBody>, LfsError> {
        if self.known.contains(repo, oid).await {
            if let Some(b) = self.here(oid, true).await? {
                return Ok(Some(b));
            }
        }
        if !fetch {
            return Ok(None);
        }
        let started = self.download(repo, oid, size, None).await?;
        self.flown(started, oid).await.map(Some)
    }

    /// Starts (or joins) this node's download of `oid` from the upstream: with `action` when the
    /// batch that asked gave one (the object is then known for `repo`), else with the farm's own
    /// access.
    pub async fn download(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
        action: Option<Action>,
    ) -> Result<Started, LfsError> {
        if action.is_some() {
            self.known.insert(repo, oid).await;
        }
        let (me, repo2, oid2) = (self.clone(), repo.clone(), oid.clone());
        let started = self
            .flights
            .start(
                &self.store,
                (oid, size),
                Source::Upstream,
                move |feeder| async move {
                    let action = match action {
                        Some(a) => a,
                        None => me.farm_action(&repo2, &oid2, size).await?,
                    };
                    me.feed_from_upstream(&action, feeder).await
                },
            )
            .await?;
        if let Started::Flying(f) = &started {
            self.after(f.clone());
        }
        Ok(started)
    }

    /// Feeds a download from the upstream's action, in turn with the node's other downloads.
    pub(crate) async fn feed_from_upstream(
        &self,
        action: &Action,
        feeder: crate::lfs::flight::Feeder,
    ) -> Result<crate::lfs::flight::Feeder, String> {
        let _slot = self
            .upstream_slots
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        let fed = self.upstream.download(action, feeder).await?;
        self.stats.upstream_download();
        Ok(fed)
    }

    /// A download action from the upstream's batch API with the farm's own access (the object
    /// is then known for `repo`).
    pub(crate) async fn farm_action(
        &self,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
    ) -> Result<Action, String> {
        let req = BatchRequest::download([(oid, size)]);
        let answer = self
            .upstream
            .batch(repo, &Auth::Farm, &req)
            .await
            .map_err(|e| e.to_string())?;
        let o = answer
            .objects
            .into_iter()
            .find(|o| o.oid == oid.as_str())
            .ok_or("the upstream's batch answer leaves the object out")?;
        if let Some(e) = o.error {
            return Err(format!("the upstream says {} {}", e.code, e.message));
        }
        let action = o
            .actions
            .and_then(|a| a.download)
            .ok_or("the upstream gives no download action")?;
        self.known.insert(repo, oid).await;
        Ok(action)
    }

    /// The body of a download just started or joined (or the stored object, if it landed).
    async fn flown(
        self: &Arc<Self>,
        started: Started,
        oid: &LfsOid,
    ) -> Result<ObjectBody, LfsError> {
        match started {
            Started::Flying(f) => follow(&f).await,
            Started::Stored => self
                .here(oid, false)
                .await?
                .ok_or_else(|| LfsError::NotFound(oid.clone())),
        }
    }

    /// Once `f` lands: count it, and keep the store within `mirror.lfs.maxSize`.
    pub(crate) fn after(self: &Arc<Self>, f: Arc<Flight>) {
        let me = self.clone();
        tokio::spawn(async move {
            if f.finished().await.is_err() {
                return;
            }
            me.stats.stored(f.size);
            let Some(max) = me.config.max_size else {
                return;
            };
            let store = me.store.clone();
            match tokio::task::spawn_blocking(move || store.evict_to(max)).await {
                Ok(Ok((n, bytes))) => me.stats.evicted(n as u64, bytes),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot keep the LFS store within mirror.lfs.maxSize")
                }
                Err(_) => {}
            }
        });
    }
}

/// A download's bytes as they arrive, once the first came (so a download that fails at once
/// gets a clear answer, not a cut stream).
async fn follow(f: &Arc<Flight>) -> Result<ObjectBody, LfsError> {
    f.started(IDLE).await.map_err(|why| LfsError::Failed {
        oid: f.oid.clone(),
        why: why.to_string(),
    })?;
    Ok(ObjectBody {
        len: f.size,
        stream: Box::pin(f.reader().await?),
        source: f.source.label(),
    })
}
