//! How the demo watches its own processes: the nodes' typed status document and the LB's admin
//! JSON, over the project's one HTTP client (reqwest's blocking client, no proxy).

use std::net::SocketAddr;
use std::time::Duration;

use mirrorfarm_common::status::StatusDoc;

/// A short-timeout client for local probes.
pub struct Client(Option<reqwest::blocking::Client>);

impl Client {
    /// A client with 2 s to connect and 5 s per request.
    pub fn new() -> Self {
        let c = reqwest::blocking::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build();
        if let Err(e) = &c {
            eprintln!("mirrorfarm demo: cannot make an HTTP client: {e}");
        }
        Self(c.ok())
    }

    fn get(&self, addr: SocketAddr, path: &str) -> Option<reqwest::blocking::Response> {
        let r = self
            .0
            .as_ref()?
            .get(format!("http://{addr}{path}"))
            .send()
            .ok()?;
        r.status().is_success().then_some(r)
    }

    /// A node's `/status`.
    pub fn status(&self, addr: SocketAddr) -> Option<StatusDoc> {
        self.get(addr, "/status")?.json().ok()
    }

    /// Any JSON document.
    pub fn json(&self, addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
        self.get(addr, path)?.json().ok()
    }
}
