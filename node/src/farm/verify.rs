//! Which gossiping peers count as farm members: those whose farm certificate (signed by the farm
//! CA, naming their node ID) has been checked over TLS at the address they gossip from. A process
//! that only speaks gossip is never counted: it leads nothing, holds no flip back and is
//! never fetched from.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use mirrorfarm_common::farm::client::FarmClient;

/// How long after a failed check a peer is checked again.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
enum Check {
    Verified,
    Trying,
    Failed(Instant),
}

/// Checks peers' farm certificates in the background and remembers the answers.
#[derive(Clone)]
pub struct Verifier {
    client: FarmClient,
    checks: Arc<Mutex<HashMap<(String, SocketAddr), Check>>>,
}

impl Verifier {
    /// Checks with `client` (which trusts only the farm CA and names the member it asks).
    pub fn new(client: FarmClient) -> Self {
        Self {
            client,
            checks: Default::default(),
        }
    }

    /// Whether `node_id` at `addr` is a verified member; starts a check when it is not known
    /// yet (or its last check failed a while ago).
    pub fn verified(&self, node_id: &str, addr: SocketAddr) -> bool {
        let key = (node_id.to_owned(), addr);
        let mut checks = self.checks.lock();
        match checks.get(&key) {
            Some(Check::Verified) => return true,
            Some(Check::Trying) => return false,
            Some(Check::Failed(at)) if at.elapsed() < RETRY => return false,
            _ => {}
        }
        checks.insert(key.clone(), Check::Trying);
        let this = self.clone();
        tokio::spawn(async move {
            let res = this.client.describe(&key.0, addr).await;
            let check = match res {
                Ok(_) => {
                    tracing::info!(node = %key.0, address = %addr, "farm member verified");
                    Check::Verified
                }
                Err(e) => {
                    tracing::warn!(node = %key.0, address = %addr, error = %e, "gossip names a node that does not verify as a farm member; ignored");
                    Check::Failed(Instant::now())
                }
            };
            this.checks.lock().insert(key, check);
        });
        false
    }
}
