//! Load-balancer configuration: `<home>/mirrorfarm-lb.properties` → [`FileConfig`] (every key
//! known, each with its line) → validated [`LbConfig`], before anything is bound.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mirrorfarm_common::config::{
    read_file, read_known_keys, ConfigError, KnownKeys, Located, Validator,
};

/// File name of the LB configuration inside its home.
pub const FILE_NAME: &str = "mirrorfarm-lb.properties";

/// Every key the LB knows, as read from the file.
#[derive(Debug, Default)]
pub struct FileConfig {
    hostname: Option<Located>,
    https_address: Option<Located>,
    https_port: Option<Located>,
    http_port: Option<Located>,
    ssh_address: Option<Located>,
    ssh_port: Option<Located>,
    ssh_proxy_protocol: Option<Located>,
    ssh_max_connections: Option<Located>,
    tls_certificate: Option<Located>,
    tls_key: Option<Located>,
    backends: Option<Located>,
    health_interval: Option<Located>,
    health_timeout: Option<Located>,
    health_fall: Option<Located>,
    health_rise: Option<Located>,
    drain_grace: Option<Located>,
    sticky: Option<Located>,
    admin_address: Option<Located>,
    admin_port: Option<Located>,
    threads: Option<Located>,
    log_format: Option<Located>,
    farm_seeds: Option<Located>,
    farm_secret: Option<Located>,
    farm_gossip_address: Option<Located>,
    farm_gossip_port: Option<Located>,
}

impl KnownKeys for FileConfig {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Located>> {
        Some(match key {
            "lb.hostname" => &mut self.hostname,
            "lb.https.address" => &mut self.https_address,
            "lb.https.port" => &mut self.https_port,
            "lb.http.port" => &mut self.http_port,
            "lb.ssh.address" => &mut self.ssh_address,
            "lb.ssh.port" => &mut self.ssh_port,
            "lb.ssh.proxyProtocol" => &mut self.ssh_proxy_protocol,
            "lb.ssh.maxConnections" => &mut self.ssh_max_connections,
            "lb.tls.certificate" => &mut self.tls_certificate,
            "lb.tls.key" => &mut self.tls_key,
            "lb.backends" => &mut self.backends,
            "lb.health.interval" => &mut self.health_interval,
            "lb.health.timeout" => &mut self.health_timeout,
            "lb.health.fall" => &mut self.health_fall,
            "lb.health.rise" => &mut self.health_rise,
            "lb.drain.grace" => &mut self.drain_grace,
            "lb.sticky" => &mut self.sticky,
            "lb.admin.address" => &mut self.admin_address,
            "lb.admin.port" => &mut self.admin_port,
            "lb.threads" => &mut self.threads,
            "logging.format" => &mut self.log_format,
            "lb.farm.seeds" => &mut self.farm_seeds,
            "lb.farm.secret" => &mut self.farm_secret,
            "lb.farm.gossip.address" => &mut self.farm_gossip_address,
            "lb.farm.gossip.port" => &mut self.farm_gossip_port,
            _ => return None,
        })
    }
}

/// One node behind the LB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddr {
    /// As written (`host:httpPort:sshPort`).
    pub label: String,
    /// The node's HTTP listener.
    pub http: SocketAddr,
    /// The node's SSH listener.
    pub ssh: SocketAddr,
}

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// PEM files given by the admin.
    Files {
        /// Certificate (chain) PEM.
        cert: PathBuf,
        /// Private key PEM.
        key: PathBuf,
    },
    /// Self-signed for the hostname, created on first start in `<home>/tls/`.
    SelfSigned,
}

