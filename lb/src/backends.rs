//! The nodes behind the LB and what it knows of each: health (from checks and failed connects),
//! the session route it issues, and in-flight HTTP requests and SSH connections for
//! least-loaded choice.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use serde::Serialize;

use crate::config::BackendAddr;

/// What the last health check learnt from a node's /status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Node ID.
    pub node_id: String,
    /// Node state word.
    pub state: String,
    /// Whether every mirrored repository has a complete state.
    pub ready: bool,
    /// The last check's error, if it failed.
    pub error: Option<String>,
    /// Its `setup.baseUrl`.
    pub base_url: String,
}

/// One node.
#[derive(Debug)]
pub struct Backend {
    /// Addresses.
    pub addr: BackendAddr,
    healthy: AtomicBool,
    route: RwLock<Option<String>>,
    info: RwLock<NodeInfo>,
    /// In-flight HTTP requests.
    pub active_http: AtomicUsize,
    /// Open SSH connections.
    pub active_ssh: AtomicUsize,
    /// HTTP requests sent to this node.
    pub served_http: AtomicU64,
}

impl Backend {
    /// Whether new traffic may go to it.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
    /// Marks it in or out of rotation; returns the previous value.
    pub fn set_healthy(&self, v: bool) -> bool {
        self.healthy.swap(v, Ordering::AcqRel)
    }
    /// The route its session cookies carry, once known.
    pub fn route(&self) -> Option<String> {
        self.route.read().clone()
    }
    /// Records what a check found.
    pub fn set_info(&self, info: NodeInfo) {
        if !info.node_id.is_empty() {
            let route = mirrorfarm_common::session::route_of_node(&info.node_id);
            *self.route.write() = Some(route);
        }
        *self.info.write() = info;
    }
    /// What the last check found.
    pub fn info(&self) -> NodeInfo {
        self.info.read().clone()
    }
}

/// Every node, in configuration order.
#[derive(Debug)]
pub struct Backends {
    list: RwLock<Arc<Vec<Arc<Backend>>>>,
    rr: AtomicUsize,
}

fn backend(a: &BackendAddr) -> Arc<Backend> {
    Arc::new(Backend {
        addr: a.clone(),
        healthy: AtomicBool::new(false),
        route: RwLock::new(None),
        info: RwLock::new(NodeInfo::default()),
        active_http: AtomicUsize::new(0),
        active_ssh: AtomicUsize::new(0),
        served_http: AtomicU64::new(0),
    })
}

/// Counts a request or connection on a backend while alive.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
    ssh: bool,
}

impl InFlight {
    /// Starts counting.
    pub fn new(backend: Arc<Backend>, ssh: bool) -> Self {
        let c = if ssh {
            &backend.active_ssh
        } else {
            &backend.active_http
        };
        c.fetch_add(1, Ordering::AcqRel);
        if !ssh {
            backend.served_http.fetch_add(1, Ordering::Relaxed);
        }
        Self { backend, ssh }
    }
    /// The backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = if self.ssh {
            &self.backend.active_ssh
        } else {
            &self.backend.active_http
        };
        c.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Backends {
    /// All nodes start out of rotation until their first passing checks.
    pub fn new(addrs: &[BackendAddr]) -> Self {
        Self {
            list: RwLock::new(Arc::new(addrs.iter().map(backend).collect())),
            rr: AtomicUsize::new(0),
        }
    }

    /// Every node (a snapshot: nodes discovered by gossip come and go).
    pub fn all(&self) -> Arc<Vec<Arc<Backend>>> {
        self.list.read().clone()
    }

    /// Adds a node (discovered and verified); out of rotation until it passes checks. Returns
    /// false when a node with that label is there already.
    pub fn add(&self, addr: &BackendAddr) -> bool {
        let mut list = self.list.write();
        if list.iter().any(|b| b.addr.label == addr.label) {
            return false;
        }
        let mut next: Vec<Arc<Backend>> = list.as_ref().clone();
        next.push(backend(addr));
        *list = Arc::new(next);
        true
    }

    /// Removes the nodes whose labels `keep` rejects; returns how many went.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut list = self.list.write();
        let next: Vec<Arc<Backend>> = list
            .iter()
            .filter(|b| keep(&b.addr.label))
            .cloned()
            .collect();
        let gone = list.len() - next.len();
        *list = Arc::new(next);
        gone
    }

    /// The healthy node issuing `route`, if any.
    pub fn by_route(&self, route: &str) -> Option<Arc<Backend>> {
        self.all()
            .iter()
            .find(|b| b.healthy() && b.route().as_deref() == Some(route))
            .cloned()
    }

    /// Whether a healthy node outside `exclude` is left.
    pub fn any_healthy_except(&self, exclude: &[SocketAddr]) -> bool {
        self.all()
            .iter()
            .any(|b| b.healthy() && !exclude.contains(&b.addr.http))
    }

    /// The healthy node with the fewest in-flight requests (or SSH connections), skipping
    /// `exclude`; ties are broken round-robin.
    pub fn least_loaded(&self, ssh: bool, exclude: &[SocketAddr]) -> Option<Arc<Backend>> {
        let list = self.all();
        let n = list.len();
        if n == 0 {
            return None;
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        let load = |b: &Backend| {
            if ssh {
                b.active_ssh.load(Ordering::Acquire)
            } else {
                b.active_http.load(Ordering::Acquire)
            }
        };
        (0..n)
            .map(|i| &list[(start + i) % n])
            .filter(|b| b.healthy() && !exclude.contains(&b.addr.http))
            .min_by_key(|b| load(b))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> BackendAddr {
        BackendAddr {
            label: format!("n{i}"),
            http: SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
            ssh: SocketAddr::from(([127, 0, 0, 1], 8000 + i)),
        }
    }

    #[test]
    fn routes_and_least_loaded() {
        let b = Backends::new(&[addr(1), addr(2)]);
        assert!(b.least_loaded(false, &[]).is_none(), "nothing healthy yet");
        for (i, be) in b.all().iter().enumerate() {
            be.set_healthy(true);
            be.set_info(NodeInfo {
                node_id: format!("{i}{i}{i}{i}aaaa-0000"),
                ..Default::default()
            });
        }
        assert_eq!(
            b.by_route("1111aaaa").map(|x| x.addr.label.clone()),
            Some("n2".into())
        );
        let _busy = InFlight::new(b.all()[0].clone(), false);
        for _ in 0..4 {
            assert_eq!(
                b.least_loaded(false, &[]).map(|x| x.addr.label.clone()),
                Some("n2".into())
            );
        }
        assert_eq!(
            b.least_loaded(false, &[addr(2).http])
                .map(|x| x.addr.label.clone()),
            Some("n1".into())
        );
        b.all()[1].set_healthy(false);
        assert!(b.by_route("1111aaaa").is_none());
        drop(_busy);
        assert_eq!(b.all()[0].active_http.load(Ordering::Acquire), 0);
    }
}
