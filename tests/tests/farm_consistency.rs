//! One consistent state: protocol-v0 fetches through the LB, whose requests land on different
//! members (no cookie: the LB rotates among idle nodes), never fail while the repository changes
//! under them; every member advertises only objects it holds, and all end on one generation.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirrorfarm_tests::farm::{advertised_objects_present, file_farm, following_lb, main_of};
use mirrorfarm_tests::{gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(90);
const CHANGES: usize = 25;

#[test]
fn v0_fetches_through_the_lb_never_fail_while_the_repository_changes() {
    let (up, nodes, p0) = file_farm(3, LIMIT);
    let lb = following_lb(p0);
    lb.wait_healthy(3, LIMIT);
    let env = lb.git_env();
    let work = tempfile::tempdir().expect("tempdir");
    let stop = Arc::new(AtomicBool::new(false));
    let fetched = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut fetchers = Vec::new();
    for i in 0..3 {
        let dir = work.path().join(format!("c{i}"));
        lb.clone_repo("P", "r", &dir, &["protocol.version=0"]);
        let (env, stop, fetched, failures) =
            (env.clone(), stop.clone(), fetched.clone(), failures.clone());
        fetchers.push(std::thread::spawn(move || {
            let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let deadline = std::time::Instant::now() + LIMIT * 2;
            while !stop.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                let out = gitc::try_run(
                    Some(&dir),
                    &[
                        "-c",
                        "protocol.version=0",
                        "fetch",
                        "-q",
                        "--prune",
                        "origin",
                    ],
                    &envs,
                );
                if out.status.success() {
                    fetched.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures
                        .lock()
                        .expect("failures lock")
                        .push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
            }
        }));
    }
    let mut last = String::new();
    for i in 0..CHANGES {
        last = up.commit("P", "r", "main", &format!("change {i}"));
        if i % 5 == 0 {
            up.commit("P", "r", &format!("topic-{i}"), &format!("topic {i}"));
        }
        assert_eq!(nodes[i % 3].trigger(Some(("P", "r"))), 202);
        std::thread::sleep(Duration::from_millis(250));
    }
    for n in &nodes {
        wait_for("the last change on every member", LIMIT, || {
            (main_of(n).as_deref() == Some(last.as_str())).then_some(())
        });
    }
    // Let the fetchers see the final state too, then stop them.
    let seen = fetched.load(Ordering::Relaxed);
    wait_for("more fetches after the last change", LIMIT, || {
        (fetched.load(Ordering::Relaxed) >= seen + 6).then_some(())
    });
    stop.store(true, Ordering::Release);
    for f in fetchers {
        f.join().expect("fetcher thread");
    }
    let failures = failures.lock().expect("failures lock");
    assert!(
        failures.is_empty(),
        "{} of {} fetches failed; first: {}",
        failures.len(),
        failures.len() + fetched.load(Ordering::Relaxed),
        failures[0]
    );
    assert!(
        fetched.load(Ordering::Relaxed) >= 20,
        "too few fetches ran during the changes"
    );
    for i in 0..3 {
        let refs = gitc::refs(&work.path().join(format!("c{i}")));
        assert_eq!(
            refs.get("refs/remotes/origin/main"),
            Some(&last),
            "fetcher {i}"
        );
    }
    // Every member advertises only what it holds, and all serve one generation.
    let mut generations = std::collections::BTreeSet::new();
    for n in &nodes {
        advertised_objects_present(n).expect("advertised objects present");
        let r = n.repo_status("P", "r").expect("P/r on status");
        generations.insert((r["generation"].as_u64(), r["refsHash"].to_string()));
    }
    assert_eq!(generations.len(), 1, "{generations:?}");
}
