//! A farm member's disk fills up (its home on a size-limited tmpfs; each member on a host of its
//! own): its syncs fail with a clear status, it serves nothing half-written (whatever it
//! advertises is present), clients of the LB see nothing, and once space returns it catches up
//! with the farm by itself. Needs root (mount, network namespaces), as CI has.

use std::time::Duration;

use mirrorfarm_tests::farm::{advertised_objects_present, main_of};
use mirrorfarm_tests::farm_hosts::{nothing_lost, HostsFarm};
use mirrorfarm_tests::node::Placement;
use mirrorfarm_tests::tmpfs::Tmpfs;
use mirrorfarm_tests::traffic::Traffic;
use mirrorfarm_tests::{gitc, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(180);

#[test]
fn a_members_full_disk_fails_its_syncs_clearly_and_clients_see_nothing() {
    let fs = Tmpfs::mount(64);
    // Short sync interval: retries come every 10 s at most.
    let farm = HostsFarm::start_with(
        3,
        LIMIT,
        "plugin.mirroring.synchronization.interval=10\n",
        |i| Placement {
            home_in: (i == 2).then(|| fs.path.clone()),
            ..Default::default()
        },
    );
    let full = &farm.nodes[2];
    let traffic = Traffic::start_on(
        &farm.clients,
        &farm.lb.https_url("P", "r"),
        &farm.lb.ca(),
        2,
    );
    traffic.wait_served(5, LIMIT);

    let filler = fs.fill();
    // The upstream moves on by more than would fit.
    farm.up.grow("P", "r", 12, 512 * 1024, 99);
    for n in &farm.nodes {
        assert_eq!(n.trigger(Some(("P", "r"))), 202);
    }
    let failed = wait_or_explain(
        "the full member's sync to fail for want of space",
        LIMIT,
        || {
            let r = full.repo_status("P", "r")?;
            (r["lastResult"] == "FAILED").then_some(r)
        },
        || full.explain(40),
    );
    let message = failed["lastMessage"].as_str().unwrap_or_default();
    assert!(
        message.to_ascii_lowercase().contains("space"),
        "the status should say why: {failed}"
    );
    // Nothing half-written: whatever it advertises is whole.
    advertised_objects_present(full).expect("every advertised object present");
    traffic.wait_served(10, LIMIT);

    // Space returns: the member catches up with the upstream by itself (its retries).
    drop(filler);
    let upstream = gitc::refs(&farm.up.repo("P", "r"));
    let main = upstream.get("refs/heads/main").expect("main").clone();
    for n in &farm.nodes {
        wait_or_explain(
            "every member on the upstream's main once space returned",
            LIMIT,
            || (main_of(n).as_deref() == Some(main.as_str())).then_some(()),
            || n.explain(40),
        );
    }
    farm.lb.wait_healthy(3, LIMIT);
    traffic.wait_served(5, LIMIT);
    let (served, failures) = traffic.stop();
    farm.assert_no_failures("a member's disk full", served, &failures);
    for n in &farm.nodes {
        nothing_lost(n);
    }
}
