//! Starting and stopping a node: config, home lock, checks, state, listeners, background tasks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::RwLock;
use sha2::Digest;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::farm::{channel, Farm};
use crate::gitcmd::{self, GitError};
use crate::home::{Home, HomeError};
use crate::identity::{Identity, IdentityError};
use crate::names::RepoId;
use crate::serve::router::{router, AppState};
use crate::serve::{ssh, Serving};
use crate::shared::Shared;
use crate::state::RepoEntry;
use crate::store::{Store, StoreError};
use crate::sync::coordinator::{Alone, Coordinator};
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
    Farm(#[from] crate::farm::FarmSetupError),
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
                    .await?;
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
    let gate = crate::access::Gate::new(&config, &identity.node_id)
        .map_err(|e| NodeError::Other(format!("access: {e}")))?;
    let lfs = open_lfs(&home, &config, openssh).await?;
    let secrets = Arc::new(
        crate::secrets::Secrets::load(&config.forge)
            .map_err(|e| NodeError::Other(format!("secrets: {e}")))?,
    );
    let forge = crate::forge::Forge::new(&config, secrets.api_token.clone())
        .map_err(|e| NodeError::Other(e.to_string()))?;
    let forge_ssh = match (&forge, config.forge.ssh_keys_forge) {
        (Some(f), true) => Some(Arc::new(crate::forge::ForgeSsh::new(
            f.clone(),
            config.auth.cache_ttl,
            config.auth.offline_ttl,
        ))),
        _ => None,
    };
    let selection = Arc::new(
        crate::selection::Selection::load(&config, &store)
            .map_err(|e| NodeError::Other(format!("the admin page's selection: {e}")))?,
    );
    let inventory = Arc::new(
        crate::forge::inventory::Inventory::new(&config, forge, selection.clone())
            .map_err(|e| NodeError::Other(e.to_string()))?,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = crate::metrics::NodeMetrics::default();
    let notifier = match (&config.forge.notify_url, &secrets.webhook) {
        (Some(url), Some(secret)) => {
            let client =
                crate::access::upstream_check::http_client(config.auth.ca_file.as_deref(), 0)
                    .map_err(|e| NodeError::Other(format!("notices: {e}")))?;
            Some(crate::sync::notify::Notifier::new(
                client,
                url,
                secret.clone(),
                stop_rx.clone(),
                metrics.notice_counter(),
            ))
        }
        _ => None,
    };
    let shared = Arc::new(Shared {
        gate,
        config,
        home,
        identity,
        store,
        git,
        openssh,
        repos: crate::repo_map::RepoMap::new(repos),
        listed: AtomicBool::new(false),
        was_ready: AtomicBool::new(false),
        farm_stale_since: std::sync::atomic::AtomicI64::new(0),
        lfs,
        inventory,
        selection,
        series: Default::default(),
        secrets,
        notifier,
        metrics,
        repos_changed: Default::default(),
        changed: Default::default(),
        served_changed: Default::default(),
        staged_refs: Default::default(),
    });
    let shared_store = shared.store.clone();
    let (sync, sync_rx) = scheduler::channel();
    let mut farm_tasks = Vec::new();
    let farm = match (&shared.config.farm, farm_ca) {
        (Some(fc), Some(ca)) => {
            let (farm, tasks) =
                join_farm(&shared, fc, ca, &sync, (http_bound, ssh_bound), &stop_rx).await?;
            farm_tasks = tasks;
            shared.lfs.attach_farm(&farm);
            Some(farm)
        }
        _ => None,
    };
    let coordinator: Arc<dyn Coordinator> = match &farm {
        Some(f) => f.clone(),
        None => Arc::new(Alone),
    };
    let sched = tokio::spawn(scheduler::run(
        shared.clone(),
        coordinator,
        sync_rx,
        stop_rx.clone(),
    ));
    let keys_file = (shared.config.ssh_keys_file.clone())
        .unwrap_or_else(|| shared.home.root().join("authorized_keys"));
    let serving = Arc::new(Serving {
        shared: shared.clone(),
        packs: Arc::new(packs),
        refs: Default::default(),
        keys: crate::serve::ssh_keys::AuthorizedKeys::new(
            keys_file,
            shared.config.ssh_keys_command.clone(),
            forge_ssh,
        ),
        sync: sync.clone(),
        admin_csrf: crate::serve::admin_ui::csrf::CsrfKey::new(
            shared.config.farm.as_ref().map(|f| f.secret.as_str()),
        ),
        admin_logins: Default::default(),
        stopping: stop_rx.clone(),
        processes: crate::serve::processes::Processes::new(
            shared.config.serve_max_processes,
            shared.config.serve_queue_timeout,
        ),
    });
    let ssh_task = tokio::spawn(ssh::run(
        serving.clone(),
        ssh_listener,
        ssh_config,
        stop_rx.clone(),
    ));
    let hangup_task = tokio::spawn(reload_on_hangup(shared.clone(), stop_rx.clone()));
    let series_task = tokio::spawn(crate::series::run(shared.clone(), stop_rx.clone()));
    let header_timeout = shared.config.header_timeout;
    let app = router(AppState {
        shared: serving,
        sync,
        farm,
    });
    let http_task = tokio::spawn(crate::http_listener::run(
        http,
        app,
        crate::http_listener::Options {
            header_timeout,
            grace: SHUTDOWN_GRACE,
            tls: None,
        },
        stop_rx.clone(),
    ));
    shutdown.await;
    tracing::info!(grace_s = SHUTDOWN_GRACE.as_secs(), "shutting down");
    let _ = stop_tx.send(true);
    let all = async {
        let _ = tokio::join!(sched, ssh_task, http_task, hangup_task, series_task);
        for t in farm_tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!("grace period over; stopping with requests still in flight");
    }
    // Records written "soon" (finished syncs' results) are made durable before the process ends.
    if let Err(e) = shared_store.flush().await {
        tracing::error!(error = %e, "cannot record the last sync results");
    }
    Ok(())
}

/// Reads the secret files again on each SIGHUP (a rotated API token or webhook secret takes
/// effect without a restart), until `stop` turns true.
async fn reload_on_hangup(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; secrets are read at start only");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            got = hup.recv() => match got {
                Some(()) => {
                    tracing::info!("SIGHUP: reading the secret files again");
                    let s = shared.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || s.secrets.reload()).await {
                        tracing::warn!(error = %e, "re-reading the secrets failed");
                    }
                }
                None => return,
            },
        }
    }
}