/// The validated LB configuration.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// The LB's home.
    pub home: PathBuf,
    /// `lb.hostname`.
    pub hostname: String,
    /// `lb.https.address`:`lb.https.port` (default 0.0.0.0:443).
    pub https: SocketAddr,
    /// `lb.http.port`: plain HTTP that only redirects to HTTPS.
    pub http_redirect: Option<SocketAddr>,
    /// `lb.ssh.address`:`lb.ssh.port` (default 0.0.0.0:7999).
    pub ssh: SocketAddr,
    /// `lb.ssh.proxyProtocol` (default false).
    pub ssh_proxy_protocol: bool,
    /// `lb.ssh.maxConnections` (default 1000): SSH connections each LB worker carries at once; one
    /// more is told so and closed.
    pub ssh_max_connections: usize,
    /// `lb.tls.certificate` / `lb.tls.key`.
    pub cert: CertSource,
    /// `lb.backends`.
    pub backends: Vec<BackendAddr>,
    /// `lb.health.interval` (default 1 s).
    pub health_interval: Duration,
    /// `lb.health.timeout` (default 2 s).
    pub health_timeout: Duration,
    /// `lb.health.fall` (default 2): failed checks in a row that take a node out.
    pub health_fall: u32,
    /// `lb.health.rise` (default 2): passed checks in a row that bring it back.
    pub health_rise: u32,
    /// `lb.drain.grace` (default 30 s): in-flight requests get this long at shutdown.
    pub drain_grace: Duration,
    /// `lb.sticky` (default true): a request carrying a session cookie goes to the node its route
    /// names while that node is healthy. With replicated sessions it may be turned off: every
    /// request then goes to the least-loaded node.
    pub sticky: bool,
    /// `lb.admin.address`:`lb.admin.port` (default 127.0.0.1:7980).
    pub admin: SocketAddr,
    /// `lb.threads` (default: twice the number of CPUs).
    pub threads: usize,
    /// `logging.format` is `json`.
    pub log_json: bool,
    /// Following a farm by gossip (`lb.farm.*`).
    pub farm: Option<LbFarm>,
}

/// `lb.farm.*`: follow the farm by gossip; members are verified against the farm CA.
#[derive(Clone)]
pub struct LbFarm {
    /// `lb.farm.seeds`: gossip `host:port` of members.
    pub seeds: Vec<String>,
    /// `lb.farm.secret`.
    pub secret: String,
    /// `lb.farm.gossip.address`:`lb.farm.gossip.port` (port default 7901).
    pub gossip_addr: SocketAddr,
}

impl std::fmt::Debug for LbFarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbFarm")
            .field("seeds", &self.seeds)
            .field("gossip_addr", &self.gossip_addr)
            .field("secret", &"***")
            .finish()
    }
}

impl LbConfig {
    /// Reads and validates `<home>/mirrorfarm-lb.properties`.
    pub fn load(home: &Path) -> Result<Self, ConfigError> {
        Self::load_file(&home.join(FILE_NAME), home)
    }

    /// Reads and validates an LB configuration file anywhere; relative certificate paths are
    /// taken from `home`.
    pub fn load_file(file: &Path, home: &Path) -> Result<Self, ConfigError> {
        let text = read_file(file)?;
        let fc: FileConfig = read_known_keys(file, &text, "the load balancer")?;
        Self::from_file(fc, file, home)
    }

