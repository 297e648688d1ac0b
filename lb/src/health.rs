//! Health checks: each node's readiness document (`/rest/mirroring/latest/ready`, typed in
//! `mirrorfarm_common::status`: a few bytes however many repositories it mirrors) is fetched
//! every interval — `/status` from a node too old to have it (404); a node leaves rotation after `fall` failed checks in a row (or
//! when it is not `ready`), and comes back after `rise` passes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mirrorfarm_common::status::{ReadyDoc, StatusDoc};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::backends::{Backend, Backends, NodeInfo};
use mirrorfarm_common::url_host::url_host;

/// The checker (a Pingora background service).
pub struct HealthChecker {
    /// The nodes.
    pub backends: Arc<Backends>,
    /// Time between checks.
    pub interval: Duration,
    /// Time limit of one check.
    pub timeout: Duration,
    /// Failures in a row that take a node out.
    pub fall: u32,
    /// Passes in a row that bring it back.
    pub rise: u32,
    /// `lb.hostname`: a node whose `setup.baseUrl` names another host is warned about.
    pub hostname: String,
}

/// The largest `/status` document read.
const MAX_STATUS: usize = 4 * 1024 * 1024;

/// The client health checks use: plain HTTP to the nodes, never through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .user_agent("mirrorfarm-lb")
        .pool_idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// Fetches and reads one node's /status.
pub async fn check(http: &reqwest::Client, backend: &Backend, timeout: Duration) -> NodeInfo {
    match tokio::time::timeout(timeout, fetch_status(http, backend)).await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => NodeInfo {
            error: Some(e),
            ..backend.info()
        },
        Err(_) => NodeInfo {
            error: Some(format!("no answer within {timeout:?}")),
            ..backend.info()
        },
    }
}

async fn fetch_status(http: &reqwest::Client, backend: &Backend) -> Result<NodeInfo, String> {
    let url = format!("http://{}/rest/mirroring/latest/ready", backend.addr.http);
    let r = http.get(url).send().await.map_err(|e| e.to_string())?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return fetch_full_status(http, backend).await;
    }
    if r.status() != reqwest::StatusCode::OK {
        return Err(format!("ready answered {}", r.status()));
    }
    let doc: ReadyDoc = serde_json::from_slice(&read_bounded(r).await?)
        .map_err(|e| format!("bad readiness document: {e}"))?;
    Ok(info(doc))
}

fn info(doc: ReadyDoc) -> NodeInfo {
    NodeInfo {
        base_url: doc.base_url,
        node_id: doc.node_id,
        state: doc.state,
        ready: doc.ready,
        error: None,
    }
}

/// A node of a version without the readiness document: its `/status`.
async fn fetch_full_status(http: &reqwest::Client, backend: &Backend) -> Result<NodeInfo, String> {
    let url = format!("http://{}/status", backend.addr.http);
    let r = http.get(url).send().await.map_err(|e| e.to_string())?;
    if r.status() != reqwest::StatusCode::OK {
        return Err(format!("status answered {}", r.status()));
    }
    let doc: StatusDoc = serde_json::from_slice(&read_bounded(r).await?)
        .map_err(|e| format!("bad /status document: {e}"))?;
    Ok(info(ReadyDoc {
        node_id: doc.node_id,
        state: doc.state,
        ready: doc.ready,
        base_url: doc.base_url,
        ..ReadyDoc::default()
    }))
}

/// A node's answer, read within [`MAX_STATUS`]: it is not trusted to be small.
async fn read_bounded(mut r: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_STATUS {
            return Err(format!("answer larger than {MAX_STATUS} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Consecutive passes and failures per node, by HTTP address (nodes come and go).
        let mut counts: std::collections::HashMap<std::net::SocketAddr, (u32, u32)> =
            Default::default();
        let http = client();
        // Backends warned about for their base URL, with the URL warned about.
        let mut misnamed: std::collections::HashMap<std::net::SocketAddr, String> =
            Default::default();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let backends = self.backends.all();
            let checks = backends.iter().map(|b| check(&http, b, self.timeout));
            let results = futures_util::future::join_all(checks).await;
            counts.retain(|a, _| backends.iter().any(|b| b.addr.http == *a));
            for (b, info) in backends.iter().zip(results) {
                let (passes, fails) = counts.entry(b.addr.http).or_default();
                let ok = info.error.is_none() && info.ready;
                if ok {
                    *passes += 1;
                    *fails = 0;
                } else {
                    *fails += 1;
                    *passes = 0;
                }
                let why = info
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("state {}", info.state));
                if info.error.is_none() && !info.base_url.is_empty() {
                    let host = url_host(&info.base_url);
                    if host != self.hostname && misnamed.get(&b.addr.http) != Some(&info.base_url) {
                        tracing::warn!(backend = %b.addr.label, base_url = %info.base_url, hostname = %self.hostname, "a node's setup.baseUrl names another host than lb.hostname: it sends clients where this LB does not answer");
                        misnamed.insert(b.addr.http, info.base_url.clone());
                    } else if host == self.hostname {
                        misnamed.remove(&b.addr.http);
                    }
                }
                b.set_info(info);
                if ok && *passes >= self.rise && !b.healthy() {
                    b.set_healthy(true);
                    tracing::info!(backend = %b.addr.label, "node in rotation");
                } else if !ok && *fails >= self.fall && b.set_healthy(false) {
                    tracing::warn!(backend = %b.addr.label, reason = %why, "node out of rotation");
                }
            }
        }
    }
}