/// Opens the LFS store (counting what it holds, off the async threads) and the service on it.
async fn open_lfs(
    home: &Home,
    config: &Config,
    openssh: (u32, u32, u32),
) -> Result<Arc<crate::lfs::Lfs>, NodeError> {
    let dir = home.lfs_dir();
    let opened = tokio::task::spawn_blocking(move || {
        let store = crate::lfs::store::LfsStore::open(&dir)?;
        let usage = store.usage()?;
        Ok::<_, crate::lfs::store::StoreError>((store, usage))
    })
    .await
    .map_err(|e| NodeError::Other(format!("startup task failed: {e}")))?
    .map_err(|e| NodeError::Other(format!("LFS store: {e}")))?;
    let (store, (objects, bytes)) = opened;
    let ssh_command =
        crate::sync::transport::upstream_env(home, &config.upstream, openssh, config.ssh_persist)
            .into_iter()
            .find(|(k, _)| *k == "GIT_SSH_COMMAND")
            .map(|(_, v)| v);
    let ssh = crate::lfs::ssh_auth::SshAuth::new(&config.upstream, ssh_command);
    let upstream = crate::lfs::upstream::UpstreamLfs::new(config, ssh)
        .map_err(|e| NodeError::Other(format!("LFS: {e}")))?;
    let known = crate::lfs::known::Known::new(home.lfs_dir().join("known"));
    let lfs = crate::lfs::Lfs::new(config, store, known, upstream);
    lfs.stats.start_with(objects, bytes);
    Ok(Arc::new(lfs))
}

