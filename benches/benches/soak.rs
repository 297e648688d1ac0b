//! Soak benchmark (issue "hold under load"): a 3-member farm behind the LB over an OpenSSH
//! upstream for `SOAK_SECONDS` (1200): four clients loop over `git ls-remote`, shallow clones and
//! fetches into a clone through the LB while the upstream gets a commit every 10 s (and the farm a
//! sync trigger, as a webhook would). Reports requests and failures (any non-zero git exit), and
//! each process's RSS and open file descriptors after warm-up and at the end.
//!
//! Run: `scripts/bench soak` (`SOAK_SECONDS=120 scripts/bench soak` for a short one).

use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::{following_lb, gossip_port, ssh_farm};
use mirrorfarm_tests::traffic::Traffic;

/// (RSS in MB, open fds) of a process now.
fn sample(pid: u32) -> (f64, usize) {
    let rss = mirrorfarm_tests::measure::rss_mb(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("soak: benchmark");
        return;
    }
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1200);
    let (up, nodes) = ssh_farm(3, Duration::from_secs(120));
    let lb = following_lb(gossip_port(&nodes[0]));
    lb.wait_healthy(3, Duration::from_secs(120));
    let traffic = Traffic::start(&lb.https_url("P", "r"), &lb.ca(), 4);
    let pids: Vec<(String, u32)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((format!("node {}", i + 1), n.pid()?)))
        .chain(lb.pid().map(|p| ("lb".to_owned(), p)))
        .collect();
    let start = Instant::now();
    let mut first: Option<Vec<(f64, usize)>> = None;
    let mut commits = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        up.commit("P", "r", "main", &format!("soak {commits}"));
        commits += 1;
        let _ = nodes[commits % nodes.len()].trigger(Some(("P", "r")));
        // After a minute of warm-up (or a tenth of a short run), the baseline.
        if first.is_none() && start.elapsed() >= Duration::from_secs(60.min(seconds / 10)) {
            first = Some(pids.iter().map(|(_, p)| sample(*p)).collect());
        }
        if commits % 6 == 0 {
            eprintln!(
                "  {:>5.0} s: {} requests, {} failed",
                start.elapsed().as_secs_f64(),
                traffic.served(),
                traffic.failed()
            );
        }
        std::thread::sleep(Duration::from_secs(10));
    }
    let last: Vec<(f64, usize)> = pids.iter().map(|(_, p)| sample(*p)).collect();
    let (served, failures) = traffic.stop();
    let first = first.unwrap_or_else(|| last.clone());
    println!("\nsoak: {seconds} s, a 3-member farm behind the LB, 4 clients, a commit upstream every 10 s ({commits} in all)");
    println!(
        "  {served} requests (ls-remote, shallow clones, fetches), {} failed",
        failures.len()
    );
    for (((name, _), (r0, f0)), (r1, f1)) in pids.iter().zip(&first).zip(&last) {
        println!("  {name:>6}: RSS {r0:.1} → {r1:.1} MB, open fds {f0} → {f1}");
    }
    if let Some(f) = failures.first() {
        println!("  first failure: {}", f.trim());
    }
}
