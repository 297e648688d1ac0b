//! Load benchmark (issue "hold under load"): a 3-member farm behind the LB on this machine, an
//! OpenSSH upstream holding one small repository; `LOAD_CLONES` (500) shallow clones started at
//! once, then `LOAD_LS_REMOTES` (2000) `git ls-remote` started at once, all over HTTPS through the
//! LB. Every git process counts: a non-zero exit is an error (a 503 the client gave up on
//! included). Prints errors, latency percentiles (from each process's start to its exit) and the
//! nodes' refusals for want of an upload-pack place.
//!
//! Run: `scripts/bench load`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::{following_lb, gossip_port, ssh_farm};
use mirrorfarm_tests::lb::Lb;
use mirrorfarm_tests::node::Node;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Starts `n` git commands made by `args(i)` at once; returns (errors, seconds of each, wall
/// seconds, the first error's message).
fn storm(lb: &Lb, n: usize, args: impl Fn(usize) -> Vec<String>) -> (usize, Vec<f64>, f64, String) {
    let ca = lb.ca().display().to_string();
    let start = Instant::now();
    let mut running: Vec<(Instant, Child)> = Vec::with_capacity(n);
    for i in 0..n {
        let child = Command::new("git")
            .args(args(i))
            .env("GIT_SSL_CAINFO", &ca)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn git");
        running.push((Instant::now(), child));
    }
    let (mut errors, mut times, mut first) = (0, Vec::with_capacity(n), String::new());
    // Reaped in order; each one's end is taken when it is seen done, polled every 5 ms.
    let mut pending: Vec<(Instant, Child)> = running;
    let deadline = Instant::now() + Duration::from_secs(900);
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::with_capacity(pending.len());
        for (t, mut c) in pending {
            match c.try_wait() {
                Ok(Some(status)) => {
                    times.push(t.elapsed().as_secs_f64());
                    if !status.success() {
                        errors += 1;
                        if first.is_empty() {
                            let mut s = String::new();
                            if let Some(mut e) = c.stderr.take() {
                                let _ = std::io::Read::read_to_string(&mut e, &mut s);
                            }
                            first = s.trim().to_owned();
                        }
                    }
                }
                _ => still.push((t, c)),
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(5));
    }
    errors += pending.len();
    (errors, times, start.elapsed().as_secs_f64(), first)
}

fn busy(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| {
            reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", n.http))
                .and_then(|r| r.text())
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("mirrorfarm_busy_refusals_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("load: benchmark");
        return;
    }
    let clones = count("LOAD_CLONES", 500);
    let ls = count("LOAD_LS_REMOTES", 2000);
    let (_up, nodes) = ssh_farm(3, Duration::from_secs(120));
    let lb = following_lb(gossip_port(&nodes[0]));
    lb.wait_healthy(3, Duration::from_secs(120));
    let url = lb.https_url("P", "r");
    let tmp = tempfile::tempdir().expect("tempdir");

    let dir = tmp.path().to_owned();
    let (c_err, c_times, c_wall, c_first) = storm(&lb, clones, |i| {
        vec![
            "clone".into(),
            "-q".into(),
            "--depth".into(),
            "1".into(),
            url.clone(),
            dir.join(format!("c{i}")).display().to_string(),
        ]
    });
    let busy_after_clones = busy(&nodes);
    let (l_err, l_times, l_wall, l_first) =
        storm(&lb, ls, |_| vec!["ls-remote".into(), url.clone()]);
    let busy_total = busy(&nodes);

    let rss: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.pid())
        .chain(lb.pid())
        .map(|p| format!("{:.0}", mirrorfarm_tests::measure::peak_rss_mb(p)))
        .collect();
    println!("\nload: a 3-member farm behind the LB on this machine (2 cores), one run");
    println!(
        "  {clones} shallow clones at once: {c_err} errors; latency p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s; all done in {c_wall:.1} s; upload-pack refusals {busy_after_clones}",
        percentile(&c_times, 0.5),
        percentile(&c_times, 0.9),
        percentile(&c_times, 0.99),
        percentile(&c_times, 1.0)
    );
    println!(
        "  {ls} ls-remote at once: {l_err} errors; latency p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s; all done in {l_wall:.1} s; upload-pack refusals {}",
        percentile(&l_times, 0.5),
        percentile(&l_times, 0.9),
        percentile(&l_times, 0.99),
        percentile(&l_times, 1.0),
        busy_total - busy_after_clones
    );
    println!("  peak RSS MB (3 nodes, LB): {}", rss.join(", "));
    if !c_first.is_empty() {
        println!("  first clone error: {c_first}");
    }
    if !l_first.is_empty() {
        println!("  first ls-remote error: {l_first}");
    }
}
