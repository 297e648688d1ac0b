//! The farm at rest: the busiest member's own CPU and gossip over a measuring window.

use std::time::Instant;

use mirrorfarm_tests::measure::cpu_seconds;
use mirrorfarm_tests::node::Node;

use crate::{gossip_sent, REST};

/// The busiest member's own CPU (% of a core) and gossip sent (B/s) over [`REST`].
pub fn at_rest(n: usize, nodes: &[Node]) -> (f64, f64) {
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid().expect("pid")).collect();
    let g0: Vec<f64> = nodes.iter().map(gossip_sent).collect();
    let c0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let rest_started = Instant::now();
    std::thread::sleep(REST); // a measuring window, not a wait for a condition
    let secs = rest_started.elapsed().as_secs_f64();
    let c1: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let g1: Vec<f64> = nodes.iter().map(gossip_sent).collect();
    let rest_cpu_pct = c0.iter().zip(&c1).map(|(a, b)| b - a).fold(0.0, f64::max) / secs * 100.0;
    let gossip_bps = g0.iter().zip(&g1).map(|(a, b)| b - a).fold(0.0, f64::max) / secs;
    eprintln!("scale {n}: at rest: own CPU {rest_cpu_pct:.2} %, gossip sent {gossip_bps:.0} B/s");
    (rest_cpu_pct, gossip_bps)
}
