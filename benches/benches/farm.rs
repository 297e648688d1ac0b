//! Farm benchmark: push to the upstream + trigger one node → the change visible on every node
//! (ls-remote on each), p50 and p99 over 50 pushes with 3 nodes, one run; and the upstream's SSH
//! sessions per change (target 1).
//!
//! Run: `scripts/bench farm`.

use std::time::{Duration, Instant};

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, gitc, wait_for};

const PUSHES: usize = 50;

fn props(port: u16, seed: Option<u16>) -> String {
    let seeds = seed
        .map(|s| format!("farm.seeds=127.0.0.1:{s}\n"))
        .unwrap_or_default();
    format!(
        "setup.baseUrl=https://farm.example.com\nmirror.repos=P/r\nmirror.access=anonymous\n\
         farm.secret=correct-horse-battery-staple\nfarm.gossip.address=127.0.0.1\nfarm.gossip.port={port}\n{seeds}"
    )
}

fn main_of(n: &Node) -> Option<String> {
    let out = gitc::try_run(
        None,
        &["ls-remote", &n.http_url("P", "r"), "refs/heads/main"],
        &[],
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("farm: benchmark");
        return;
    }
    let limit = Duration::from_secs(120);
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let p0 = free_udp_port();
    let first = Node::start(&up.ssh_url(), &props(p0, None));
    let s = first.wait_state("AWAITING_AUTHORIZATION", limit);
    up.authorize(s["publicKey"].as_str().expect("key"));
    first.trigger(Some(("P", "r")));
    first.wait_state("SYNCHRONIZED", limit);
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(Node::start(
            &up.ssh_url(),
            &props(free_udp_port(), Some(p0)),
        ));
    }
    for n in &nodes {
        n.wait_state("SYNCHRONIZED", limit);
        wait_for("3 members", limit, || {
            (n.status()["memberCount"] == 3).then_some(())
        });
    }
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