    fn from_file(fc: FileConfig, file: &Path, home: &Path) -> Result<Self, ConfigError> {
        let v = Validator { file };
        let any = IpAddr::from([0, 0, 0, 0]);
        let h = v.required(&fc.hostname, "lb.hostname")?;
        let hostname = h.value.to_ascii_lowercase();
        let host_ok = !hostname.is_empty()
            && hostname.len() <= 253
            && hostname.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !host_ok {
            return Err(v.at(
                h,
                "lb.hostname",
                "must be a DNS host name such as git.example.com",
            ));
        }
        let https = v.addr(
            &fc.https_address,
            "lb.https.address",
            any,
            &fc.https_port,
            "lb.https.port",
            443,
        )?;
        let http_redirect = match &fc.http_port {
            None => None,
            Some(_) => Some(SocketAddr::new(
                https.ip(),
                v.port(&fc.http_port, "lb.http.port", 80)?,
            )),
        };
        let ssh = v.addr(
            &fc.ssh_address,
            "lb.ssh.address",
            any,
            &fc.ssh_port,
            "lb.ssh.port",
            7999,
        )?;
        let ssh_proxy_protocol =
            v.boolean(&fc.ssh_proxy_protocol, "lb.ssh.proxyProtocol", false)?;
        let ssh_max_connections = v.number(
            &fc.ssh_max_connections,
            "lb.ssh.maxConnections",
            1..=100_000,
            1000,
        )? as usize;
        let cert = match (&fc.tls_certificate, &fc.tls_key) {
            (None, None) => CertSource::SelfSigned,
            (Some(c), Some(k)) => {
                let resolve = |l: &Located| {
                    let p = PathBuf::from(&l.value);
                    if p.is_absolute() {
                        p
                    } else {
                        home.join(p)
                    }
                };
                let (cert, key) = (resolve(c), resolve(k));
                crate::tls::check_pem_files(&cert, &key, &hostname).map_err(|e| match e {
                    crate::tls::PemError::Cert(m) => v.at(c, "lb.tls.certificate", &m),
                    crate::tls::PemError::Key(m) => v.at(k, "lb.tls.key", &m),
                })?;
                CertSource::Files { cert, key }
            }
            (Some(c), None) => {
                return Err(v.at(c, "lb.tls.certificate", "lb.tls.key must be set too"))
            }
            (None, Some(k)) => {
                return Err(v.at(k, "lb.tls.key", "lb.tls.certificate must be set too"))
            }
        };
        let farm = lb_farm(&fc, &v)?;
        let mut backends = Vec::new();
        if let Some(b) = &fc.backends {
            for item in b.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                backends.push(
                    parse_backend(item)
                        .map_err(|m| v.at(b, "lb.backends", &format!("{item:?}: {m}")))?,
                );
            }
        }
        if backends.is_empty() && farm.is_none() {
            return Err(match &fc.backends {
                Some(b) => v.at(
                    b,
                    "lb.backends",
                    "list at least one node as host:httpPort:sshPort",
                ),
                None => v.missing(
                    "lb.backends",
                    "required (or follow a farm with lb.farm.seeds and lb.farm.secret)",
                ),
            });
        }
        let health_interval = Duration::from_millis(v.number(
            &fc.health_interval,
            "lb.health.interval",
            100..=60_000,
            1000,
        )?);
        let health_timeout = Duration::from_millis(v.number(
            &fc.health_timeout,
            "lb.health.timeout",
            100..=60_000,
            2000,
        )?);
        let health_fall = v.number(&fc.health_fall, "lb.health.fall", 1..=100, 2)? as u32;
        let health_rise = v.number(&fc.health_rise, "lb.health.rise", 1..=100, 2)? as u32;
        let sticky = v.boolean(&fc.sticky, "lb.sticky", true)?;
        let drain_grace =
            Duration::from_secs(v.number(&fc.drain_grace, "lb.drain.grace", 0..=3600, 30)?);
        let admin = v.addr(
            &fc.admin_address,
            "lb.admin.address",
            IpAddr::from([127, 0, 0, 1]),
            &fc.admin_port,
            "lb.admin.port",
            7980,
        )?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        // Two single-threaded workers per CPU: SO_REUSEPORT spreads connections by a hash, not by
        // load, and more workers even out what one unlucky worker gets (measured on 2 CPUs: 2 → 4
        // workers +6 % requests/s; 8 was worse).
        let threads = v.number(&fc.threads, "lb.threads", 1..=256, 2 * cpus as u64)? as usize;
        let log_json = match &fc.log_format {
            None => false,
            Some(l) => match l.value.as_str() {
                "text" => false,
                "json" => true,
                _ => return Err(v.at(l, "logging.format", "must be `text` or `json`")),
            },
        };
        let ports = [
            ("lb.https.port", Some(https)),
            ("lb.http.port", http_redirect),
            ("lb.ssh.port", Some(ssh)),
            ("lb.admin.port", Some(admin)),
        ];
        for (i, (ka, a)) in ports.iter().enumerate() {
            for (kb, b) in &ports[i + 1..] {
                if let (Some(a), Some(b)) = (a, b) {
                    if a.port() != 0
                        && a.port() == b.port()
                        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
                    {
                        return Err(v.missing(kb, &format!("same port as {ka}")));
                    }
                }
            }
        }
        Ok(Self {
            home: home.to_owned(),
            hostname,
            https,
            http_redirect,
            ssh,
            ssh_proxy_protocol,
            ssh_max_connections,
            cert,
            backends,
            health_interval,
            health_timeout,
            health_fall,
            health_rise,
            drain_grace,
            sticky,
            admin,
            threads,
            log_json,
            farm,
        })
    }
}

