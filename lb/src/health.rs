//! Health checks: each node's `/status` is fetched every interval; a node leaves rotation after
//! `fall` failed checks in a row (or when it is not `ready`), and comes back after `rise` passes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backends::{Backend, Backends, NodeInfo};

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
}

/// Fetches and reads one node's /status.
pub async fn check(backend: &Backend, timeout: Duration) -> NodeInfo {
    match tokio::time::timeout(timeout, fetch_status(backend)).await {
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

async fn fetch_status(backend: &Backend) -> Result<NodeInfo, String> {
    let mut s = TcpStream::connect(backend.addr.http)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!("GET /status HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: mirrorfarm-lb\r\n\r\n", backend.addr.http);
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.take(4 * 1024 * 1024)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "status answered {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("bad /status JSON: {e}"))?;
    Ok(NodeInfo {
        node_id: v["nodeId"].as_str().unwrap_or_default().to_owned(),
        state: v["state"].as_str().unwrap_or_default().to_owned(),
        ready: v["ready"].as_bool().unwrap_or(false),
        error: None,
    })
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Consecutive passes and failures per node, by HTTP address (nodes come and go).
        let mut counts: std::collections::HashMap<std::net::SocketAddr, (u32, u32)> =
            Default::default();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let backends = self.backends.all();
            let checks = backends.iter().map(|b| check(b, self.timeout));
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
