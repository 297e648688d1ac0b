//! Partitions, each member on a host of its own (network namespaces made by the test; the cut is
//! nftables dropping packets in a host's namespace, both ways: nothing answers, as with a pulled
//! cable). Needs root, iproute2 and nftables, as CI has.
//!
//! - A member cut off from the farm, the upstream and the LB stops serving the state it can no
//!   longer vouch for, the others move on without it and the LB takes it out; users cloning
//!   through the LB see nothing; healed, it catches up and serves again, nothing lost.
//! - The LB cut off from one member: that member stays in the farm, the LB takes it out of
//!   rotation, clones through the LB all succeed; healed, it is taken back.

use std::time::Duration;

use mirrorfarm_tests::farm::main_of;
use mirrorfarm_tests::farm_hosts::{nothing_lost, HostsFarm};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::topology::Cut;
use mirrorfarm_tests::traffic::Traffic;
use mirrorfarm_tests::{wait_for, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(120);

fn info_refs_status(n: &Node) -> u16 {
    info_refs(n).0
}

/// The status of a ref advertisement, and its `x-mirrorfarm-elsewhere` header (the LB sends a
/// 503 carrying it to another member).
fn info_refs(n: &Node) -> (u16, Option<String>) {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!(
            "{}/info/refs?service=git-upload-pack",
            n.http_url("P", "r")
        ))
        .send()
        .map(|r| {
            let why = r
                .headers()
                .get("x-mirrorfarm-elsewhere")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (r.status().as_u16(), why)
        })
        .unwrap_or((0, None))
}

fn member_count(n: &Node) -> u64 {
    n.status()["memberCount"].as_u64().unwrap_or(0)
}

#[test]
fn a_member_host_cut_off_withholds_its_state_and_catches_up_after_the_cut() {
    let farm = HostsFarm::start(3, LIMIT, "");
    let (a, b, c) = (&farm.nodes[0], &farm.nodes[1], &farm.nodes[2]);
    assert_eq!(info_refs_status(c), 200);
    let traffic = Traffic::start_on(
        &farm.clients,
        &farm.lb.https_url("P", "r"),
        &farm.lb.ca(),
        2,
    );
    traffic.wait_served(5, LIMIT);

    // Cut off from everything but the test's own monitoring.
    let others: Vec<_> = ["m1", "m2", "upstream", "lb", "clients"]
        .iter()
        .map(|h| farm.topo.host(h).ip)
        .collect();
    let cut = Cut::new(c.host(), &others);
    wait_or_explain(
        "the cut-off member withholding P/r",
        LIMIT,
        || (info_refs_status(c) == 503).then_some(()),
        || c.explain(60),
    );
    assert_eq!(info_refs(c), (503, Some("withheld".to_owned())));
    assert_eq!(c.status()["ready"], false);
    assert_eq!(
        c.repo_status("P", "r").expect("P/r")["state"],
        "CATCHING_UP"
    );
    for n in [a, b] {
        wait_for("2 members", LIMIT, || (member_count(n) == 2).then_some(()));
    }
    farm.lb.wait_healthy(2, LIMIT);
    let new = farm
        .up
        .commit("P", "r", "main", "while one member is cut off");
    assert_eq!(a.trigger(Some(("P", "r"))), 202);
    for n in [a, b] {
        wait_or_explain(
            "the change on the connected members",
            LIMIT,
            || (main_of(n).as_deref() == Some(new.as_str())).then_some(()),
            || format!("{}\n{}", a.explain(60), b.explain(60)),
        );
    }
    traffic.wait_served(5, LIMIT);

    // Healed: it rejoins, catches up with the farm's generation, serves again.
    drop(cut);
    let farm_state = a.repo_status("P", "r").expect("P/r");
    wait_or_explain(
        "the healed member caught up",
        LIMIT,
        || {
            let r = c.repo_status("P", "r")?;
            (r["refsHash"] == farm_state["refsHash"]
                && r["generation"] == farm_state["generation"]
                && r["state"] == "SYNCHRONIZED")
                .then_some(())
        },
        || format!("{}\n{}", a.explain(40), c.explain(80)),
    );
    assert_eq!(info_refs_status(c), 200);
    assert_eq!(main_of(c).as_deref(), Some(new.as_str()));
    // Catching up needs one member; its failure detector may revive the other a moment later.
    wait_for("3 members seen by the healed member", LIMIT, || {
        (member_count(c) == 3).then_some(())
    });
    farm.lb.wait_healthy(3, LIMIT);
    traffic.wait_served(5, LIMIT);
    let (served, failures) = traffic.stop();
    farm.assert_no_failures("member cut off", served, &failures);
    for n in &farm.nodes {
        nothing_lost(n);
    }
}

#[test]
fn the_lb_cut_off_from_one_member_takes_it_out_and_back() {
    let farm = HostsFarm::start(3, LIMIT, "");
    let traffic = Traffic::start_on(
        &farm.clients,
        &farm.lb.https_url("P", "r"),
        &farm.lb.ca(),
        2,
    );
    traffic.wait_served(5, LIMIT);
    let cut = Cut::new(farm.nodes[2].host(), &[farm.topo.host("lb").ip]);
    farm.lb.wait_healthy(2, LIMIT);
    traffic.wait_served(10, LIMIT);
    // The member itself is fine: still in the farm, still serving what it vouches for.
    assert_eq!(member_count(&farm.nodes[2]), 3);
    assert_eq!(info_refs_status(&farm.nodes[2]), 200);
    drop(cut);
    farm.lb.wait_healthy(3, LIMIT);
    traffic.wait_served(10, LIMIT);
    let (served, failures) = traffic.stop();
    farm.assert_no_failures("LB cut from a member", served, &failures);
    for n in &farm.nodes {
        nothing_lost(n);
    }
}
