//! Load-balancer benchmark: mirrorfarm lb against HAProxy (Debian's package, TLS-terminating, HTTP
//! to the same two nodes, the same certificate), in one run: `info/refs` requests/s and p50/p99
//! latency with wrk (32 connections; median of 3 alternating rounds each); the wall time of a full
//! clone of a ≥ 50 MB repository over h2 and over HTTP/1.1, and SSH through the LB against SSH
//! straight to a node, in 9 alternating rounds (ratios per round: their median and spread).
//! `MIRRORFARM_BENCH_CLONES_ONLY=1` skips the wrk rounds.
//!
//! Run: `scripts/bench lb`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mirrorfarm_tests::lb::{backends, Lb};
use mirrorfarm_tests::measure::{
    alternating_clones, cpu_seconds, median, peak_rss_mb, ratio_spread,
};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_port, gitc, wait_for};

/// Alternating clone rounds per comparison.
const RUNS: usize = 9;

struct Haproxy(Child);
impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy terminating TLS on `port` (HTTP to the nodes) and relaying TCP on `ssh_port` to the
/// nodes' SSH ports (`mode tcp`: what any TCP relay costs, for the SSH comparison).
fn haproxy(
    lb: &Lb,
    nodes: &[&Node],
    (port, ssh_port): (u16, u16),
    dir: &std::path::Path,
) -> Haproxy {
    let pem = dir.join("haproxy.pem");
    let mut both = std::fs::read(lb.home().join("tls/cert.pem")).expect("cert");
    both.extend(std::fs::read(lb.home().join("tls/key.pem")).expect("key"));
    std::fs::write(&pem, both).expect("pem");
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("    server n{i} 127.0.0.1:{} check inter 1s\n", n.http))
        .collect();
    let ssh_servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("    server s{i} 127.0.0.1:{} check inter 1s\n", n.ssh))
        .collect();
    let cfg = format!(
        "global\n    maxconn 4096\n    nbthread 2\ndefaults\n    timeout connect 3s\n    timeout client 600s\n    timeout server 600s\n\
         frontend https\n    mode http\n    option forwardfor\n    bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1\n    default_backend nodes\n\
         backend nodes\n    mode http\n    balance leastconn\n    http-reuse always\n{servers}\
         frontend ssh\n    mode tcp\n    bind 127.0.0.1:{ssh_port}\n    default_backend ssh_nodes\n\
         backend ssh_nodes\n    mode tcp\n    balance leastconn\n{ssh_servers}",
        pem = pem.display()
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy (apt-get install haproxy)");
    wait_for("haproxy to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    Haproxy(child)
}

struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn to_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => f64::NAN,
    }
}

fn wrk(url: &str) -> WrkResult {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d10s", "--latency", url])
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("nan")
            .to_owned()
    };
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if let Some(e) = errors {
        eprintln!("  wrk {url}: {}", e.trim());
    }
    WrkResult {
        rps: find("Requests/sec:").parse().unwrap_or(f64::NAN),
        p50_ms: to_ms(&find("50%")),
        p99_ms: to_ms(&find("99%")),
    }
}

/// wrk rounds per server.
const WRK_ROUNDS: usize = 3;

