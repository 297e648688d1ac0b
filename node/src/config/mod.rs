//! Node configuration: `<home>/mirrorfarm.properties` → [`FileConfig`] (every key known, each with
//! its line) → validated [`Config`]. All checks happen here, before any port is bound.
//!
//! Values come only from the file; a key that is absent takes the default documented in the README.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::names::{ProjectKey, RepoId};
use crate::upstream_url::UpstreamUrl;

mod access;
mod admin;
mod admins;
mod file;
mod forge;
mod lfs;

pub use access::{AccessConfig, SessionMode};
pub use forge::{ForgeConfig, ForgeKind};
pub use lfs::LfsConfig;

pub use admin::AdminToken;
pub use file::FileConfig;
use mirrorfarm_common::config::{read_file, Validator};
pub use mirrorfarm_common::config::{ConfigError, Located};

/// File name of the node configuration inside the home.
pub const FILE_NAME: &str = "mirrorfarm.properties";

/// Who may read through this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may clone and fetch.
    Anonymous,
    /// Credentials checked with the upstream (or a session) for every git request.
    Authenticated,
}

/// Which projects are mirrored whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projects {
    /// None: only `mirror.repos`.
    None,
    /// Every project the upstream lists (`*`).
    All,
    /// These projects.
    Some(BTreeSet<ProjectKey>),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// `setup.displayName`.
    pub display_name: String,
    /// `setup.baseUrl`, without trailing slash.
    pub base_url: String,
    /// `plugin.mirroring.upstream.url`.
    pub upstream: UpstreamUrl,
    /// `plugin.mirroring.synchronization.interval` (default 180 s).
    pub sync_interval: Duration,
    /// `mirror.repos`.
    pub repos: BTreeSet<RepoId>,
    /// `mirror.projects`.
    pub projects: Projects,
    /// `mirror.access` (default `authenticated`).
    pub access: Access,
    /// `mirror.sync.concurrency` (default 4).
    pub sync_concurrency: usize,
    /// `mirror.sync.timeout` (default 3600 s): one fetch longer than this is stopped.
    pub sync_timeout: Duration,
    /// `mirror.sync.sshPersist` (default 60; 0: off): for an ssh:// upstream, keep one SSH connection
    /// open this many seconds after its last fetch and run later fetches over it (OpenSSH
    /// connection sharing), saving the connection setup on every fetch. A key revoked or a host
    /// key changed upstream is noticed only once that connection closes.
    pub ssh_persist: Duration,
    /// `mirror.sync.probe` (default true): for an ssh:// or file:// upstream without a forge or
    /// manifest, a reconcile first reads the refs of every repository it would fetch with one
    /// command (over SSH: a POSIX shell loop over `git-upload-pack --advertise-refs`) and fetches
    /// only the ones that changed; an upstream that refuses the command (a restricted shell such
    /// as `git-shell`) gets a fetch per repository, as with `false`.
    pub sync_probe: bool,
    /// `mirror.cache.packs.maxSize` (default 1 GiB; 0 turns the pack cache off).
    pub pack_cache_max: u64,
    /// `server.address`:`server.port` (default 0.0.0.0:7990).
    pub http_addr: SocketAddr,
    /// `server.headerTimeout` (default 30 s): a request's headers must arrive within it.
    pub header_timeout: Duration,
    /// `plugin.ssh.address`:`plugin.ssh.port` (default 0.0.0.0:7999).
    pub ssh_addr: SocketAddr,
    /// `plugin.ssh.proxyProtocol` (default false): SSH connections must start with a PROXY v2 header.
    pub ssh_proxy_protocol: bool,
    /// `logging.format` (default `text`).
    pub log_format: LogFormat,
    /// The farm (membership by gossip), when `farm.secret` is set.
    pub farm: Option<FarmConfig>,
    /// `mirror.admin.tokenFile`: the token that opens the admin routes to other hosts.
    pub admin_token: Option<AdminToken>,
    /// `mirror.admins`: upstream users who may log in to `/admin` (empty: only the admin token).
    pub admins: Vec<String>,
    /// `mirror.admin.plotInterval` (default 60 s, 1–3600): time between the points of the admin
    /// page's plots (60 points are kept: an hour by default).
    pub plot_interval: Duration,
    /// `plugin.ssh.authorizedKeysFile` (relative to the configuration file's directory; `None`:
    /// `<home>/authorized_keys`).
    pub ssh_keys_file: Option<PathBuf>,
    /// `plugin.ssh.authorizedKeysCommand`.
    pub ssh_keys_command: Option<String>,
    /// `plugin.ssh.maxConnections`: SSH connections served at once (default 1000).
    pub ssh_max_connections: usize,
    /// `plugin.ssh.firstCommandTimeout`: how long a connection may take from accept to its first
    /// command (default 60 s).
    pub ssh_first_command_timeout: Duration,
    /// Credentials, sessions and pushes.
    pub auth: AccessConfig,
    /// `mirror.serve.maxProcesses` (default 2 × CPUs): upload-pack processes serving clients at
    /// once.
    pub serve_max_processes: usize,
    /// `mirror.serve.queueTimeout` (default 30 s): how long a request waits for a place before it
    /// is refused.
    pub serve_queue_timeout: Duration,
    /// `mirror.serve.maxRequestSize` (default 32 MiB): the largest upload-pack request body
    /// (decompressed); a larger one gets 413.
    pub serve_max_request: u64,
    /// `server.bodyTimeout` (default 60 s): an upload-pack request's body must arrive within it
    /// (408 otherwise).
    pub body_timeout: Duration,
    /// Git LFS: the upstream's LFS endpoint, prefetch, the store's bound.
    pub lfs: LfsConfig,
    /// The upstream's kind, its API, manifest, webhooks and notices.
    pub forge: ForgeConfig,
}

