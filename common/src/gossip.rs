//! Farm gossip settings shared by nodes and the load balancer: chitchat with 200 ms rounds (a
//! new value reaches the members within a round or two; what must travel faster — a staged state,
//! a sync passed on — goes over the farm channel; at rest a member sends a few KB/s, whatever the
//! repository count, since gossip carries no per-repository keys), digests sent uncompressed (a
//! few hundred bytes: compressing them cost a zstd context per datagram, a tenth of a busy
//! member's own CPU went to gossip) and a failure detector tuned so a stopped
//! member is declared dead within 3 s (chitchat's defaults take ~20 s) while a member whose
//! gossip stalls for less than that (a busy machine) is not; and the key that marks a load
//! balancer.

use std::net::SocketAddr;
use std::time::Duration;

use chitchat::{ChitchatConfig, ChitchatId, FailureDetectorConfig};

/// Gossip key whose value `lb` marks a load balancer following the farm (not a member).
pub const ROLE: &str = "role";
/// The value of [`ROLE`] for a load balancer.
pub const ROLE_LB: &str = "lb";

/// Time between two gossip rounds of a participant.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);

/// The chitchat settings of a participant `id` gossiping at `addr` (advertised as is).
pub fn chitchat_config(id: &str, addr: SocketAddr, seeds: &[String]) -> ChitchatConfig {
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ChitchatConfig {
        chitchat_id: ChitchatId::new(id.to_owned(), generation, addr),
        cluster_id: "mirrorfarm".into(),
        gossip_interval: GOSSIP_INTERVAL,
        listen_addr: addr,
        seed_nodes: seeds.to_vec(),
        failure_detector_config: FailureDetectorConfig {
            // A member is dead after `phi_threshold` × the mean interval at which its heartbeat
            // is seen to move, without a move. That interval grows with the rounds, so 10 with
            // 200 ms rounds is what 20 was with 100 ms: a member cut off leaves the others' views
            // in 1.5–1.8 s either way (`node/tests/gossip_membership.rs`, three runs of each) —
            // dead within 3 s (the contract), and a shorter stall (a member busy right after a
            // restart, say) is not a death: a false death moves the leadership of a third of the
            // repositories twice.
            phi_threshold: 10.0,
            sampling_window_size: 100,
            max_interval: Duration::from_secs(2),
            // The prior for a member with few samples yet: one gossip round.
            initial_interval: GOSSIP_INTERVAL,
            dead_node_grace_period: Duration::from_secs(3600),
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        // Digests uncompressed (deltas are always compressed; a member of either version reads
        // both, so a farm can be upgraded one member at a time).
        protocol_version: chitchat::ProtocolVersion::V0,
    }
}
