//! The LB's Prometheus metrics (admin listener `GET /metrics`, names prefixed `mirrorfarm_lb_`):
//! requests by backend and status, TLS handshakes, SSH connections, backend health and load.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::backends::Backends;

/// `backend` and `status` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `host:httpPort:sshPort`, or `none` when no node was chosen.
    pub backend: String,
    /// HTTP status sent to the client (0 when none was).
    pub status: String,
}

/// `backend` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    /// `host:httpPort:sshPort`.
    pub backend: String,
}

/// Every metric of the LB.
pub struct LbMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    tls_handshakes: Counter,
    ssh_connections: Family<BackendLabel, Counter>,
    healthy: Family<BackendLabel, Gauge>,
    active_requests: Family<BackendLabel, Gauge>,
    active_ssh: Family<BackendLabel, Gauge>,
    certificate_expiry: Gauge,
    /// The request counters already looked up, by status and backend (no allocation per request).
    request_counters: parking_lot::Mutex<HashMap<u16, HashMap<String, Counter>>>,
}

impl Default for LbMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mirrorfarm_lb");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests, by backend and status",
            requests.clone(),
        );
        let tls_handshakes = Counter::default();
        registry.register(
            "tls_handshakes",
            "Completed TLS handshakes",
            tls_handshakes.clone(),
        );
        let ssh_connections = Family::<BackendLabel, Counter>::default();
        registry.register(
            "ssh_connections",
            "SSH connections passed through, by backend",
            ssh_connections.clone(),
        );
        let healthy = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "backend_healthy",
            "1 while a backend is in rotation",
            healthy.clone(),
        );
        let active_requests = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "backend_active_requests",
            "HTTP requests in flight, by backend",
            active_requests.clone(),
        );
        let active_ssh = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "backend_active_ssh",
            "SSH connections open, by backend",
            active_ssh.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until the served TLS certificate expires (the LB warns under 30 days)",
            certificate_expiry.clone(),
        );
        Self {
            certificate_expiry,
            registry,
            requests,
            tls_handshakes,
            ssh_connections,
            healthy,
            active_requests,
            active_ssh,
            request_counters: Default::default(),
        }
    }
}

impl LbMetrics {
    /// Counts a finished HTTP request.
    pub fn request(&self, backend: &str, status: u16) {
        let backend = if backend.is_empty() { "none" } else { backend };
        let mut cache = self.request_counters.lock();
        let by_backend = cache.entry(status).or_default();
        if let Some(c) = by_backend.get(backend) {
            c.inc();
            return;
        }
        let c = self
            .requests
            .get_or_create(&RequestLabels {
                backend: backend.into(),
                status: status.to_string(),
            })
            .clone();
        c.inc();
        by_backend.insert(backend.to_owned(), c);
    }

    /// Sets the seconds until the served certificate expires.
    pub fn certificate_expires_in(&self, secs: i64) {
        self.certificate_expiry.set(secs);
    }

    /// Counts a TLS handshake.
    pub fn tls_handshake(&self) {
        self.tls_handshakes.inc();
    }

    /// Counts an SSH connection passed to `backend`.
    pub fn ssh_connection(&self, backend: &str) {
        self.ssh_connections
            .get_or_create(&BackendLabel {
                backend: backend.into(),
            })
            .inc();
    }

    /// Encodes every metric, refreshing the backend gauges.
    pub fn render(&self, backends: &Backends) -> String {
        for b in backends.all().iter() {
            let l = BackendLabel {
                backend: b.addr.label.clone(),
            };
            self.healthy.get_or_create(&l).set(i64::from(b.healthy()));
            self.active_requests
                .get_or_create(&l)
                .set(b.active_http.load(Ordering::Acquire) as i64);
            self.active_ssh
                .get_or_create(&l)
                .set(b.active_ssh.load(Ordering::Acquire) as i64);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