/// The farm keys.
#[derive(Clone)]
pub struct FarmConfig {
    /// `farm.gossip.address`:`farm.gossip.port` (port default 7900): where this node gossips; the
    /// address is also what peers use to reach it, so it must be a concrete one.
    pub gossip_addr: SocketAddr,
    /// `farm.seeds`: `host:port` of existing members (empty for the first node).
    pub seeds: Vec<String>,
    /// `farm.secret`: shared by every member; never sent anywhere.
    pub secret: String,
    /// `farm.stage.timeout` (default 15 s): how long members that staged a new state wait for the
    /// others before advertising it without them (the laggards stop serving the repository until
    /// they catch up).
    pub stage_timeout: Duration,
}

impl std::fmt::Debug for FarmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarmConfig")
            .field("gossip_addr", &self.gossip_addr)
            .field("seeds", &self.seeds)
            .field("secret", &"***")
            .finish()
    }
}

impl Config {
    /// Reads and validates `<home>/mirrorfarm.properties`.
    pub fn load(home: &Path) -> Result<Self, ConfigError> {
        Self::load_file(&home.join(FILE_NAME))
    }

    /// Reads and validates a node configuration file anywhere (e.g. `/etc/mirrorfarm/…`).
    pub fn load_file(file: &Path) -> Result<Self, ConfigError> {
        let text = read_file(file)?;
        Self::from_file(FileConfig::parse(file, &text)?, file)
    }