/// Takes this node's place in its farm: its farm certificate, the farm channel, gossip.
async fn join_farm(
    shared: &Arc<Shared>,
    config: &crate::config::FarmConfig,
    ca: crate::farm::trust::FarmCa,
    sync: &scheduler::SyncHandle,
    (http, ssh): (SocketAddr, SocketAddr),
    stop: &watch::Receiver<bool>,
) -> Result<(Arc<Farm>, Vec<tokio::task::JoinHandle<()>>), NodeError> {
    let node_id = shared.identity.node_id.clone();
    let creds = crate::farm::setup::credentials(&shared.home, &ca, &node_id).await?;
    let client = mirrorfarm_common::farm::client::FarmClient::new(
        &creds.ca_pem,
        &creds.cert_pem,
        &creds.key_pem,
    )
    .map_err(crate::farm::FarmSetupError::from)?;
    let farm = Arc::new(Farm {
        shared: shared.clone(),
        config: config.clone(),
        view: RwLock::new(None),
        view_updated: Default::default(),
        heard: Default::default(),
        own_states: Default::default(),
        states: Default::default(),
        states_news: Default::default(),
        client: client.clone(),
        cert_files: creds.files.clone(),
        sync: sync.clone(),
        lbs: Default::default(),
    });
    let tls =
        mirrorfarm_common::farm::tls::member_server(&creds.ca_pem, &creds.cert_pem, &creds.key_pem)
            .map_err(crate::farm::FarmSetupError::from)?;
    let cert_fp: [u8; 32] =
        match mirrorfarm_common::farm::tls::cert_and_key(&creds.cert_pem, &creds.key_pem) {
            Ok((certs, _)) => match certs.first() {
                Some(c) => sha2::Sha256::digest(c.as_ref()).into(),
                None => return Err(NodeError::Other("the farm certificate is empty".into())),
            },
            Err(e) => return Err(crate::farm::FarmSetupError::from(e).into()),
        };
    let advertise = |port: u16| SocketAddr::new(config.gossip_addr.ip(), port);
    let chan = channel::Channel {
        farm: farm.clone(),
        member: Arc::new(channel::join::Member {
            secret: config.secret.clone(),
            config: crate::farm::keys::config_digests(&shared.config),
            ca_cert: creds.ca_pem.clone(),
            ca,
            upstream_key: creds.upstream_key.clone(),
            cert_fp,
        }),
        description: mirrorfarm_common::farm::messages::Description {
            node_id,
            http: advertise(http.port()),
            ssh: advertise(ssh.port()),
        },
    };
    let channel_task = channel::serve(chan, tls, stop.clone()).await?;
    let gossip_task = tokio::spawn(crate::farm::membership::run(
        farm.clone(),
        http,
        ssh,
        crate::farm::verify::Verifier::new(client),
        stop.clone(),
    ));
    let sessions_task = tokio::spawn(crate::farm::sessions::run(farm.clone(), stop.clone()));
    let selection_task = tokio::spawn(crate::farm::selection::run(farm.clone(), stop.clone()));
    Ok((
        farm,
        vec![channel_task, gossip_task, sessions_task, selection_task],
    ))
}

/// Opens the store, loads the identity and the repository records (cleaning up after a crash
/// waits for each repository's first sync: [`crate::sync::recover`]).
fn open_state(home: &Home) -> Result<(Store, Identity, BTreeMap<RepoId, RepoEntry>), NodeError> {
    let store = Store::open(&home.data_dir())?;
    let identity = Identity::load_or_create(home, &store)?;
    let mut repos = BTreeMap::new();
    for (key, record) in store.repos()? {
        let Ok(id) = RepoId::parse(&key) else {
            tracing::warn!(key, "ignoring a stored repository with an invalid name");
            continue;
        };
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
