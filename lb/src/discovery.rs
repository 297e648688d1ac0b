//! Following a farm: the LB proves the farm secret to a member (getting the farm CA certificate and
//! a client certificate of its own), gossips as a passive `role=lb` participant, and for each live
//! member asks it over the farm channel (mutual TLS: its certificate presented, the member's
//! verified against the farm CA and its node ID) where it serves. Only members that pass that
//! check become backends; members that leave gossip (dead) are removed. Gossip alone never routes
//! traffic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chitchat::spawn_chitchat;
use chitchat::transport::UdpTransport;
use mirrorfarm_common::farm::client::{self, FarmClient};
use mirrorfarm_common::farm::messages::{LbBackend, LbCertificate, LbReport, LbWelcome};
use mirrorfarm_common::farm::FarmError;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::backends::Backends;
use crate::config::{BackendAddr, LbFarm};

/// How long the LB keeps trying its seeds at start.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);

/// Why the LB could not follow its farm.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A member refused it (wrong secret) or could not prove the secret itself.
    #[error(transparent)]
    Refused(FarmError),
    /// No seed answered in time.
    #[error("no farm member answered within {secs} s: {last}")]
    NoSeed {
        /// How long it tried.
        secs: u64,
        /// The last seed's error.
        last: String,
    },
    /// The runtime for joining could not be made.
    #[error("cannot start the join: {0}")]
    Runtime(std::io::Error),
}

