//! Farm gossip settings shared by nodes and the load balancer: chitchat with fast rounds and a
//! failure detector tuned so a stopped member is declared dead in about a second (chitchat's
//! defaults take ~20 s), and the key that marks a load balancer.

use std::net::SocketAddr;
use std::time::Duration;

use chitchat::{ChitchatConfig, ChitchatId, FailureDetectorConfig};

/// Gossip key whose value `lb` marks a load balancer following the farm (not a member).
pub const ROLE: &str = "role";
/// The value of [`ROLE`] for a load balancer.
pub const ROLE_LB: &str = "lb";

/// The chitchat settings of a participant `id` gossiping at `addr` (advertised as is).
pub fn chitchat_config(id: &str, addr: SocketAddr, seeds: &[String]) -> ChitchatConfig {
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ChitchatConfig {
        chitchat_id: ChitchatId::new(id.to_owned(), generation, addr),
        cluster_id: "mirrorfarm".into(),
        gossip_interval: Duration::from_millis(20),
        listen_addr: addr,
        seed_nodes: seeds.to_vec(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: 8.0,
            sampling_window_size: 100,
            max_interval: Duration::from_secs(2),
            initial_interval: Duration::from_millis(200),
            dead_node_grace_period: Duration::from_secs(3600),
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V1,
    }
}
