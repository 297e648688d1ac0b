//! Background duties of the LB: certificate reload (SIGHUP, or the files changing), and ending
//! the process as soon as a graceful shutdown has drained every request and SSH connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::backends::Backends;
use crate::tls::ReloadingCert;

/// Reloads the certificate on SIGHUP and when its files change (checked every 2 s).
pub struct CertReloader {
    /// The resolver the TLS listener uses.
    pub cert: Arc<ReloadingCert>,
}

#[async_trait]
impl BackgroundService for CertReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; certificate changes are still picked up from the files");
                None
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let forced = tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => false,
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            match self.cert.reload(forced) {
                Ok(true) => {
                    tracing::info!(sha256 = %self.cert.fingerprint(), "TLS certificate reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; still serving the previous one")
                }
            }
        }
    }
}

/// After a graceful shutdown starts, exits the process once nothing is in flight (Pingora itself
/// would wait out the whole grace period).
pub struct DrainWatcher {
    /// The nodes (their in-flight counters).
    pub backends: Arc<Backends>,
    /// The most the drain may take.
    pub grace: Duration,
}

#[async_trait]
impl BackgroundService for DrainWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        tracing::info!(
            grace_s = self.grace.as_secs(),
            "draining in-flight requests"
        );
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            let busy: usize = self
                .backends
                .all()
                .iter()
                .map(|b| {
                    b.active_http.load(Ordering::Acquire) + b.active_ssh.load(Ordering::Acquire)
                })
                .sum();
            if busy == 0 {
                tracing::info!("drained; exiting");
                std::process::exit(0);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = busy,
                    "grace period over; exiting with requests in flight"
                );
                std::process::exit(0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
