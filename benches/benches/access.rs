//! Access benchmark (issue "access"): two farms of 3 members on one OpenSSH upstream, each behind
//! its own LB with `lb.sticky=false` — one anonymous (the baseline), one authenticated against the
//! upstream's smart-HTTP endpoint (nginx + HTTP Basic + git http-backend) — measured in the same
//! run: `info/refs` requests/s through the LB (wrk, 32 connections, median of alternating rounds)
//! anonymous vs Basic credentials (cached) vs a session cookie; a small clone through the LB the
//! same three ways; upstream checks per 1000 requests; and how soon a session issued by member 1 is
//! valid on members 2 and 3 (p50/p99 over 50 sessions).
//!
//! Run: `scripts/bench access`.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use mirrorfarm_tests::farm::{following_lb_with, gossip_port, ssh_farm_on};
use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::lb::Lb;
use mirrorfarm_tests::measure::median_clone;
use mirrorfarm_tests::node::{Node, Placement};
use mirrorfarm_tests::upstream::{Shape, Upstream};

const LIMIT: Duration = Duration::from_secs(120);
const ROUNDS: usize = 3;
const CLONES: usize = 5;
const SESSIONS: usize = 50;
const PATH: &str = "/scm/P/r.git/info/refs?service=git-upload-pack";

/// (requests/s, requests made).
fn wrk(lb: &Lb, headers: &[String]) -> (f64, u64) {
    let mut c = Command::new("wrk");
    c.args(["-t2", "-c32", "-d8s", "-H", "Git-Protocol: version=2"]);
    for h in headers {
        c.args(["-H", h]);
    }
    let out = c
        .arg(format!("https://localhost:{}{PATH}", lb.https))
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(l) = text.lines().find(|l| l.contains("Non-2xx")) {
        eprintln!("  wrk: {}", l.trim());
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let total = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (rps, total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

fn info_refs(
    c: &reqwest::blocking::Client,
    node: &Node,
    auth: Option<&str>,
    cookie: Option<&str>,
) -> (u16, Option<String>) {
    let mut r = c.get(format!(
        "{}/info/refs?service=git-upload-pack",
        node.http_url("P", "r")
    ));
    if let Some(a) = auth {
        r = r.header("Authorization", a);
    }
    if let Some(k) = cookie {
        r = r.header("Cookie", k);
    }
    let resp = r.send().expect("GET");
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (resp.status().as_u16(), set)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("access: benchmark");
        return;
    }
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let http = HttpUpstream::start(&up.root(), &[("alice", "alice-pw")], &[("P/r", &["alice"])]);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-pw")
    );
    let anon_nodes = ssh_farm_on(&up, 3, LIMIT, "", &Placement::default());
    let anon_lb = following_lb_with(gossip_port(&anon_nodes[0]), "lb.sticky=false\n");
    let auth_extra = format!("mirror.access=authenticated\n{}", http.properties());
    let nodes = ssh_farm_on(&up, 3, LIMIT, &auth_extra, &Placement::default());
    let lb = following_lb_with(gossip_port(&nodes[0]), "lb.sticky=false\n");
    anon_lb.wait_healthy(3, LIMIT);
    lb.wait_healthy(3, LIMIT);

    let c = client();
    let (status, cookie) = info_refs(&c, &nodes[0], Some(&basic), None);
    assert_eq!(status, 200, "alice reads P/r");
    let cookie = cookie.expect("a session cookie");

    // info/refs, alternating rounds.
    let (mut anon, mut creds, mut sess) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cred_requests, checks_before) = (0u64, http.checks());
    for _ in 0..ROUNDS {
        anon.push(wrk(&anon_lb, &[]).0);
        let (rps, n) = wrk(&lb, &[format!("Authorization: {basic}")]);
        creds.push(rps);
        cred_requests += n;
        sess.push(wrk(&lb, &[format!("Cookie: {cookie}")]).0);
    }
    let checks = http.checks() - checks_before;
    let (anon, creds, sess) = (median(anon), median(creds), median(sess));

    // Small clones.
    let tmp = tempfile::tempdir().expect("tempdir");
    let anon_ca = anon_lb.ca().display().to_string();
    let ca = lb.ca().display().to_string();
    let clone_anon = median_clone(
        &anon_lb.https_url("P", "r"),
        &[("GIT_SSL_CAINFO", anon_ca.as_str())],
        tmp.path(),
        CLONES,
    );
    let with_creds = lb
        .https_url("P", "r")
        .replacen("https://", "https://alice:alice-pw@", 1);
    let clone_creds = median_clone(
        &with_creds,
        &[("GIT_SSL_CAINFO", ca.as_str())],
        tmp.path(),
        CLONES,
    );
    let header = format!("Cookie: {cookie}");
    let clone_cookie = median_clone(
        &lb.https_url("P", "r"),
        &[
            ("GIT_SSL_CAINFO", ca.as_str()),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "http.extraHeader"),
            ("GIT_CONFIG_VALUE_0", header.as_str()),
        ],
        tmp.path(),
        CLONES,
    );

    // Session replication: a new session on member 1, polled on members 2 and 3.
    let mut latencies = Vec::new();
    let mut current = Some(cookie.clone());
    for _ in 0..SESSIONS {
        if let Some(k) = current.take() {
            let _ = c
                .delete(format!(
                    "http://127.0.0.1:{}/rest/mirroring/latest/session",
                    nodes[0].http
                ))
                .header("Cookie", k)
                .send();
        }
        let (status, set) = info_refs(&c, &nodes[0], Some(&basic), None);
        assert_eq!(status, 200);
        let k = set.expect("a new session");
        let t0 = Instant::now();
        let worst = std::thread::scope(|s| {
            let hs: Vec<_> = nodes[1..]
                .iter()
                .map(|n| {
                    let k = k.clone();
                    s.spawn(move || {
                        let c = client();
                        while t0.elapsed() < Duration::from_secs(10) {
                            if info_refs(&c, n, None, Some(&k)).0 == 200 {
                                return t0.elapsed();
                            }
                        }
                        panic!("a session was not valid on every member within 10 s");
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("poller"))
                .max()
                .unwrap_or_default()
        });
        latencies.push(worst.as_secs_f64() * 1000.0);
        current = Some(k);
    }
    let p50 = percentile(&mut latencies, 0.5);
    let p99 = percentile(&mut latencies, 0.99);

    println!("\naccess: 3-member farms behind the LB (lb.sticky=false), one run; info/refs v2: median of {ROUNDS} alternating 8 s wrk rounds");
    println!("  info/refs requests/s   anonymous {anon:>8.0}   Basic (cached) {creds:>8.0} ({:.2}×)   session cookie {sess:>8.0} ({:.2}×)   (target ≥ 0.9×)", creds / anon, sess / anon);
    println!(
        "  small clone (median of {CLONES}) s   anonymous {:.3}   Basic {:.3} ({:.2}×)   session cookie {:.3} ({:.2}×)",
        clone_anon.as_secs_f64(),
        clone_creds.as_secs_f64(),
        clone_anon.as_secs_f64() / clone_creds.as_secs_f64(),
        clone_cookie.as_secs_f64(),
        clone_anon.as_secs_f64() / clone_cookie.as_secs_f64()
    );
    println!(
        "  upstream checks per 1000 requests with one credential: {:.3} ({checks} checks, {cred_requests} requests)",
        checks as f64 * 1000.0 / cred_requests.max(1) as f64
    );
    println!("  session valid on members 2 and 3 after issue on member 1: p50 {p50:.1} ms, p99 {p99:.1} ms over {SESSIONS} sessions (target p99 ≤ 1000 ms)");
}