    /// Validates a parsed file.
    pub fn from_file(fc: FileConfig, file: &Path) -> Result<Self, ConfigError> {
        let v = Validator { file };
        let mode = v.required(&fc.application_mode, "application.mode")?;
        if mode.value != "mirror" {
            return Err(v.at(mode, "application.mode", "must be `mirror`"));
        }
        let display_name = v.required(&fc.display_name, "setup.displayName")?;
        if display_name.value.is_empty() {
            return Err(v.at(display_name, "setup.displayName", "must not be empty"));
        }
        let base = v.required(&fc.base_url, "setup.baseUrl")?;
        let base_url = base.value.trim_end_matches('/').to_owned();
        let base_ok = ["https://", "http://"].iter().any(|s| {
            base_url
                .strip_prefix(s)
                .is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
        });
        if !base_ok {
            return Err(v.at(base, "setup.baseUrl", "must be an http:// or https:// URL"));
        }
        let up = v.required(&fc.upstream_url, "plugin.mirroring.upstream.url")?;
        let upstream = UpstreamUrl::parse(&up.value)
            .map_err(|e| v.at(up, "plugin.mirroring.upstream.url", &e.to_string()))?;
        let sync_interval = v.seconds(
            &fc.sync_interval,
            "plugin.mirroring.synchronization.interval",
            180,
        )?;
        let sync_timeout = v.seconds(&fc.sync_timeout, "mirror.sync.timeout", 3600)?;
        let ssh_persist = Duration::from_secs(v.number(
            &fc.ssh_persist,
            "mirror.sync.sshPersist",
            0..=600,
            60,
        )?);
        let sync_probe = v.boolean(&fc.sync_probe, "mirror.sync.probe", true)?;
        let header_timeout = v.seconds(&fc.header_timeout, "server.headerTimeout", 30)?;
        let pack_cache_max = match &fc.pack_cache_max {
            None => 1 << 30,
            Some(l) => parse_size(&l.value).ok_or_else(|| {
                v.at(
                    l,
                    "mirror.cache.packs.maxSize",
                    "must be a size such as 0, 512m, 2g or 1048576",
                )
            })?,
        };
        let ssh_proxy_protocol =
            v.boolean(&fc.ssh_proxy_protocol, "plugin.ssh.proxyProtocol", false)?;
        let repos = match &fc.repos {
            None => BTreeSet::new(),
            Some(l) => list(&l.value)
                .map(|s| {
                    RepoId::parse(s).map_err(|e| v.at(l, "mirror.repos", &format!("{s:?}: {e}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let projects = match &fc.projects {
            None => Projects::None,
            Some(l) if l.value == "*" => Projects::All,
            Some(l) => Projects::Some(
                list(&l.value)
                    .map(|s| {
                        ProjectKey::parse(s)
                            .map_err(|e| v.at(l, "mirror.projects", &format!("{s:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        if repos.is_empty() && projects == Projects::None {
            return Err(ConfigError::Missing {
                file: file.to_owned(),
                key: "mirror.repos".into(),
                message: "set mirror.repos or mirror.projects (or both) to something to mirror"
                    .into(),
            });
        }
        let access = match &fc.access {
            None => Access::Authenticated,
            Some(l) => match l.value.as_str() {
                "anonymous" => Access::Anonymous,
                "authenticated" => Access::Authenticated,
                _ => {
                    return Err(v.at(l, "mirror.access", "must be `anonymous` or `authenticated`"))
                }
            },
        };
        let sync_concurrency =
            v.number(&fc.sync_concurrency, "mirror.sync.concurrency", 1..=64, 4)? as usize;
        let http_addr = v.addr(
            &fc.http_address,
            "server.address",
            IpAddr::from([0, 0, 0, 0]),
            &fc.http_port,
            "server.port",
            7990,
        )?;
        let ssh_addr = v.addr(
            &fc.ssh_address,
            "plugin.ssh.address",
            IpAddr::from([0, 0, 0, 0]),
            &fc.ssh_port,
            "plugin.ssh.port",
            7999,
        )?;
        if http_addr == ssh_addr && http_addr.port() != 0 {
            let l = fc.ssh_port.as_ref().or(fc.http_port.as_ref());
            return Err(match l {
                Some(l) => v.at(
                    l,
                    "plugin.ssh.port",
                    "HTTP and SSH cannot share one address",
                ),
                None => v.missing("plugin.ssh.port", "HTTP and SSH cannot share one address"),
            });
        }
        let log_format = match &fc.log_format {
            None => LogFormat::Text,
            Some(l) => match l.value.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(v.at(l, "logging.format", "must be `text` or `json`")),
            },
        };
        let farm = farm_config(&fc, &v, [http_addr, ssh_addr])?;
        let admin_token = admin::admin_token(&fc.admin_token_file, &v, file)?;
        let ssh_keys_file = fc
            .ssh_keys_file
            .as_ref()
            .map(|l| file.parent().unwrap_or(Path::new(".")).join(&l.value));
        let ssh_keys_command = match &fc.ssh_keys_command {
            Some(l) if l.value.trim().is_empty() => {
                return Err(v.at(l, "plugin.ssh.authorizedKeysCommand", "must name a command"))
            }
            Some(l) => Some(l.value.trim().to_owned()),
            None => None,
        };
        let ssh_max_connections = v.number(
            &fc.ssh_max_connections,
            "plugin.ssh.maxConnections",
            1..=100_000,
            1000,
        )? as usize;
        let ssh_first_command_timeout = Duration::from_secs(v.number(
            &fc.ssh_first_command_timeout,
            "plugin.ssh.firstCommandTimeout",
            1..=600,
            60,
        )?);
        let auth = access::access_config(&fc, &v, file, access, &upstream)?;
        let admins = admins::admins(&fc.admins, &v, auth.auth_url.as_deref())?;
        let plot_interval = Duration::from_secs(v.number(
            &fc.plot_interval,
            "mirror.admin.plotInterval",
            1..=3600,
            60,
        )?);
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        let serve_max_processes = v.number(
            &fc.serve_max_processes,
            "mirror.serve.maxProcesses",
            1..=4096,
            2 * cpus,
        )? as usize;
        let serve_queue_timeout = Duration::from_secs(v.number(
            &fc.serve_queue_timeout,
            "mirror.serve.queueTimeout",
            0..=600,
            30,
        )?);
        let serve_max_request = match &fc.serve_max_request {
            None => 32 << 20,
            Some(l) => parse_size(&l.value)
                .filter(|n| (64 * 1024..=1 << 30).contains(n))
                .ok_or_else(|| {
                    v.at(
                        l,
                        "mirror.serve.maxRequestSize",
                        "must be a size from 64k to 1g, such as 32m",
                    )
                })?,
        };
        let body_timeout = v.seconds(&fc.body_timeout, "server.bodyTimeout", 60)?;
        let lfs = lfs::lfs_config(&fc, &v, &auth)?;
        let forge = forge::forge_config(&fc, &v, file, &upstream, &auth)?;
        if let (Some(l), false) = (&fc.projects, forge.can_list(&upstream)) {
            return Err(v.at(
                l,
                "mirror.projects",
                "this upstream cannot be listed: set plugin.mirroring.upstream.type (a forge), \
                 plugin.mirroring.upstream.manifest.url (a grokmirror manifest) or use a file:// \
                 upstream; or list repositories in mirror.repos",
            ));
        }
        Ok(Self {
            forge,
            lfs,
            serve_max_request,
            body_timeout,
            serve_max_processes,
            serve_queue_timeout,
            auth,
            ssh_max_connections,
            ssh_first_command_timeout,
            ssh_keys_file,
            ssh_keys_command,
            farm,
            admin_token,
            admins,
            plot_interval,
            file: file.to_owned(),
            display_name: display_name.value.clone(),
            base_url,
            upstream,
            sync_interval,
            repos,
            projects,
            access,
            sync_concurrency,
            sync_timeout,
            ssh_persist,
            sync_probe,
            http_addr,
            pack_cache_max,
            header_timeout,
            ssh_addr,
            ssh_proxy_protocol,
            log_format,
        })
    }
}

fn farm_config(
    fc: &FileConfig,
    v: &Validator<'_>,
    taken: [SocketAddr; 2],
) -> Result<Option<FarmConfig>, ConfigError> {
    let Some(secret) = &fc.farm_secret else {
        for (l, key) in [
            (&fc.farm_seeds, "farm.seeds"),
            (&fc.farm_gossip_address, "farm.gossip.address"),
            (&fc.farm_gossip_port, "farm.gossip.port"),
            (&fc.farm_stage_timeout, "farm.stage.timeout"),
        ] {
            if let Some(l) = l {
                return Err(v.at(l, key, "needs farm.secret (the farm's shared secret) too"));
            }
        }
        return Ok(None);
    };
    let secret_value = v.farm_secret(secret, "farm.secret")?;
    let gossip_addr = v.gossip_addr(
        &fc.farm_gossip_address,
        "farm.gossip.address",
        &fc.farm_gossip_port,
        "farm.gossip.port",
        7900,
    )?;
    if taken
        .iter()
        .any(|a| a.port() == gossip_addr.port() && gossip_addr.port() != 0)
    {
        let l = fc
            .farm_gossip_port
            .as_ref()
            .or(fc.farm_gossip_address.as_ref())
            .unwrap_or(secret);
        return Err(v.at(
            l,
            "farm.gossip.port",
            "same port as the HTTP or SSH listener",
        ));
    }
    let seeds = match &fc.farm_seeds {
        None => Vec::new(),
        Some(l) => v.seeds(l, "farm.seeds")?,
    };
    Ok(Some(FarmConfig {
        gossip_addr,
        seeds,
        secret: secret_value,
        stage_timeout: v.seconds(&fc.farm_stage_timeout, "farm.stage.timeout", 15)?,
    }))
}

/// `1048576`, `512k`, `512m`, `2g` (powers of 1024; upper or lower case).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.strip_suffix(['k', 'm', 'g', 't']) {
        Some(n) => {
            let m = match s.chars().last() {
                Some('k') => 1u64 << 10,
                Some('m') => 1 << 20,
                Some('g') => 1 << 30,
                _ => 1 << 40,
            };
            (n, m)
        }
        None => (s.as_str(), 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "application.mode=mirror\nsetup.displayName=Mirror\nsetup.baseUrl=https://farm.example.com\nplugin.mirroring.upstream.url=ssh://git@up:7999\nmirror.repos=P/a, P/b.git\nplugin.mirroring.upstream.auth.url=https://up/scm/\n";

    fn load(text: &str) -> Result<Config, ConfigError> {
        let f = Path::new("/h/mirrorfarm.properties");
        Config::from_file(FileConfig::parse(f, text)?, f)
    }

    #[test]
    fn good_config_with_defaults() {
        let c = load(GOOD).expect("valid");
        assert_eq!(c.repos.len(), 2);
        assert_eq!(c.sync_interval, Duration::from_secs(180));
        assert_eq!(c.ssh_persist, Duration::from_secs(60));
        assert!(c.sync_probe);
        assert_eq!(c.http_addr.port(), 7990);
        assert_eq!(c.ssh_addr.port(), 7999);
        assert_eq!(c.access, Access::Authenticated);
        assert_eq!(c.pack_cache_max, 1 << 30);
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("2x"), None);
        assert_eq!(c.auth.auth_url.as_deref(), Some("https://up/scm"));
        assert_eq!(c.auth.cache_ttl, Duration::from_secs(300));
        assert_eq!(c.auth.offline_ttl, Duration::from_secs(3600));
        assert_eq!(c.auth.session_timeout, Duration::from_secs(1800));
        assert_eq!(c.auth.push_sync_wait, Duration::from_secs(10));
        assert_eq!(c.auth.sessions, SessionMode::Replicated);
    }

    #[test]
    fn authenticated_needs_somewhere_to_check_credentials() {
        let no_url = GOOD.replace("plugin.mirroring.upstream.auth.url=https://up/scm/\n", "");
        let msg = load(&no_url).expect_err("no auth url").to_string();
        assert!(msg.contains("plugin.mirroring.upstream.auth.url"), "{msg}");
        // An https:// upstream is its own auth URL; anonymous needs none.
        let https = no_url.replace("ssh://git@up:7999", "https://up/scm");
        let c = load(&https).expect("https upstream");
        assert_eq!(c.auth.auth_url.as_deref(), Some("https://up/scm"));
        load(&format!("{no_url}mirror.access=anonymous\n")).expect("anonymous");
        let bad = GOOD.replace("https://up/scm/", "ftp://up");
        let msg = load(&bad).expect_err("scheme").to_string();
        assert!(
            msg.contains(":6: plugin.mirroring.upstream.auth.url"),
            "{msg}"
        );
        let msg = load(&format!("{GOOD}hazelcast.http.sessions=everywhere\n"))
            .expect_err("mode")
            .to_string();
        assert!(msg.contains(":7: hazelcast.http.sessions"), "{msg}");
    }

    #[test]
    fn typo_names_file_line_and_key() {
        let text = GOOD.replace("setup.displayName", "setup.dispalyName");
        let msg = load(&text).expect_err("typo").to_string();
        assert!(
            msg.contains("/h/mirrorfarm.properties:2: setup.dispalyName: unknown key"),
            "{msg}"
        );
    }

    #[test]
    fn duplicates_and_bad_values() {
        let msg = load(&format!("{GOOD}mirror.repos=P/c\n"))
            .expect_err("dup")
            .to_string();
        assert!(
            msg.contains(":7: mirror.repos: duplicate key (first set on line 5)"),
            "{msg}"
        );
        let msg = load(&format!("{GOOD}server.port=http\n"))
            .expect_err("port")
            .to_string();
        assert!(msg.contains(":7: server.port:"), "{msg}");
        let msg = load(&format!("{GOOD}mirror.projects=*\n"))
            .expect_err("ssh list")
            .to_string();
        assert!(msg.contains("mirror.projects"), "{msg}");
        let msg = load(&GOOD.replacen("=mirror\n", "=mirrors\n", 1))
            .expect_err("mode")
            .to_string();
        assert!(msg.contains(":1: "), "{msg}");
        let msg = load(&GOOD.replace("mirror.repos=P/a, P/b.git\n", ""))
            .expect_err("none")
            .to_string();
        assert!(msg.contains("mirror.repos"), "{msg}");
    }
}
