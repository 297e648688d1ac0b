//! The upstream unreachable for two minutes (its host cut off from every member: packets dropped
//! both ways, so each fetch waits out its connect timeout) while pushes keep landing on it. The
//! farm keeps serving what it has, every member's `/status` says `STALE` with the age, and when
//! the upstream is back the farm catches up by itself with one upstream fetch for the backlog,
//! then one per change. Needs root, iproute2 and nftables, as CI has.

use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::main_of;
use mirrorfarm_tests::farm_hosts::{nothing_lost, HostsFarm};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::topology::Cut;
use mirrorfarm_tests::traffic::Traffic;
use mirrorfarm_tests::wait_or_explain;

const LIMIT: Duration = Duration::from_secs(240);
const OUTAGE: Duration = Duration::from_secs(120);

fn explain_all(farm: &HostsFarm) -> String {
    farm.nodes
        .iter()
        .map(|n| n.explain(30))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every member serves `commit` as main and is SYNCHRONIZED, not STALE.
fn caught_up(nodes: &[Node], commit: &str) -> bool {
    nodes.iter().all(|n| {
        let s = n.status();
        main_of(n).as_deref() == Some(commit)
            && s["state"] == "SYNCHRONIZED"
            && s["staleSeconds"].is_null()
    })
}

#[test]
fn the_farm_serves_through_an_upstream_outage_and_catches_up_with_one_fetch_per_change() {
    // No periodic syncs during the test: every upstream fetch is a retry or a trigger's.
    let farm = HostsFarm::start(3, LIMIT, "plugin.mirroring.synchronization.interval=3600\n");
    let before = main_of(&farm.nodes[0]).expect("main");
    let traffic = Traffic::start_on(
        &farm.clients,
        &farm.lb.https_url("P", "r"),
        &farm.lb.ca(),
        2,
    );
    traffic.wait_served(5, LIMIT);

    let members: Vec<_> = farm.nodes.iter().map(|n| n.host().ip).collect();
    let cut = Cut::new(&farm.topo.host("upstream"), &members);
    let cut_at = Instant::now();
    // Pushes land on the upstream; webhooks tell the farm (they reach it: only the farm's way to
    // the upstream is cut).
    let first = farm
        .up
        .commit("P", "r", "main", "pushed during the outage 1");
    for n in &farm.nodes {
        assert_eq!(n.trigger(Some(("P", "r"))), 202);
    }
    wait_or_explain(
        "every member to say STALE",
        LIMIT,
        || {
            farm.nodes
                .iter()
                .all(|n| {
                    let s = n.status();
                    s["state"] == "STALE" && s["staleSeconds"].as_u64().is_some()
                })
                .then_some(())
        },
        || explain_all(&farm),
    );
    let second = farm
        .up
        .commit("P", "r", "main", "pushed during the outage 2");
    assert_eq!(farm.nodes[1].trigger(Some(("P", "r"))), 202);
    // Two minutes without the upstream: the farm serves what it had, and says how old it is.
    while cut_at.elapsed() < OUTAGE {
        traffic.wait_served(2, LIMIT);
        for n in &farm.nodes {
            let s = n.status();
            assert_eq!(s["state"], "STALE", "{}", n.explain(30));
            assert_eq!(main_of(n).as_deref(), Some(before.as_str()));
        }
    }
    for n in &farm.nodes {
        let s = n.status();
        let age = s["staleSeconds"].as_u64().expect("staleSeconds");
        assert!(age >= 100, "staleSeconds {age} after two minutes: {s}");
    }
    assert_ne!(first, second);

    // Back: the farm catches up by itself (its retries), with one upstream fetch for it all.
    let sessions = farm.up.command_sessions();
    drop(cut);
    wait_or_explain(
        "the farm to catch up after the outage",
        LIMIT,
        || caught_up(&farm.nodes, &second).then_some(()),
        || explain_all(&farm),
    );
    let catch_up = farm.up.command_sessions() - sessions;
    // And one fetch per change after.
    let sessions = farm.up.command_sessions();
    let third = farm.up.commit("P", "r", "main", "after the outage");
    assert_eq!(farm.nodes[2].trigger(Some(("P", "r"))), 202);
    wait_or_explain(
        "the change after the outage on every member",
        LIMIT,
        || caught_up(&farm.nodes, &third).then_some(()),
        || explain_all(&farm),
    );
    let after = farm.up.command_sessions() - sessions;
    let (served, failures) = traffic.stop();
    eprintln!(
        "upstream outage of {OUTAGE:?}: {served} requests through the LB, {} failed; \
         catch-up cost {catch_up} upstream fetches, the next change {after}",
        failures.len()
    );
    farm.assert_no_failures("upstream outage", served, &failures);
    assert_eq!(catch_up, 1, "upstream fetches to catch up");
    assert_eq!(after, 1, "upstream fetches for one change after the outage");
    for n in &farm.nodes {
        nothing_lost(n);
    }
}
