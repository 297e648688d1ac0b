//! Gossip's traffic, counted: chitchat's UDP transport wrapped so that every datagram's bytes
//! are added up (`mirrorfarm_gossip_bytes_total{direction="sent"|"received"}`). A farm's gossip
//! at rest should not grow with the repositories it mirrors; this is how an admin (and the scale
//! benchmark) sees whether it does. One gossip instance per process: the counts are the
//! process's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use chitchat::ChitchatEnvelope;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

static SENT: AtomicU64 = AtomicU64::new(0);
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Bytes of gossip sent and received by this process so far.
pub fn totals() -> (u64, u64) {
    (
        SENT.load(Ordering::Relaxed),
        RECEIVED.load(Ordering::Relaxed),
    )
}

/// UDP gossip, counted.
pub struct CountingUdp;

struct CountingSocket(Box<dyn Socket>);

#[async_trait]
impl Transport for CountingUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        Ok(Box::new(CountingSocket(
            UdpTransport.open(listen_addr).await?,
        )))
    }
}

#[async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let out = self.0.send(to, envelope).await?;
        SENT.fetch_add(out.num_bytes_sent as u64, Ordering::Relaxed);
        Ok(out)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let out = self.0.recv().await?;
        RECEIVED.fetch_add(out.num_bytes_received as u64, Ordering::Relaxed);
        Ok(out)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// Appends `mirrorfarm_gossip_bytes_total` to `out` (Prometheus text).
pub fn encode(out: &mut String) -> std::fmt::Result {
    let mut r = Registry::with_prefix("mirrorfarm_gossip");
    let bytes = Family::<DirectionLabel, Counter>::default();
    let (sent, received) = totals();
    for (direction, v) in [("sent", sent), ("received", received)] {
        bytes.get_or_create(&DirectionLabel { direction }).inc_by(v);
    }
    r.register("bytes", "Bytes of farm gossip (UDP), by direction", bytes);
    prometheus_client::encoding::text::encode_registry(out, &r)
}
