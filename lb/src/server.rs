//! Starting the LB: certificate, Pingora server and its services (HTTPS proxy, SSH passthrough,
//! health checks, admin and redirect listeners, certificate reload, drain watcher).

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::Listeners;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::{AdminApp, RedirectApp};
use crate::backends::Backends;
use crate::background::{CertReloader, DrainWatcher};
use crate::config::{CertSource, LbConfig};
use crate::fast_front::FastFront;
use crate::health::HealthChecker;
use crate::http_proxy::FarmProxy;
use crate::metrics::LbMetrics;
use crate::ssh_proxy::SshPassthrough;
use crate::tls::{self, ReloadingCert};

/// Why the LB could not start.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The self-signed certificate could not be made.
    #[error("cannot create the self-signed certificate in {path}: {source}")]
    SelfSigned {
        /// Its directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The certificate files do not load.
    #[error(transparent)]
    Pem(#[from] tls::PemError),
    /// The farm could not be followed (wrong secret, no member reachable).
    #[error("farm: {0}")]
    Farm(#[from] crate::discovery::DiscoveryError),
    /// A listener address is taken or not allowed.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Which listener.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
}

impl LbError {
    /// Process exit code (sysexits).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Pem(_) => 64,
            Self::Farm(_) => 69,
            Self::Bind { .. } => 71,
            Self::SelfSigned { .. } => 73,
        }
    }
}

/// Pingora exits the process when a listener cannot be bound: check them first.
fn check_bindable(config: &LbConfig) -> Result<(), LbError> {
    let mut all = vec![
        (config.https, "HTTPS"),
        (config.ssh, "SSH"),
        (config.admin, "admin"),
    ];
    if let Some(a) = config.http_redirect {
        all.push((a, "HTTP redirect"));
    }
    for (addr, what) in all {
        std::net::TcpListener::bind(addr).map_err(|source| LbError::Bind { addr, what, source })?;
    }
    Ok(())
}

/// Write buffer of client connections: a typical ref advertisement and its header in one send.
const HTTPS_WRITE_BUFFER: usize = 16 * 1024;

/// HTTP/2 settings of client connections: pingora's bounds on headers and streams (100), and
/// receive windows large enough that a fetch's request (its wants and haves, megabytes for a large
/// repository) is not held back by a window update every 64 KiB. The connection window bounds
/// what a client may send ahead on all its streams together: 4 MiB.
fn h2_options() -> pingora::protocols::http::v2::server::H2Options {
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20);
    h2
}

/// The listen address of one worker's listener: `addr` with the port written with `worker`
/// leading zeros. pingora keeps its listening sockets in a table keyed by the address text and
/// hands an existing socket to a second listener of the same text — two owners of one file
/// descriptor, closed twice at shutdown. Distinct texts give each worker its own SO_REUSEPORT
/// socket on the same address.
fn worker_address(addr: std::net::SocketAddr, worker: usize) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("{ip}:{}{}", "0".repeat(worker), addr.port())
}

