//! Where an LFS object comes from: this member's store, else one download on this node that
//! takes it from another member (over the farm channel), else from the upstream's LFS server —
//! and in a farm only the repository's leader downloads from the upstream, so however many
//! members and clients ask at once, the upstream serves each object once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use mirrorfarm_common::farm::messages::LfsFetch;

use crate::config::Config;
use crate::farm::Farm;
use crate::lfs::batch::{Action, BatchRequest, ObjectSpec, Operation};
use crate::lfs::flight::{Feeder, Flight, Flights, Started};
use crate::lfs::oid::LfsOid;
use crate::lfs::stats::LfsStats;
use crate::lfs::store::{LfsStore, StoreError};
use crate::lfs::token::TokenKey;
use crate::lfs::upstream::{Auth, UpstreamLfs, IDLE};
use crate::names::RepoId;

/// Read size of objects served from the store.
const READ_CHUNK: usize = 256 * 1024;

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
    /// Its download failed before it brought anything.
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

/// The farm as the LFS service sees it for one repository.
struct Peers {
    /// The repository's leader, when it is another member.
    leader: Option<(String, SocketAddr)>,
    /// The other members that do not lead it.
    others: Vec<(String, SocketAddr)>,
}

/// A node's LFS service.
pub struct Lfs {
    /// `mirror.lfs.*` and the endpoint.
    pub config: crate::config::LfsConfig,
    /// The objects held here.
    pub store: LfsStore,
    /// Signs and checks download tokens.
    pub tokens: TokenKey,
    /// Downloads in progress.
    pub flights: Arc<Flights>,
    /// The upstream's LFS server.
    pub upstream: UpstreamLfs,
    /// Counters for /status and /metrics.
    pub stats: LfsStats,
    farm: OnceLock<Weak<Farm>>,
}

impl Lfs {
    /// The service for `config`, its store at `root`.
    pub fn new(config: &Config, store: LfsStore, upstream: UpstreamLfs) -> Self {
        let tokens = match &config.farm {
            Some(f) => TokenKey::from_farm_secret(&f.secret),
            None => TokenKey::random(),
        };
        Self {
            config: config.lfs.clone(),
            store,
            tokens,
            flights: Arc::default(),
            upstream,
            stats: LfsStats::default(),
            farm: OnceLock::new(),
        }
    }

    /// Makes the farm's members sources (once the node has joined).
    pub fn attach_farm(&self, farm: &Arc<Farm>) {
        let _ = self.farm.set(Arc::downgrade(farm));
    }

    fn farm(&self) -> Option<Arc<Farm>> {
        self.farm.get().and_then(Weak::upgrade)
    }

    fn peers(&self, repo: &RepoId) -> Peers {
        let Some(farm) = self.farm() else {
            return Peers {
                leader: None,
                others: Vec::new(),
            };
        };
        let others = farm.others();
        let leader_id = farm.view.read().as_ref().and_then(|v| {
            crate::farm::leader::leader_of(
                &repo.to_string(),
                v.members.iter().map(|m| m.node_id.as_str()),
            )
            .map(str::to_owned)
        });
        let (leader, others): (Vec<_>, Vec<_>) = others
            .into_iter()
            .partition(|(id, _)| Some(id) == leader_id.as_ref());
        Peers {
            leader: leader.into_iter().next(),
            others,
        }
    }

    /// The LFS part of `/status`.
    pub fn status(&self) -> mirrorfarm_common::status::LfsStatus {
        let mut s = self.stats.snapshot();
        s.max_bytes = self.config.max_size;
        s.downloading = self.flights.len() as u64;
        s
    }

    /// Whether this node holds `oid` or is downloading it.
    pub async fn holds(&self, oid: &LfsOid) -> bool {
        self.flights.get(oid).is_some() || self.store.size(oid).await.is_some()
    }