/// Proves the secret to a seed; returns the farm ID, CA certificate and this LB's certificate.
pub fn join(farm: &LbFarm, lb_id: &str) -> Result<LbWelcome, DiscoveryError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DiscoveryError::Runtime)?;
    rt.block_on(async {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < JOIN_PATIENCE {
            for seed in &farm.seeds {
                match client::join_lb(seed, &farm.secret, lb_id).await {
                    Ok(x) => return Ok(x),
                    Err(e) if e.is_refusal() => return Err(DiscoveryError::Refused(e)),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(DiscoveryError::NoSeed {
            secs: JOIN_PATIENCE.as_secs(),
            last,
        })
    })
}

/// The background service that keeps the backends in step with the farm.
pub struct Discovery {
    /// The backends it manages (besides any static ones).
    pub backends: Arc<Backends>,
    /// `lb.farm.*`.
    pub farm: LbFarm,
    /// What joining gave: the farm CA certificate and this LB's client certificate.
    pub welcome: LbWelcome,
    /// This LB's gossip identity.
    pub lb_id: String,
    /// What it reports of itself to the members.
    pub report: ReportSource,
}

/// How often the LB reports itself to every member.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What goes into the LB's report to the farm.
pub struct ReportSource {
    /// `lb.hostname`.
    pub hostname: String,
    /// The HTTPS port.
    pub https_port: u16,
    /// The certificate served.
    pub cert: Arc<crate::tls::ReloadingCert>,
}

impl ReportSource {
    /// The report, with the backends as they are now.
    fn report(&self, backends: &Backends) -> LbReport {
        let facts = self.cert.facts();
        LbReport {
            hostname: self.hostname.clone(),
            https_port: self.https_port,
            certificate: LbCertificate {
                subject: facts.subject,
                not_after: facts.not_after,
                sha256: self.cert.fingerprint(),
            },
            backends: backends
                .all()
                .iter()
                .map(|b| {
                    let info = b.info();
                    LbBackend {
                        label: b.addr.label.clone(),
                        node_id: info.node_id,
                        healthy: b.healthy(),
                        state: info.state,
                        error: info.error,
                        base_url: info.base_url,
                    }
                })
                .collect(),
            version: mirrorfarm_common::version::version(),
        }
    }
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use mirrorfarm_common::gossip::{chitchat_config, ROLE, ROLE_LB};
        let config = chitchat_config(&self.lb_id, self.farm.gossip_addr, &self.farm.seeds);
        let handle = match spawn_chitchat(
            config,
            vec![(ROLE.into(), ROLE_LB.into())],
            &UdpTransport,
        )
        .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot start farm gossip; only static backends are used");
                return;
            }
        };
        let chitchat = handle.chitchat();
        let w = &self.welcome;
        let client = match FarmClient::new(&w.ca_cert, &w.client_cert, &w.client_key) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot use the farm certificate; only static backends are used");
                return;
            }
        };
        // Members verified so far: node ID → backend label.
        let mut verified: HashMap<String, String> = HashMap::new();
        let mut warned: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut reported: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
            }
            let live: Vec<(String, std::net::SocketAddr)> = {
                let c = chitchat.lock().await;
                c.live_nodes()
                    .filter(|id| *id.node_id != *self.lb_id)
                    .filter(|id| c.node_state(id).and_then(|s| s.get(ROLE)) != Some(ROLE_LB))
                    .map(|id| (id.node_id.to_string(), id.gossip_advertise_addr))
                    .collect()
            };
            // Unverified peers are checked a few at a time (each check bounded in time), at most
            // 64 a round, so a burst of forged gossip neither holds up real members one check
            // after another nor makes the LB open a connection to every address it names at once.
            let pending: Vec<&(String, std::net::SocketAddr)> = live
                .iter()
                .filter(|(n, _)| !verified.contains_key(n))
                .take(64)
                .collect();
            let results: Vec<_> = {
                use futures_util::StreamExt;
                let owned: Vec<(FarmClient, String, std::net::SocketAddr)> = pending
                    .iter()
                    .map(|(n, g)| (client.clone(), n.clone(), *g))
                    .collect();
                futures_util::stream::iter(
                    owned
                        .into_iter()
                        .map(|(c, n, g)| async move { c.describe(&n, g).await }),
                )
                .buffered(8)
                .collect()
                .await
            };
            for ((node_id, gossip), res) in pending.into_iter().zip(results) {
                match res {
                    Ok(d) => {
                        let short: String = node_id.chars().take(8).collect();
                        let label = format!("{short}@{}", d.http);
                        let addr = BackendAddr {
                            label: label.clone(),
                            http: d.http,
                            ssh: d.ssh,
                        };
                        if self.backends.add(&addr) {
                            tracing::info!(node = %node_id, http = %d.http, ssh = %d.ssh, "farm member verified; added as backend");
                            // A new member hears of this LB now, not at the next report.
                            reported = None;
                        }
                        verified.insert(node_id.clone(), label);
                        warned.remove(node_id);
                    }
                    Err(e) => {
                        if warned.insert(node_id.clone()) {
                            tracing::warn!(node = %node_id, gossip = %gossip, error = %e, "gossip names a member that does not verify; not routed to");
                        }
                    }
                }
            }
            if reported.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                reported = Some(Instant::now());
                let report = self.report.report(&self.backends);
                for (node_id, gossip) in live.iter().filter(|(n, _)| verified.contains_key(n)) {
                    let (c, n, g, r) = (client.clone(), node_id.clone(), *gossip, report.clone());
                    tokio::spawn(async move {
                        if let Err(e) = c.lb_report(&n, g, &r).await {
                            tracing::debug!(node = %n, error = %e, "cannot report to a member");
                        }
                    });
                }
            }
            let alive: HashSet<&String> = live.iter().map(|(n, _)| n).collect();
            // Only peers still in gossip are remembered as warned about.
            warned.retain(|n| alive.contains(n));
            let gone: Vec<String> = verified
                .keys()
                .filter(|n| !alive.contains(n))
                .cloned()
                .collect();
            for n in gone {
                if let Some(label) = verified.remove(&n) {
                    self.backends.retain(|l| l != label);
                    tracing::info!(node = %n, "farm member gone; removed from the backends");
                }
            }
        }
        if let Err(e) = handle.shutdown().await {
            tracing::warn!(error = %e, "farm gossip did not stop cleanly");
        }
    }
}
