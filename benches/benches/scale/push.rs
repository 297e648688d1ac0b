//! Push → visible on every member: a commit upstream, a sync trigger at one member (in turn),
//! and the time until every member serves the new `main`.

use std::time::{Duration, Instant};

use mirrorfarm_tests::measure::until_main_everywhere_in;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::Upstream;

/// The log line that ends a member's reconcile probe.
pub const PROBE_DONE: &str = "reconcile probe done";

/// Times of `count` pushes to one repository, one after another, sorted (s).
pub fn times(up: &Upstream, nodes: &[Node], count: usize, label: &str) -> Vec<f64> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut times = Vec::new();
    for i in 0..count {
        let sha = up.commit("S1", "r00001", "main", &format!("push {label} {i}"));
        let t = Instant::now();
        let code = nodes[i % nodes.len()].trigger(Some(("S1", "r00001")));
        assert!((200..300).contains(&code), "sync trigger answered {code}");
        let took = until_main_everywhere_in(
            nodes,
            ("S1", "r00001"),
            &sha,
            t,
            Duration::from_secs(60),
            &client,
        );
        if took > Duration::from_secs(1) {
            // A slow one: what each member was doing.
            eprintln!("push {label} {i} took {took:?}");
            for (k, n) in nodes.iter().enumerate() {
                let log = n.log();
                let about: Vec<&str> = log.lines().filter(|l| l.contains("S1/r00001")).collect();
                let tail = &about[about.len().saturating_sub(8)..];
                eprintln!("  member {k}:\n{}", tail.join("\n"));
            }
        }
        times.push(took.as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times
}

/// The `p` quantile of sorted `times` (the nearest rank).
pub fn quantile(times: &[f64], p: f64) -> f64 {
    let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
    times[i]
}

/// How many reconcile probes `node` has ended, by its log.
pub fn probes_done(node: &Node) -> usize {
    node.log().matches(PROBE_DONE).count()
}
