//! A rolling restart under traffic: while git clients fetch, clone and list refs through the LB
//! without pause, each
//! member in turn gets SIGTERM and is started again; not one request fails (a stopping node
//! drains, the LB takes it out of rotation and retries elsewhere).

use std::time::Duration;

use mirrorfarm_tests::farm::{following_lb, gossip_port, ssh_farm, wait_synchronized_members};
use mirrorfarm_tests::traffic::Traffic;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_rolling_restart_under_traffic_fails_no_request() {
    let (_up, mut nodes) = ssh_farm(3, LIMIT);
    let lb = following_lb(gossip_port(&nodes[0]));
    lb.wait_healthy(3, LIMIT);
    let traffic = Traffic::start(&lb.https_url("P", "r"), &lb.ca(), 3);
    traffic.wait_served(10, LIMIT);
    for i in 0..nodes.len() {
        assert_eq!(nodes[i].stop(), Some(0), "member {} stops cleanly", i + 1);
        traffic.wait_served(10, LIMIT);
        nodes[i].spawn();
        wait_synchronized_members(&nodes, LIMIT);
        lb.wait_healthy(3, LIMIT);
        traffic.wait_served(10, LIMIT);
    }
    let (served, failures) = traffic.stop();
    eprintln!(
        "rolling restart: {served} requests served, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rolling restart; first: {}",
        failures.len(),
        failures.len() + served,
        failures.first().cloned().unwrap_or_default()
    );
}

/// Clones `n` times at once through `url`; returns how many failed, and the first error.
fn clones_at_once(url: &str, ca: &str, dir: &std::path::Path, n: usize) -> (usize, String) {
    let children: Vec<_> = (0..n)
        .map(|i| {
            std::process::Command::new("git")
                .args(["clone", "-q", url])
                .arg(dir.join(format!("k{i}-{}", std::process::id())))
                .env("GIT_SSL_CAINFO", ca)
                .env_remove("GIT_DIR")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("git clone")
        })
        .collect();
    let mut failed = 0;
    let mut first = String::new();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        if !out.status.success() {
            failed += 1;
            if first.is_empty() {
                first = String::from_utf8_lossy(&out.stderr).into_owned();
            }
        }
    }
    (failed, first)
}

#[test]
fn clones_started_after_a_member_is_killed_all_succeed() {
    let (_up, mut nodes) = ssh_farm(3, LIMIT);
    let lb = following_lb(gossip_port(&nodes[0]));
    lb.wait_healthy(3, LIMIT);
    let url = lb.https_url("P", "r");
    let ca = lb.ca().display().to_string();
    let work = tempfile::tempdir().expect("tempdir");
    // 20 clones at once, and a member killed while they run.
    let during = {
        let (url, ca, dir) = (url.clone(), ca.clone(), work.path().join("during"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::thread::spawn(move || clones_at_once(&url, &ca, &dir, 20))
    };
    nodes[1].kill9();
    let (failed_during, _) = during.join().expect("clones");
    eprintln!("kill -9 during 20 clones: {failed_during} failed");
    // Clones that start after the kill all succeed, before and after the LB notices.
    let dir = work.path().join("after");
    std::fs::create_dir_all(&dir).expect("dir");
    let (failed, first) = clones_at_once(&url, &ca, &dir, 20);
    assert_eq!(failed, 0, "clones after the kill failed: {first}");
    lb.wait_healthy(2, LIMIT);
    let (failed, first) = clones_at_once(&url, &ca, &work.path().join("later"), 20);
    assert_eq!(failed, 0, "clones after the LB noticed failed: {first}");
}