    /// Which of `oids` another member holds or is downloading (members that do not answer
    /// quickly count as holding none).
    pub async fn farm_has(&self, oids: &[LfsOid]) -> BTreeSet<LfsOid> {
        let Some(farm) = self.farm() else {
            return BTreeSet::new();
        };
        let asked: Vec<String> = oids.iter().map(ToString::to_string).collect();
        let calls = farm.others().into_iter().map(|(node, addr)| {
            let (client, asked) = (farm.client.clone(), asked.clone());
            async move {
                client
                    .lfs_have(&node, addr, &asked)
                    .await
                    .unwrap_or_default()
            }
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .filter_map(|o| LfsOid::parse(&o))
            .collect()
    }

    /// The object from this node's store or download, if it has either.
    async fn here(&self, oid: &LfsOid) -> Result<Option<ObjectBody>, LfsError> {
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
            Some(f) => Ok(Some(follow(&f, "local").await?)),
            None => Ok(None),
        }
    }

    /// A client's download of `oid` of `repo` (`size`: what the batch answer said): from here,
    /// else from another member, else (when this node leads the repository or stands alone)
    /// from the upstream with the farm's own access.
    pub async fn open(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: Option<u64>,
    ) -> Result<ObjectBody, LfsError> {
        if let Some(b) = self.here(oid).await? {
            return Ok(b);
        }
        let size = size.ok_or_else(|| LfsError::NotFound(oid.clone()))?;
        let (me, repo2, oid2) = (self.clone(), repo.clone(), oid.clone());
        let started = self
            .flights
            .start(&self.store, oid, size, move |feeder| async move {
                me.from_farm(&repo2, &oid2, size, feeder).await
            })
            .await?;
        if let Started::Flying(f) = &started {
            self.after(f.clone());
        }
        self.flown(started, oid, "member").await
    }

    /// A member's request: the object from here, else (`fetch`, asked of the leader) downloaded
    /// from the upstream with the farm's own access; `None` when neither.
    pub async fn open_for_member(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
        fetch: bool,
    ) -> Result<Option<ObjectBody>, LfsError> {
        if let Some(b) = self.here(oid).await? {
            return Ok(Some(b));
        }
        if !fetch {
            return Ok(None);
        }
        let started = self.download(repo, oid, size, None).await?;
        self.flown(started, oid, "upstream").await.map(Some)
    }

    /// Starts (or joins) this node's download of `oid` from the upstream: with `action` when the
    /// batch that asked gave one, else with the farm's own access.
    pub async fn download(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
        action: Option<Action>,
    ) -> Result<Started, LfsError> {
        let (me, repo2, oid2) = (self.clone(), repo.clone(), oid.clone());
        let started = self
            .flights
            .start(&self.store, oid, size, move |feeder| async move {
                let action = match action {
                    Some(a) => a,
                    None => me.farm_action(&repo2, &oid2, size).await?,
                };
                let fed = me.upstream.download(&action, feeder).await?;
                me.stats.upstream_download();
                Ok::<_, String>(fed)
            })
            .await?;
        if let Started::Flying(f) = &started {
            self.after(f.clone());
        }
        Ok(started)
    }

    /// Asks the object's download of the repository's leader (which downloads it from the
    /// upstream once for the farm), or does it here when this node leads, stands alone or the
    /// leader cannot be asked. Returns once a download is under way somewhere.
    pub async fn kickoff(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
        action: Option<Action>,
    ) -> Result<(), LfsError> {
        if self.holds(oid).await {
            return Ok(());
        }
        if let (Some(farm), Some((node, addr))) = (self.farm(), self.peers(repo).leader) {
            let ask = LfsFetch {
                project: repo.project.as_str().to_owned(),
                repo: repo.repo.as_str().to_owned(),
                oid: oid.to_string(),
                size,
                href: action.as_ref().map(|a| a.href.clone()),
                header: action
                    .as_ref()
                    .map(|a| a.header.clone())
                    .unwrap_or_default(),
            };
            match farm.client.lfs_fetch(&node, addr, &ask).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(node, error = %e, "the leader cannot download an LFS object; downloading here")
                }
            }
        }
        self.download(repo, oid, size, action).await.map(drop)
    }

    /// A download action from the upstream's batch API with the farm's own access.
    async fn farm_action(&self, repo: &RepoId, oid: &LfsOid, size: u64) -> Result<Action, String> {
        let req = BatchRequest {
            operation: Operation::Download,
            transfers: Some(vec![crate::lfs::batch::BASIC.into()]),
            ref_spec: None,
            objects: vec![ObjectSpec {
                oid: oid.to_string(),
                size: size as i64,
            }],
            hash_algo: None,
        };
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
        o.actions
            .and_then(|a| a.download)
            .ok_or_else(|| "the upstream gives no download action".into())
    }

    /// Feeds `oid` from another member: the leader first, then the others, each as it holds it;
    /// then the leader asked to download it; this node downloads it itself only when no other
    /// member leads the repository.
    async fn from_farm(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
        mut feeder: Feeder,
    ) -> Result<Feeder, String> {
        let peers = self.peers(repo);
        let farm = self.farm();
        let mut asks: Vec<(&(String, SocketAddr), bool)> = Vec::new();
        asks.extend(peers.leader.iter().map(|p| (p, false)));
        asks.extend(peers.others.iter().map(|p| (p, false)));
        asks.extend(peers.leader.iter().map(|p| (p, true)));
        let names = (repo.project.as_str(), repo.repo.as_str());
        if let Some(farm) = &farm {
            for ((node, addr), fetch) in asks {
                let r = farm
                    .client
                    .lfs_object(node, *addr, names, (oid.as_str(), size), fetch)
                    .await;
                let Ok(r) = r else { continue };
                let mut body = r.bytes_stream();
                loop {
                    match tokio::time::timeout(IDLE, body.next()).await {
                        Err(_) => return Err(format!("member {node} stalled sending {oid}")),
                        Ok(None) => {
                            self.stats.member_download();
                            return Ok(feeder);
                        }
                        Ok(Some(Err(e))) => return Err(format!("member {node}: {e}")),
                        Ok(Some(Ok(chunk))) => {
                            feeder.feed(&chunk).await.map_err(|e| e.to_string())?
                        }
                    }
                }
            }
        }
        if peers.leader.is_some() {
            return Err(format!("no member could provide LFS object {oid}"));
        }
        let action = self.farm_action(repo, oid, size).await?;
        let fed = self.upstream.download(&action, feeder).await?;
        self.stats.upstream_download();
        Ok(fed)
    }

    /// The body of a flight just started or joined (or the stored object, if it landed).
    async fn flown(
        self: &Arc<Self>,
        started: Started,
        oid: &LfsOid,
        source: &'static str,
    ) -> Result<ObjectBody, LfsError> {
        match started {
            Started::Flying(f) => follow(&f, source).await,
            Started::Stored => self
                .here(oid)
                .await?
                .ok_or_else(|| LfsError::NotFound(oid.clone())),
        }
    }

    /// Once `f` lands: count it, and keep the store within `mirror.lfs.maxSize`.
    fn after(self: &Arc<Self>, f: Arc<Flight>) {
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

async fn follow(f: &Arc<Flight>, source: &'static str) -> Result<ObjectBody, LfsError> {
    f.started(IDLE).await.map_err(|why| LfsError::Failed {
        oid: f.oid.clone(),
        why: why.to_string(),
    })?;
    Ok(ObjectBody {
        len: f.size,
        stream: Box::pin(f.reader().await?),
        source,
    })
}
