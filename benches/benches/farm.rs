//! Farm benchmark: push to the upstream + trigger one node → the change visible on every node
//! (ls-remote on each), p50 and p99 over 50 pushes with 3 nodes, one run; and the upstream's SSH
//! sessions per change (target 1).
//!
//! Run: `scripts/bench farm`.

use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::{main_of, ssh_farm};
use mirrorfarm_tests::wait_for;

const PUSHES: usize = 50;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("farm: benchmark");
        return;
    }
    let limit = Duration::from_secs(120);
    let (up, nodes) = ssh_farm(3, limit);
    std::thread::sleep(Duration::from_secs(2));
    let before = up.accepted_sessions();
    let mut times = Vec::with_capacity(PUSHES);
    for i in 0..PUSHES {
        let new = up.commit("P", "r", "main", &format!("push {i}"));
        let t = Instant::now();
        nodes[i % nodes.len()].trigger(Some(("P", "r")));
        for n in &nodes {
            wait_for("the push on every node", limit, || {
                (main_of(n).as_deref() == Some(new.as_str())).then_some(())
            });
        }
        times.push(t.elapsed().as_secs_f64());
    }
    std::thread::sleep(Duration::from_secs(2));
    let sessions = up.accepted_sessions() - before;
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!("\nfarm of 3 nodes, {PUSHES} pushes, trigger sent to each node in turn, one run");
    println!(
        "  push → visible on every node   p50 {:.3} s (target < 0.3)   p99 {:.3} s (target < 1)",
        pct(0.5),
        pct(0.99)
    );
    println!(
        "  upstream SSH sessions per change  {:.2} (target 1)",
        sessions as f64 / PUSHES as f64
    );
}
