//! `/metrics` on a node and on the LB's admin listener: valid Prometheus text, and the counters
//! move when clones are served; the LB does not expose the nodes' metrics to the world.

use std::time::Duration;

use mirrorfarm_tests::lb::{backends, Lb};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, prom};

fn scrape(url: &str) -> Vec<prom::Sample> {
    let text = reqwest::blocking::get(url)
        .and_then(|r| r.text())
        .expect("GET metrics");
    prom::parse(&text)
}

#[test]
fn metrics_parse_and_move_with_clones() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\n",
    );
    node.wait_synchronized(Duration::from_secs(60));
    let lb = Lb::start(&backends(&[&node]), "");
    lb.wait_healthy(1, Duration::from_secs(60));
    let node_url = format!("http://127.0.0.1:{}/metrics", node.http);
    let lb_url = format!("http://127.0.0.1:{}/metrics", lb.admin);

    let before = scrape(&node_url);
    assert!(prom::value(&before, "mirrorfarm_syncs_total", &[("result", "ok")]) >= 1.0);
    assert_eq!(
        prom::value(&before, "mirrorfarm_upstream_reachable", &[]),
        1.0
    );
    assert_eq!(prom::value(&before, "mirrorfarm_repos", &[]), 1.0);
    assert!(before
        .iter()
        .any(|s| s.name == "mirrorfarm_sync_lag_seconds" && s.labels["repo"] == "P/r"));
    assert!(before
        .iter()
        .any(|s| s.name.starts_with("mirrorfarm_sync_duration_seconds")));
    let lb_before = scrape(&lb_url);
    assert_eq!(
        prom::value(&lb_before, "mirrorfarm_lb_backend_healthy", &[]),
        1.0
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    lb.clone_repo("P", "r", &tmp.path().join("a"), &[]);
    let ssh = node.git_ssh();
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            &node.ssh_url("P", "r"),
            tmp.path().join("b").to_str().expect("utf8"),
        ],
        &[("GIT_SSH_COMMAND", &ssh)],
    );

    let after = scrape(&node_url);
    let http_clones = |s: &[prom::Sample]| {
        prom::value(
            s,
            "mirrorfarm_served_requests_total",
            &[("protocol", "http"), ("kind", "upload_pack")],
        )
    };
    let ssh_clones = |s: &[prom::Sample]| {
        prom::value(
            s,
            "mirrorfarm_served_requests_total",
            &[("protocol", "ssh")],
        )
    };
    assert!(
        http_clones(&after) > http_clones(&before),
        "HTTP clone not counted"
    );
    assert!(
        ssh_clones(&after) > ssh_clones(&before),
        "SSH clone not counted"
    );
    assert!(
        prom::value(&after, "mirrorfarm_served_bytes_total", &[])
            > prom::value(&before, "mirrorfarm_served_bytes_total", &[])
    );

    let lb_after = scrape(&lb_url);
    let ok =
        |s: &[prom::Sample]| prom::value(s, "mirrorfarm_lb_requests_total", &[("status", "200")]);
    assert!(
        ok(&lb_after) >= ok(&lb_before) + 2.0,
        "requests through the LB not counted: {lb_after:?}"
    );
    assert!(prom::value(&lb_after, "mirrorfarm_lb_tls_handshakes_total", &[]) >= 1.0);

    // Node metrics and admin endpoints are not reachable through the LB.
    let out = lb.curl("/metrics", &["-o", "/dev/null", "-w", "%{http_code}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}
