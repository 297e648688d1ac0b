//! Following a farm: the LB proves the farm secret to a member (getting the farm CA certificate),
//! gossips as a passive `role=lb` participant, and for each live member asks it, over TLS verified
//! against the farm CA and the member's node ID, where it serves. Only members that pass that check
//! become backends; members that leave gossip (dead) are removed. Gossip alone never routes traffic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chitchat::spawn_chitchat;
use chitchat::transport::UdpTransport;
use mirrorfarm_common::farm_join::{self, JoinError};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::backends::Backends;
use crate::config::{BackendAddr, LbFarm};

/// How long the LB keeps trying its seeds at start.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);

/// Proves the secret to a seed and returns the farm ID and CA certificate (PEM).
pub fn join(farm: &LbFarm, lb_id: &str) -> Result<(String, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < JOIN_PATIENCE {
            for seed in &farm.seeds {
                match farm_join::join_as_lb(seed, &farm.secret, lb_id).await {
                    Ok(x) => return Ok(x),
                    Err(JoinError::Refused(why)) => return Err(why),
                    Err(JoinError::Unreachable(why)) => last = why,
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(format!(
            "no farm member answered within {JOIN_PATIENCE:?}: {last}"
        ))
    })
}

/// The background service that keeps the backends in step with the farm.
pub struct Discovery {
    /// The backends it manages (besides any static ones).
    pub backends: Arc<Backends>,
    /// `lb.farm.*`.
    pub farm: LbFarm,
    /// The farm CA certificate (PEM).
    pub ca_pem: String,
    /// This LB's gossip identity.
    pub lb_id: String,
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
        // Members verified so far: node ID → backend label.
        let mut verified: HashMap<String, String> = HashMap::new();
        let mut warned: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
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
            for (node_id, gossip) in &live {
                if verified.contains_key(node_id) {
                    continue;
                }
                match farm_join::describe(*gossip, &self.ca_pem, node_id).await {
                    Ok(d) => {
                        let label = format!("{}@{}", &node_id[..node_id.len().min(8)], d.http);
                        let addr = BackendAddr {
                            label: label.clone(),
                            http: d.http,
                            ssh: d.ssh,
                        };
                        if self.backends.add(&addr) {
                            tracing::info!(node = %node_id, http = %d.http, ssh = %d.ssh, "farm member verified; added as backend");
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
            let alive: HashSet<&String> = live.iter().map(|(n, _)| n).collect();
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
