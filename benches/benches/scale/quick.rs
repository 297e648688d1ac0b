//! The quick comparison of two binaries: initial sync, rest, pushes at rest.

use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::poll_every;

use crate::{push, rest, synced_farm, PUSHES};

/// The quick comparison (`MIRRORFARM_SCALE_QUICK`): the initial sync, the farm at rest, and
/// pushes at rest.
pub fn quick(n: usize) {
    let (up, nodes, sync_s, cpu_ms) = synced_farm(n);
    let limit = Duration::from_secs(600 + n as u64 / 2);
    let idle = poll_every(limit, Duration::from_secs(1), || {
        nodes.iter().all(Node::no_sync_running).then_some(())
    });
    assert!(
        idle.is_some(),
        "the members kept syncing after the initial sync"
    );
    let (rest_pct, gossip_bps) = rest::at_rest(n, &nodes);
    let pushes = push::times(&up, &nodes, PUSHES, "at rest");
    let q = push::quantile;
    println!(
        "scale {n}: initial sync {sync_s:.0} s, own CPU {cpu_ms:.2} ms per repository; at rest \
         {rest_pct:.2} % of a core, gossip {gossip_bps:.0} B/s; push -> every member p50 {:.0} ms, \
         p99 {:.0} ms (of {PUSHES})",
        q(&pushes, 0.5) * 1000.0,
        q(&pushes, 0.99) * 1000.0,
    );
}
