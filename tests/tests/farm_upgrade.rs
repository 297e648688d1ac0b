//! A rolling upgrade under clone traffic through the LB: each member in turn stops and comes back
//! as a newer patch version (the debug build reports `MIRRORFARM_TEST_VERSION` as its version,
//! so one binary plays both), while three git clients loop on ls-remote, shallow clones and
//! fetches. Mixed versions within one minor are shown (`/status` `members[].version`, a warning,
//! the admin page) and allowed (every member stays counted); no request fails; at the end every
//! member runs the new version and the warning is gone.

use std::time::Duration;

use mirrorfarm_tests::farm::{following_lb, gossip_port, ssh_farm, wait_synchronized_members};
use mirrorfarm_tests::traffic::Traffic;
use mirrorfarm_tests::{wait_for, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(120);
const NEW: &str = "0.1.99";

fn versions(s: &serde_json::Value) -> Vec<String> {
    s["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["version"].as_str().map(str::to_owned))
        .collect()
}

fn mixed_warning(s: &serde_json::Value) -> Option<String> {
    s["warnings"]
        .as_array()?
        .iter()
        .filter_map(|w| w.as_str())
        .find(|w| w.contains("rolling upgrade"))
        .map(str::to_owned)
}

#[test]
fn a_rolling_upgrade_under_clone_traffic_fails_no_request() {
    let (_up, mut nodes) = ssh_farm(3, LIMIT);
    let old = nodes[0].status()["version"]
        .as_str()
        .expect("version")
        .to_owned();
    assert_ne!(old, NEW);
    let lb = following_lb(gossip_port(&nodes[0]));
    lb.wait_healthy(3, LIMIT);
    let traffic = Traffic::start(&lb.https_url("P", "r"), &lb.ca(), 3);
    traffic.wait_served(10, LIMIT);

    for i in 0..nodes.len() {
        assert_eq!(nodes[i].stop(), Some(0), "member {} stops cleanly", i + 1);
        traffic.wait_served(5, LIMIT);
        nodes[i].set_env("MIRRORFARM_TEST_VERSION", NEW);
        nodes[i].spawn();
        wait_synchronized_members(&nodes, LIMIT);
        lb.wait_healthy(3, LIMIT);
        assert_eq!(nodes[i].status()["version"], NEW);
        if i + 1 < nodes.len() {
            // Mid-upgrade: both versions shown, a warning that says it is allowed, all counted.
            let other = &nodes[(i + 1) % nodes.len()];
            let s = wait_or_explain(
                "the mixed versions to be shown",
                LIMIT,
                || {
                    let s = other.status();
                    let v = versions(&s);
                    (v.contains(&old) && v.contains(&NEW.to_owned())).then_some(s)
                },
                || other.explain(30),
            );
            assert_eq!(s["memberCount"], 3, "{s}");
            let w = mixed_warning(&s).unwrap_or_else(|| panic!("no mixed-version warning: {s}"));
            assert!(
                w.contains("allowed") && w.contains(NEW) && w.contains(&old),
                "{w}"
            );
        }
        traffic.wait_served(10, LIMIT);
    }
    // Done: one version everywhere, no warning.
    for n in &nodes {
        wait_for("every member to see the new version alone", LIMIT, || {
            let s = n.status();
            (versions(&s).iter().all(|v| v == NEW) && mixed_warning(&s).is_none()).then_some(())
        });
    }
    let (served, failures) = traffic.stop();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the upgrade:\n{}",
        failures.len(),
        served + failures.len(),
        failures.join("\n---\n")
    );
    assert!(served >= 40, "traffic ran throughout ({served})");
}