/// Runs the LB until SIGTERM (graceful: drain up to `lb.drain.grace`) or SIGINT (at once).
pub fn run(config: LbConfig) -> Result<(), LbError> {
    let (cert_path, key_path) =
        match &config.cert {
            CertSource::Files { cert, key } => (cert.clone(), key.clone()),
            CertSource::SelfSigned => tls::ensure_self_signed(&config.home, &config.hostname)
                .map_err(|source| LbError::SelfSigned {
                    path: config.home.join("tls").display().to_string(),
                    source,
                })?,
        };
    let cert = Arc::new(ReloadingCert::new(&cert_path, &key_path, &config.hostname)?);
    tracing::info!(
        certificate = %cert_path.display(),
        sha256 = %cert.fingerprint(),
        self_signed = matches!(config.cert, CertSource::SelfSigned),
        "TLS certificate"
    );
    check_bindable(&config)?;
    // Following a farm: prove the secret before anything is served, and get the farm CA.
    let farm = match &config.farm {
        None => None,
        Some(f) => {
            let mut id = [0u8; 8];
            getrandom::getrandom(&mut id).expect("the OS random source is available");
            let lb_id = format!(
                "lb-{}",
                id.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            let welcome = crate::discovery::join(f, &lb_id)?;
            tracing::info!(farm_id = welcome.farm_id, seeds = ?f.seeds, "following the farm");
            Some((f.clone(), welcome, lb_id))
        }
    };

    let conf = ServerConf {
        threads: config.threads,
        work_stealing: false,
        grace_period_seconds: Some(config.drain_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: config.home.join("lb.pid").display().to_string(),
        upgrade_sock: config.home.join("lb-upgrade.sock").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let backends = Arc::new(Backends::new(&config.backends));
    let metrics = Arc::new(LbMetrics::default());

    // Thread per core: one single-threaded service per worker on the same address
    // (SO_REUSEPORT; the kernel spreads connections), so a connection's socket, its task and
    // its upstream connections stay on one thread — with one accept loop for all threads, every
    // read on a connection served by another thread cost a cross-thread wake-up.
    let mut reuse = TcpSocketOptions::default();
    reuse.so_reuseport = Some(true);
    for worker in 0..config.threads {
        let (https_addr, ssh_addr) = (
            worker_address(config.https, worker),
            worker_address(config.ssh, worker),
        );
        let farm = FarmProxy {
            backends: backends.clone(),
            hostname: config.hostname.clone(),
            metrics: metrics.clone(),
            pool: Default::default(),
            sticky: config.sticky,
        };
        let mut proxy = http_proxy(&server.configuration, farm.clone());
        proxy.h2_options = Some(h2_options());
        let front = FastFront {
            proxy: Arc::new(proxy),
            farm,
        };
        let mut proxy = Service::new(format!("https {worker}"), front);
        proxy.threads = Some(1);
        let counter = HandshakeCounter {
            metrics: metrics.clone(),
        };
        let mut tls_settings =
            TlsSettings::with_callbacks(Box::new(counter)).expect("TLS settings without files");
        tls_settings.set_cert_resolver(cert.clone());
        tls_settings.enable_h2();
        // A response's header and body are written as separate TLS records; a write buffer that
        // holds both sends them in one syscall (pingora's default, 1460 bytes, flushed the header
        // on its own before every larger body: three loopback sends per request instead of two).
        proxy.add_listener(
            ListenerConfig::tcp(https_addr)
                .tcp_socket_options(reuse.clone())
                .tls(tls_settings)
                .l4_buffer(L4BufferSettings::default().write(HTTPS_WRITE_BUFFER)),
        );
        server.add_service(proxy);

        let mut listeners = Listeners::new();
        listeners.add_tcp_with_settings(&ssh_addr, reuse.clone());
        let mut ssh = Service::with_listeners(
            format!("ssh passthrough {worker}"),
            listeners,
            SshPassthrough {
                backends: backends.clone(),
                proxy_protocol: config.ssh_proxy_protocol,
                metrics: metrics.clone(),
                slots: Arc::new(tokio::sync::Semaphore::new(config.ssh_max_connections)),
            },
        );
        ssh.threads = Some(1);
        server.add_service(ssh);
    }

    let admin = Service::with_listeners(
        "admin".into(),
        Listeners::tcp(&config.admin.to_string()),
        AdminApp {
            backends: backends.clone(),
            cert: cert.clone(),
            hostname: config.hostname.clone(),
            metrics,
        },
    );
    server.add_service(admin);

    if let Some(addr) = config.http_redirect {
        let https_base = match config.https.port() {
            443 => format!("https://{}", config.hostname),
            p => format!("https://{}:{p}", config.hostname),
        };
        let redirect = Service::with_listeners(
            "http redirect".into(),
            Listeners::tcp(&addr.to_string()),
            RedirectApp { https_base },
        );
        server.add_service(redirect);
    }

    server.add_service(background_service(
        "health checks",
        HealthChecker {
            backends: backends.clone(),
            interval: config.health_interval,
            timeout: config.health_timeout,
            fall: config.health_fall,
            rise: config.health_rise,
            hostname: config.hostname.clone(),
        },
    ));
    server.add_service(background_service(
        "certificate reload",
        CertReloader { cert: cert.clone() },
    ));
    if let Some((farm, welcome, lb_id)) = farm {
        server.add_service(background_service(
            "farm discovery",
            crate::discovery::Discovery {
                backends: backends.clone(),
                farm,
                welcome,
                lb_id,
                report: crate::discovery::ReportSource {
                    hostname: config.hostname.clone(),
                    https_port: config.https.port(),
                    cert: cert.clone(),
                },
            },
        ));
    }
    server.add_service(background_service(
        "drain",
        DrainWatcher {
            backends,
            grace: config.drain_grace,
        },
    ));
    tracing::info!(
        hostname = %config.hostname,
        https = %config.https,
        ssh = %config.ssh,
        admin = %config.admin,
        backends = config.backends.len(),
        "load balancer starting"
    );
    server.run(RunArgs::default());
    Ok(())
}

/// Counts completed TLS handshakes (Pingora's TLS callbacks).
struct HandshakeCounter {
    metrics: Arc<LbMetrics>,
}

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for HandshakeCounter {
    async fn handshake_complete_callback(
        &self,
        _tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.metrics.tls_handshake();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_addresses_differ_in_text_only() {
        for a in ["127.0.0.1:8443", "[::1]:7999", "0.0.0.0:443"] {
            let addr: std::net::SocketAddr = a.parse().expect("address");
            let texts: Vec<String> = (0..4).map(|w| worker_address(addr, w)).collect();
            assert_eq!(texts[0], a);
            for t in &texts {
                assert_eq!(t.parse::<std::net::SocketAddr>().ok(), Some(addr), "{t}");
            }
            let distinct: std::collections::BTreeSet<&String> = texts.iter().collect();
            assert_eq!(distinct.len(), 4);
        }
    }
}
