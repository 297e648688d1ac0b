//! Starting and stopping a node: config, home lock, checks, state, listeners, background tasks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::gitcmd::{self, GitError};
use crate::home::{Home, HomeError};
use crate::identity::{Identity, IdentityError};
use crate::mirror_repo::MirrorRepo;
use crate::names::RepoId;
use crate::serve::router::{router, AppState};
use crate::serve::ssh;
use crate::state::{RepoEntry, Shared};
use crate::store::{Store, StoreError};
use crate::sync::scheduler;

/// How long in-flight requests get at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Why a node could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Home problems (including the lock).
    #[error(transparent)]
    Home(#[from] HomeError),
    /// git/ssh missing or too old.
    #[error(transparent)]
    Tools(#[from] GitError),
    /// State store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Identity/keys.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// This node could not become a member of its farm.
    #[error("farm: {0}")]
    Farm(String),
    /// Anything else at start.
    #[error("{0}")]
    Other(String),
}

impl NodeError {
    /// Process exit code (sysexits): 64 for configuration errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) => 64,
            Self::Tools(_) | Self::Farm(_) => 69,
            Self::Home(HomeError::Locked(_)) => 75,
            Self::Bind { .. } => 71,
            _ => 70,
        }
    }
}

/// Validates the configuration only (what `mirrorfarm node` checks before anything else):
/// `config_file`, or `<home>/mirrorfarm.properties` when `None`.
pub fn check_config(home: &Path, config_file: Option<&Path>) -> Result<Config, ConfigError> {
    match config_file {
        Some(f) => Config::load_file(f),
        None => Config::load(home),
    }
}

/// Runs a node with `config` on `home` until `shutdown` resolves.
pub async fn run(
    home_dir: &Path,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let home = Home::new(home_dir);
    home.prepare()?;
    let _lock = home.lock()?;
    let git = gitcmd::check_git().await?;
    let openssh = if config.upstream.is_ssh() {
        gitcmd::check_openssh().await?
    } else {
        (0, 0, 0)
    };
    tracing::info!(git = ?git, openssh = ?openssh, home = %home_dir.display(), "starting mirror node");
    let (store, identity, repos) = {
        let home = home.clone();
        tokio::task::spawn_blocking(move || open_state(&home))
            .await
            .map_err(|e| NodeError::Other(format!("startup task failed: {e}")))??
    };
    // A farm member: load, create or join the farm (taking on its identity) before serving anything.
    let (identity, farm_ca) = match &config.farm {
        None => (identity, None),
        Some(farm) => {
            let ca =
                crate::farm::setup::ensure_member(&home, &store, &config, farm, &identity.node_id)
                    .await
                    .map_err(NodeError::Farm)?;
            let (h, s) = (home.clone(), store.clone());
            let identity = tokio::task::spawn_blocking(move || Identity::load_or_create(&h, &s))
                .await
                .map_err(|e| NodeError::Other(format!("startup task failed: {e}")))??;
            (identity, Some(ca))
        }
    };
    let host_key = crate::identity::ensure_key(&home.host_key(), "mirrorfarm-host")?;
    let http = TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.http_addr,
            what: "HTTP",
            source,
        })?;
    let ssh_listener =
        TcpListener::bind(config.ssh_addr)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.ssh_addr,
                what: "SSH",
                source,
            })?;
    tracing::info!(
        http = %http.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        ssh = %ssh_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        node_id = %identity.node_id,
        farm_id = %identity.farm_id,
        public_key = %identity.public_key,
        "listening"
    );
    let ssh_config = ssh::config(host_key);
    let http_bound = http.local_addr().unwrap_or(config.http_addr);
    let ssh_bound = ssh_listener.local_addr().unwrap_or(config.ssh_addr);
    // Emptying the cache directory may take a while: off the async threads.
    let (dir, max) = (home.cache_dir().join("packs"), config.pack_cache_max);
    let packs =
        tokio::task::spawn_blocking(move || crate::serve::pack_cache::PackCache::new(&dir, max))
            .await
            .map_err(|e| NodeError::Other(format!("startup task failed: {e}")))?
            .map_err(|source| HomeError::Io {
                path: home.cache_dir(),
                source,
            })?;
    let shared = Arc::new(Shared {
        config,
        home,
        identity,
        store,
        git,
        openssh,
        repos: RwLock::new(repos),
        listed: AtomicBool::new(false),
        metrics: crate::metrics::NodeMetrics::default(),
        refs: Default::default(),
        packs: Arc::new(packs),
        farm: RwLock::new(None),
        farm_changed: Default::default(),
        farm_view_updated: Default::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (sync, sync_rx) = scheduler::channel();
    let sched = tokio::spawn(scheduler::run(shared.clone(), sync_rx, stop_rx.clone()));
    if let (Some(farm), Some(ca)) = (&shared.config.farm, &farm_ca) {
        crate::farm::setup::serve_joins(
            &shared.home,
            &shared.config,
            farm,
            ca,
            &shared.identity.node_id,
            (http_bound, ssh_bound),
            stop_rx.clone(),
        )
        .await
        .map_err(NodeError::Farm)?;
    }
    let ca_pem = match &farm_ca {
        Some(ca) => Some(ca.cert_pem().map_err(|e| NodeError::Farm(e.to_string()))?),
        None => None,
    };
    let farm_task = shared
        .config
        .farm
        .clone()
        .zip(ca_pem)
        .map(|(farm, ca_pem)| {
            let (http, ssh) = (http_bound, ssh_bound);
            tokio::spawn(crate::farm::membership::run(
                shared.clone(),
                farm,
                http,
                ssh,
                sync.clone(),
                crate::farm::verify::Verifier::new(ca_pem),
                stop_rx.clone(),
            ))
        });
    let ssh_task = tokio::spawn(ssh::run(
        shared.clone(),
        ssh_listener,
        ssh_config,
        stop_rx.clone(),
    ));
    let header_timeout = shared.config.header_timeout;
    let app = router(AppState {
        shared: shared.clone(),
        sync,
    });
    let http_task = tokio::spawn(crate::serve::http_server::run(
        http,
        app,
        header_timeout,
        stop_rx.clone(),
        SHUTDOWN_GRACE,
    ));
    shutdown.await;
    tracing::info!(grace_s = SHUTDOWN_GRACE.as_secs(), "shutting down");
    let _ = stop_tx.send(true);
    let all = async {
        let _ = tokio::join!(sched, ssh_task, http_task);
        if let Some(f) = farm_task {
            let _ = f.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!("grace period over; stopping with requests still in flight");
    }
    Ok(())
}

/// Opens the store, loads the identity and the repository records, and cleans up after a crash.
fn open_state(home: &Home) -> Result<(Store, Identity, BTreeMap<RepoId, RepoEntry>), NodeError> {
    let store = Store::open(&home.data_dir())?;
    let identity = Identity::load_or_create(home, &store)?;
    let mut repos = BTreeMap::new();
    for (key, record) in store.repos()? {
        let Ok(id) = RepoId::parse(&key) else {
            tracing::warn!(key, "ignoring a stored repository with an invalid name");
            continue;
        };
        let repo = MirrorRepo::new(home.repos_dir().join(id.rel_path()));
        match repo.recover() {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(repo = %id, removed = n, "cleaned up after an interrupted sync")
            }
            Err(e) => {
                tracing::warn!(repo = %id, error = %e, "cleanup after an interrupted sync failed")
            }
        }
        repos.insert(
            id,
            RepoEntry {
                record,
                ..Default::default()
            },
        );
    }
    Ok((store, identity, repos))
}
