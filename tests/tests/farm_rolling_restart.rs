//! A rolling restart under traffic: while git clients fetch through the LB without pause, each
//! member in turn gets SIGTERM and is started again; not one request fails (a stopping node
//! drains, the LB takes it out of rotation and retries elsewhere).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirrorfarm_tests::farm::{following_lb, gossip_port, ssh_farm, wait_synchronized_members};
use mirrorfarm_tests::{gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_rolling_restart_under_traffic_fails_no_request() {
    let (_up, mut nodes) = ssh_farm(3, LIMIT);
    let lb = following_lb(gossip_port(&nodes[0]));
    lb.wait_healthy(3, LIMIT);
    let url = lb.https_url("P", "r");
    let ca = lb.ca().display().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let work = tempfile::tempdir().expect("tempdir");
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            let (url, ca, dir) = (url.clone(), ca.clone(), work.path().join(format!("c{c}")));
            std::thread::spawn(move || {
                let env = [("GIT_SSL_CAINFO", ca.as_str())];
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let out = if i.is_multiple_of(2) {
                        let _ = std::fs::remove_dir_all(&dir);
                        let d = dir.to_str().expect("utf8").to_owned();
                        gitc::try_run(None, &["clone", "-q", "--depth", "1", &url, &d], &env)
                    } else {
                        gitc::try_run(None, &["ls-remote", &url], &env)
                    };
                    if out.status.success() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures
                            .lock()
                            .expect("lock")
                            .push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
            })
        })
        .collect();
    let served_at_least = |n: usize| {
        let from = ok.load(Ordering::Relaxed);
        wait_for("requests to go on being served", LIMIT, || {
            (ok.load(Ordering::Relaxed) >= from + n).then_some(())
        });
    };
    served_at_least(10);
    for i in 0..nodes.len() {
        assert_eq!(nodes[i].stop(), Some(0), "member {} stops cleanly", i + 1);
        served_at_least(10);
        nodes[i].spawn();
        wait_synchronized_members(&nodes, LIMIT);
        lb.wait_healthy(3, LIMIT);
        served_at_least(10);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let failures = failures.lock().expect("lock");
    eprintln!(
        "rolling restart: {} requests served, {} failed",
        ok.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rolling restart; first: {}",
        failures.len(),
        failures.len() + ok.load(Ordering::Relaxed),
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