/// Median requests/s, p50 and p99 of several rounds (each taken on its own).
fn median_of(runs: &[WrkResult]) -> WrkResult {
    let med = |f: fn(&WrkResult) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    WrkResult {
        rps: med(|r| r.rps),
        p50_ms: med(|r| r.p50_ms),
        p99_ms: med(|r| r.p99_ms),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("lb: benchmark");
        return;
    }
    let up = Upstream::new();
    let src = up.create("BENCH", "big", &Shape::bench());
    gitc::run(Some(&src), &["repack", "-adq"], &[]);
    let props = "mirror.repos=BENCH/big\nmirror.access=anonymous\n";
    let nodes = [
        Node::start(&up.file_url(), props),
        Node::start(&up.file_url(), props),
    ];
    for n in &nodes {
        n.wait_state("SYNCHRONIZED", Duration::from_secs(300));
        gitc::run(
            Some(&n.mirror_path("BENCH", "big")),
            &["repack", "-adbq"],
            &[],
        );
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    // The LB's default worker count (twice the CPUs), as an installed LB runs.
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let lb = Lb::start(&backends(&refs), &format!("lb.threads={}\n", 2 * cpus));
    lb.wait_healthy(2, Duration::from_secs(60));
    let tmp = tempfile::tempdir().expect("tempdir");
    let hport = free_port();
    let hssh = free_port();
    let _ha = haproxy(&lb, &refs, (hport, hssh), tmp.path());

    let path = "/scm/BENCH/big.git/info/refs?service=git-upload-pack";
    // Alternating rounds, medians: one 10 s round each swings by ±10 % on a shared 2-core box.
    // MIRRORFARM_BENCH_CLONES_ONLY=1 skips them (to look at the clones alone).
    let wrk_rounds = if std::env::var_os("MIRRORFARM_BENCH_CLONES_ONLY").is_some() {
        0
    } else {
        WRK_ROUNDS
    };
    let (mut ours_runs, mut theirs_runs) = (Vec::new(), Vec::new());
    for _ in 0..wrk_rounds {
        ours_runs.push(wrk(&format!("https://localhost:{}{path}", lb.https)));
        theirs_runs.push(wrk(&format!("https://localhost:{hport}{path}")));
    }

    let ca = lb.ca().display().to_string();
    let h2: &[(&str, &str)] = &[("GIT_SSL_CAINFO", ca.as_str())];
    let h1: &[(&str, &str)] = &[
        ("GIT_SSL_CAINFO", ca.as_str()),
        ("GIT_CONFIG_COUNT", "1"),
        ("GIT_CONFIG_KEY_0", "http.version"),
        ("GIT_CONFIG_VALUE_0", "HTTP/1.1"),
    ];
    let (ours_url, theirs_url) = (
        lb.https_url("BENCH", "big"),
        format!("https://localhost:{hport}/scm/BENCH/big.git"),
    );
    let ssh = nodes[0].git_ssh();
    let ssh_env: &[(&str, &str)] = &[("GIT_SSH_COMMAND", ssh.as_str())];
    let (ssh_lb_url, ssh_direct_url) =
        (lb.ssh_url("BENCH", "big"), nodes[0].ssh_url("BENCH", "big"));
    let ssh_haproxy_url = format!("ssh://git@localhost:{hssh}/BENCH/big.git");
    // The proxies' own CPU over the HTTPS clones (each is idle but for its own clones and
    // health checks), per clone.
    let pids = (lb.pid().unwrap_or(0), _ha.0.id());
    let cpu0 = (cpu_seconds(pids.0), cpu_seconds(pids.1));
    let mut t = alternating_clones(
        &[
            (ours_url.as_str(), h2),
            (theirs_url.as_str(), h2),
            (ours_url.as_str(), h1),
            (theirs_url.as_str(), h1),
        ],
        tmp.path(),
        RUNS,
    );
    let per_clone = |now: f64, then: f64| (now - then) / (2 * RUNS) as f64;
    let cpu = (
        per_clone(cpu_seconds(pids.0), cpu0.0),
        per_clone(cpu_seconds(pids.1), cpu0.1),
    );
    let (lb_cpu0, ha_cpu0) = (cpu_seconds(pids.0), cpu_seconds(pids.1));
    t.extend(alternating_clones(
        &[
            (ssh_lb_url.as_str(), ssh_env),
            (ssh_direct_url.as_str(), ssh_env),
            (ssh_haproxy_url.as_str(), ssh_env),
        ],
        tmp.path(),
        RUNS,
    ));
    let ssh_cpu = (
        (cpu_seconds(pids.0) - lb_cpu0) / RUNS as f64,
        (cpu_seconds(pids.1) - ha_cpu0) / RUNS as f64,
    );

    let rss = lb.pid().map(peak_rss_mb).unwrap_or(f64::NAN);
    println!(
        "\nmirrorfarm lb vs HAProxy (same 2 nodes, same certificate), one run; info/refs: median of {wrk_rounds} alternating 10 s wrk rounds each; clones: {RUNS} alternating rounds"
    );
    if wrk_rounds > 0 {
        let (ours, theirs) = (median_of(&ours_runs), median_of(&theirs_runs));
        println!(
            "  info/refs requests/s      lb {:>9.0}   haproxy {:>9.0}   ratio {:.2} (target ≥ 1)",
            ours.rps,
            theirs.rps,
            ours.rps / theirs.rps
        );
        println!(
            "  info/refs p50 latency ms  lb {:>9.2}   haproxy {:>9.2}   ratio {:.2}",
            ours.p50_ms,
            theirs.p50_ms,
            ours.p50_ms / theirs.p50_ms
        );
        println!(
            "  info/refs p99 latency ms  lb {:>9.2}   haproxy {:>9.2}   ratio {:.2} (target ≤ 1)",
            ours.p99_ms,
            theirs.p99_ms,
            ours.p99_ms / theirs.p99_ms
        );
    }
    let line = |label: &str,
                a: &[std::time::Duration],
                b: &[std::time::Duration],
                other: &str,
                target: &str| {
        let (r, lo, hi) = ratio_spread(a, b);
        println!(
            "  {label:<26} lb {:>6.3} s   {other} {:>6.3} s   ratio {r:.2} (rounds {lo:.2}–{hi:.2}; target {target})",
            median(a).as_secs_f64(),
            median(b).as_secs_f64(),
        );
    };
    line("full clone, h2", &t[0], &t[1], "haproxy", "≤ 1.00");
    line("full clone, HTTP/1.1", &t[2], &t[3], "haproxy", "≤ 1.00");
    line("SSH clone", &t[4], &t[5], "direct ", "≤ 1.05");
    let (r, lo, hi) = ratio_spread(&t[6], &t[5]);
    println!(
        "  SSH clone, HAProxy mode tcp {:>6.3} s: {r:.2}× direct (rounds {lo:.2}–{hi:.2}): any TCP relay's cost here",
        median(&t[6]).as_secs_f64()
    );
    let (r, lo, hi) = ratio_spread(&t[4], &t[6]);
    println!("  SSH clone, lb / HAProxy mode tcp: {r:.2} (rounds {lo:.2}–{hi:.2})");
    println!(
        "  proxy CPU per HTTPS clone  lb {:.3} s   haproxy {:.3} s   ratio {:.2}",
        cpu.0,
        cpu.1,
        cpu.0 / cpu.1
    );
    println!(
        "  relay CPU per SSH clone    lb {:.3} s   haproxy {:.3} s   ratio {:.2}",
        ssh_cpu.0,
        ssh_cpu.1,
        ssh_cpu.0 / ssh_cpu.1
    );
    println!(
        "  lb peak RSS after {} full clones through it: {rss:.1} MB",
        3 * RUNS
    );
}
