//! A member whose clock is 10 s ahead (libfaketime preloaded into its process and the git and
//! ssh processes it runs; the monotonic clock left alone), each member on a host of its own: the
//! others warn about it on `/status`, and nothing breaks — it joins, changes reach every member,
//! clones through the LB all succeed. Needs root, iproute2 and Debian's `faketime`, as CI has.

use std::time::Duration;

use mirrorfarm_tests::farm::main_of;
use mirrorfarm_tests::farm_hosts::HostsFarm;
use mirrorfarm_tests::node::Placement;
use mirrorfarm_tests::traffic::Traffic;
use mirrorfarm_tests::wait_or_explain;

const LIMIT: Duration = Duration::from_secs(120);
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[test]
fn a_member_10_s_ahead_is_warned_about_and_breaks_nothing() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: install Debian's faketime (scripts/setup does)"
    );
    let farm = HostsFarm::start_with(3, LIMIT, "", |i| {
        let env = [
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME", "+10s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ];
        Placement {
            env: env
                .iter()
                .filter(|_| i == 2)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    });
    let skewed = farm.nodes[2].status()["nodeId"]
        .as_str()
        .expect("nodeId")
        .to_owned();
    // It sees the others 10 s behind (the preload took).
    let own = wait_or_explain(
        "the skewed member to see the others' clocks",
        LIMIT,
        || {
            farm.nodes[2].status()["members"]
                .as_array()?
                .iter()
                .find(|m| m["nodeId"] != skewed.as_str())?["clockSkewMs"]
                .as_i64()
        },
        || farm.nodes[2].explain(20),
    );
    assert!(
        (-12_000..=-8_000).contains(&own),
        "the skewed member sees {own} ms"
    );
    for n in &farm.nodes[..2] {
        wait_or_explain(
            "a warning about the skewed member's clock",
            LIMIT,
            || {
                let s = n.status();
                let warned = s["warnings"].as_array()?.iter().any(|w| {
                    w.as_str()
                        .is_some_and(|w| w.contains(&skewed) && w.contains("s off"))
                });
                warned.then_some(())
            },
            || n.explain(20),
        );
        let skew = n.status()["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["nodeId"] == skewed.as_str()))
            .and_then(|m| m["clockSkewMs"].as_i64())
            .expect("the skewed member's clockSkewMs");
        assert!(
            (8_000..=12_000).contains(&skew),
            "clock skew seen: {skew} ms"
        );
    }

    // Nothing breaks: it stays a member, changes reach it, clones through the LB succeed.
    let traffic = Traffic::start_on(
        &farm.clients,
        &farm.lb.https_url("P", "r"),
        &farm.lb.ca(),
        2,
    );
    for (i, n) in farm.nodes.iter().enumerate() {
        let change = farm.up.commit("P", "r", "main", &format!("change {i}"));
        assert_eq!(n.trigger(Some(("P", "r"))), 202);
        for m in &farm.nodes {
            wait_or_explain(
                "the change on every member",
                LIMIT,
                || (main_of(m).as_deref() == Some(change.as_str())).then_some(()),
                || m.explain(40),
            );
        }
    }
    traffic.wait_served(10, LIMIT);
    for n in &farm.nodes {
        let s = n.status();
        assert_eq!(s["memberCount"], 3, "{s}");
        assert_eq!(s["state"], "SYNCHRONIZED", "{s}");
    }
    let (served, failures) = traffic.stop();
    farm.assert_no_failures("a member 10 s ahead", served, &failures);
}