fn lb_farm(fc: &FileConfig, v: &Validator<'_>) -> Result<Option<LbFarm>, ConfigError> {
    let (seeds, secret) = match (&fc.farm_seeds, &fc.farm_secret) {
        (None, None) => {
            for (l, key) in [
                (&fc.farm_gossip_address, "lb.farm.gossip.address"),
                (&fc.farm_gossip_port, "lb.farm.gossip.port"),
            ] {
                if let Some(l) = l {
                    return Err(v.at(l, key, "needs lb.farm.seeds and lb.farm.secret"));
                }
            }
            return Ok(None);
        }
        (Some(s), Some(k)) => (s, k),
        (Some(s), None) => return Err(v.at(s, "lb.farm.seeds", "needs lb.farm.secret too")),
        (None, Some(k)) => {
            return Err(v.missing(
                "lb.farm.seeds",
                &format!("needed with lb.farm.secret (line {})", k.line),
            ))
        }
    };
    let secret = v.farm_secret(secret, "lb.farm.secret")?;
    let seeds_list = v.seeds(seeds, "lb.farm.seeds")?;
    if seeds_list.is_empty() {
        return Err(v.at(
            seeds,
            "lb.farm.seeds",
            "expected host:port of farm members, comma separated",
        ));
    }
    let gossip_addr = match &fc.farm_gossip_address {
        Some(_) => v.gossip_addr(
            &fc.farm_gossip_address,
            "lb.farm.gossip.address",
            &fc.farm_gossip_port,
            "lb.farm.gossip.port",
            7901,
        )?,
        None => {
            // The address this host reaches the seeds from is the one they reach it at.
            let port = v.port(&fc.farm_gossip_port, "lb.farm.gossip.port", 7901)?;
            let ip = mirrorfarm_common::config::local_ip_toward(&seeds_list).map_err(|why| {
                v.missing(
                    "lb.farm.gossip.address",
                    &format!("this host's address could not be learned from lb.farm.seeds ({why}): set it"),
                )
            })?;
            SocketAddr::new(ip, port)
        }
    };
    Ok(Some(LbFarm {
        seeds: seeds_list,
        secret,
        gossip_addr,
    }))
}

fn parse_backend(item: &str) -> Result<BackendAddr, String> {
    let (host, ports) = if let Some(rest) = item.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or("expected [ipv6]:httpPort:sshPort")?;
        (h, p)
    } else {
        item.split_once(':')
            .ok_or("expected host:httpPort:sshPort")?
    };
    let (hp, sp) = ports
        .split_once(':')
        .ok_or("expected host:httpPort:sshPort")?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port {p:?}"))
    };
    let (hp, sp) = (port(hp)?, port(sp)?);
    let ip = (host, hp)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?
        .ip();
    Ok(BackendAddr {
        label: item.to_owned(),
        http: SocketAddr::new(ip, hp),
        ssh: SocketAddr::new(ip, sp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<LbConfig, ConfigError> {
        let f = Path::new("/lb/mirrorfarm-lb.properties");
        let fc: FileConfig = read_known_keys(f, text, "the load balancer")?;
        LbConfig::from_file(fc, f, Path::new("/lb"))
    }

    #[test]
    fn defaults_and_errors() {
        let c =
            load("lb.hostname=Git.Example.com\nlb.backends=127.0.0.1:7990:7999, [::1]:7991:7998\n")
                .expect("ok");
        assert_eq!(c.hostname, "git.example.com");
        assert_eq!(c.https.port(), 443);
        assert_eq!(c.ssh.port(), 7999);
        assert_eq!(c.admin.to_string(), "127.0.0.1:7980");
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.cert, CertSource::SelfSigned);
        let e = load("lb.hostname=x\nlb.backend=127.0.0.1:1:2\n")
            .expect_err("typo")
            .to_string();
        assert!(e.contains(":2: lb.backend: unknown key"), "{e}");
        let e = load("lb.hostname=x\nlb.backends=127.0.0.1:1\n")
            .expect_err("bad")
            .to_string();
        assert!(e.contains(":2: lb.backends:"), "{e}");
        let e = load("lb.hostname=x\nlb.backends=127.0.0.1:1:2\nlb.tls.certificate=/nope.pem\nlb.tls.key=/nope.key\n").expect_err("cert").to_string();
        assert!(e.contains(":3: lb.tls.certificate:"), "{e}");
        let e = load("lb.hostname=bad_host\nlb.backends=127.0.0.1:1:2\n")
            .expect_err("host")
            .to_string();
        assert!(e.contains(":1: lb.hostname:"), "{e}");
    }
}
