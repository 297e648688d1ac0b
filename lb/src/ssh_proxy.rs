//! SSH passthrough: each TCP connection goes to the healthy node with the fewest SSH connections
//! (the next one if a connect fails), optionally preceded by a PROXY v2 header carrying the client
//! address; bytes are then copied both ways until either side closes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backends::{Backends, InFlight};

/// Copy buffer from the client to its node.
const CLIENT_TO_NODE_BUFFER: usize = 16 * 1024;
/// Copy buffer from the node to its client.
const NODE_TO_CLIENT_BUFFER: usize = 256 * 1024;

/// The passthrough app.
pub struct SshPassthrough {
    /// The nodes.
    pub backends: Arc<Backends>,
    /// Send a PROXY v2 header first.
    pub proxy_protocol: bool,
    /// Metrics.
    pub metrics: Arc<crate::metrics::LbMetrics>,
    /// This worker's places for connections (`lb.ssh.maxConnections`).
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// What a client past `lb.ssh.maxConnections` is told before the connection closes (SSH clients
/// show lines that come before the version string).
const TOO_MANY: &[u8] =
    b"mirrorfarm: too many SSH connections through this load balancer; try again shortly\r\n";

#[async_trait]
impl ServerApp for SshPassthrough {
    async fn process_new(
        self: &Arc<Self>,
        mut client: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let digest = client.get_socket_digest();
        let peer = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet())
            .copied();
        let local = digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet())
            .copied();
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(client = ?peer, "SSH connection refused: lb.ssh.maxConnections reached");
            let _ = tokio::time::timeout(Duration::from_secs(2), client.write_all(TOO_MANY)).await;
            let _ = client.shutdown().await;
            return None;
        };
        let mut tried = Vec::new();
        let (mut upstream, in_flight) = loop {
            let Some(b) = self.backends.least_loaded(true, &tried) else {
                tracing::warn!(client = ?peer, "SSH connection refused: no healthy mirror node");
                return None;
            };
            tried.push(b.addr.http);
            match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(b.addr.ssh)).await
            {
                Ok(Ok(s)) => break (s, InFlight::new(b, true)),
                Ok(Err(e)) => {
                    if b.set_healthy(false) {
                        tracing::warn!(backend = %b.addr.label, error = %e, "cannot connect to node SSH; out of rotation");
                    }
                }
                Err(_) => {
                    if b.set_healthy(false) {
                        tracing::warn!(backend = %b.addr.label, "node SSH connect timed out; out of rotation");
                    }
                }
            }
        };
        let _ = upstream.set_nodelay(true);
        self.metrics.ssh_connection(&in_flight.backend().addr.label);
        if self.proxy_protocol {
            if let (Some(src), Some(dst)) = (peer, local) {
                let header = mirrorfarm_common::proxy_protocol::encode(src, dst);
                if upstream.write_all(&header).await.is_err() {
                    return None;
                }
            }
        }
        // A clone's pack flows node → client: large reads and writes there (tokio's default is
        // 8 KiB, eight times the syscalls per megabyte); the client's side carries little.
        match tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut upstream,
            CLIENT_TO_NODE_BUFFER,
            NODE_TO_CLIENT_BUFFER,
        )
        .await
        {
            Ok((up, down)) => {
                tracing::debug!(client = ?peer, backend = %in_flight.backend().addr.label, up, down, "SSH connection closed")
            }
            Err(e) => {
                tracing::debug!(client = ?peer, error = %e, "SSH connection ended with an error")
            }
        }
        None
    }
}
