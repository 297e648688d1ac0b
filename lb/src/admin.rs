//! Small HTTP apps of the LB: the admin listener's JSON status (127.0.0.1 by default), and the
//! optional plain-HTTP listener that only redirects to HTTPS.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::backends::Backends;
use crate::tls::ReloadingCert;

/// `GET /status` on the admin listener.
pub struct AdminApp {
    /// The nodes.
    pub backends: Arc<Backends>,
    /// The certificate served.
    pub cert: Arc<ReloadingCert>,
    /// `lb.hostname`.
    pub hostname: String,
    /// Metrics.
    pub metrics: Arc<crate::metrics::LbMetrics>,
}

fn response(
    code: u16,
    content_type: &str,
    body: Vec<u8>,
    location: Option<&str>,
) -> Response<Vec<u8>> {
    let mut b = Response::builder()
        .status(code)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store");
    if let Some(l) = location {
        b = b.header("Location", l);
    }
    b.body(body).unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/status" => {}
            "/metrics" => {
                let left = self.cert.facts().expires_in(std::time::SystemTime::now());
                self.metrics.certificate_expires_in(left);
                let body = self.metrics.render(&self.backends).into_bytes();
                return response(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                    None,
                );
            }
            _ => return response(404, "text/plain", b"not found\n".to_vec(), None),
        }
        let backends: Vec<_> = self
            .backends
            .all()
            .iter()
            .map(|b| {
                let info = b.info();
                json!({
                    "backend": b.addr.label,
                    "http": b.addr.http.to_string(),
                    "ssh": b.addr.ssh.to_string(),
                    "healthy": b.healthy(),
                    "route": b.route(),
                    "nodeId": info.node_id,
                    "state": info.state,
                    "ready": info.ready,
                    "lastError": info.error,
                    "activeRequests": b.active_http.load(Ordering::Acquire),
                    "activeSsh": b.active_ssh.load(Ordering::Acquire),
                    "requests": b.served_http.load(Ordering::Relaxed),
                })
            })
            .collect();
        let (cert, _) = self.cert.paths();
        let doc = json!({
            "hostname": self.hostname,
            "version": mirrorfarm_common::version::version(),
            "certificate": { "path": cert.display().to_string(), "sha256": self.cert.fingerprint() },
            "healthyBackends": self.backends.all().iter().filter(|b| b.healthy()).count(),
            "backends": backends,
        });
        let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        response(200, "application/json", body, None)
    }
}

/// Plain HTTP: every request is redirected to the same path over HTTPS.
pub struct RedirectApp {
    /// `https://host[:port]` to redirect to.
    pub https_base: String,
}

#[async_trait]
impl ServeHttp for RedirectApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session
            .req_header()
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let location = format!("{}{path}", self.https_base);
        response(
            301,
            "text/plain",
            format!("moved to {location}\n").into_bytes(),
            Some(&location),
        )
    }
}
