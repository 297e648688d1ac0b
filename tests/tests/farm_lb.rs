//! The LB following a farm by gossip: it proves the farm secret, verifies each member over TLS
//! against the farm CA before routing to it, adds members that join and drops members that die —
//! without a restart, and takes a member back when it returns. An LB with the wrong secret gets
//! nothing and stops.

use std::process::Command;
use std::time::Duration;

use mirrorfarm_tests::farm::{following_lb, member};
use mirrorfarm_tests::lb::Lb;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{bin, free_port, free_udp_port, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

fn node(up: &Upstream, port: u16, seed: Option<u16>) -> Node {
    member(&up.file_url(), port, seed)
}

fn backends(lb: &Lb) -> (u64, usize) {
    let s = lb.admin_status();
    (
        s["healthyBackends"].as_u64().unwrap_or(0),
        s["backends"].as_array().map(Vec::len).unwrap_or(0),
    )
}

#[test]
fn the_lb_follows_the_farm() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let p0 = free_udp_port();
    let mut nodes = vec![node(&up, p0, None)];
    nodes.push(node(&up, free_udp_port(), Some(p0)));
    for n in &nodes {
        n.wait_state("SYNCHRONIZED", LIMIT);
    }
    let lb = following_lb(p0);
    wait_for("2 verified, healthy backends", LIMIT, || {
        (backends(&lb) == (2, 2)).then_some(())
    });
    let dest = tempfile::tempdir().expect("tempdir");
    lb.clone_repo("P", "r", &dest.path().join("c"), &[]);
    // The LB is not counted as a member by the nodes.
    assert_eq!(nodes[0].status()["memberCount"], 2);

    // A node joining appears without a restart; a node dying goes.
    nodes.push(node(&up, free_udp_port(), Some(p0)));
    nodes[2].wait_state("SYNCHRONIZED", LIMIT);
    wait_for("3 backends", LIMIT, || {
        (backends(&lb) == (3, 3)).then_some(())
    });
    nodes[1].kill9();
    wait_for("the dead member dropped", LIMIT, || {
        (backends(&lb).1 == 2).then_some(())
    });
    lb.clone_repo("P", "r", &dest.path().join("d"), &[]);
    // The dead member comes back: it rejoins and is routed to again.
    nodes[1].spawn();
    nodes[1].wait_state("SYNCHRONIZED", LIMIT);
    wait_for("the member back in rotation", LIMIT, || {
        (backends(&lb) == (3, 3)).then_some(())
    });
}

#[test]
fn an_lb_with_the_wrong_secret_gets_nothing() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let p0 = free_udp_port();
    let member = node(&up, p0, None);
    member.wait_state("SYNCHRONIZED", LIMIT);
    let home = tempfile::tempdir().expect("tempdir");
    let props = format!(
        "lb.hostname=localhost\nlb.https.address=127.0.0.1\nlb.https.port={}\nlb.ssh.address=127.0.0.1\nlb.ssh.port={}\n\
         lb.admin.port={}\nlb.farm.seeds=127.0.0.1:{p0}\nlb.farm.secret=this-is-not-the-secret\n\
         lb.farm.gossip.address=127.0.0.1\nlb.farm.gossip.port={}\n",
        free_port(),
        free_port(),
        free_port(),
        free_udp_port()
    );
    std::fs::write(home.path().join("mirrorfarm-lb.properties"), props).expect("write");
    let out = Command::new(bin())
        .args(["lb", "--home"])
        .arg(home.path())
        .output()
        .expect("run lb");
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong farm secret"), "{err}");
    // The member logs the refusal right after answering it.
    wait_for("the member to log the refusal", LIMIT, || {
        member
            .log()
            .contains("did not prove the farm secret")
            .then_some(())
    });
}

/// The LB reports itself to every member over the farm channel: its hostname, certificate and
/// backends show on each member's /status; a member whose `setup.baseUrl` names another host
/// than `lb.hostname` (here farm.example.com against localhost) is flagged there and in the LB's
/// log.
#[test]
fn the_lb_reports_to_the_farm_and_a_misnamed_base_url_is_flagged() {
    let (_up, nodes, p0) = mirrorfarm_tests::farm::file_farm(2, LIMIT);
    let lb = following_lb(p0);
    lb.wait_healthy(2, LIMIT);
    for n in &nodes {
        let s = wait_for("the LB's report on the member", LIMIT, || {
            let s = n.status();
            let lbs = s["loadBalancers"].as_array()?;
            let healthy = lbs.first()?["backends"]
                .as_array()?
                .iter()
                .filter(|b| b["healthy"] == true)
                .count();
            (healthy == 2).then_some(s)
        });
        let lb_doc = &s["loadBalancers"][0];
        assert_eq!(lb_doc["hostname"], "localhost");
        assert_eq!(lb_doc["httpsPort"], lb.https);
        assert!(
            lb_doc["certificateDaysLeft"].as_i64() > Some(30),
            "{lb_doc}"
        );
        assert!(lb_doc["certificateSubject"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        let warned = s["warnings"].as_array().expect("warnings").iter().any(|w| {
            w.as_str()
                .is_some_and(|w| w.contains("farm.example.com") && w.contains("localhost"))
        });
        assert!(warned, "{}", s["warnings"]);
    }
    assert!(
        lb.log().contains("names another host than lb.hostname"),
        "{}",
        lb.log()
    );
}
