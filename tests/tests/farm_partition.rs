//! A member cut off from the others (nftables on the loopback: its gossip and farm port, and its
//! own connections to the members and to the upstream) stops serving the state it can no longer
//! vouch for while the rest of the farm moves on, and catches up once the cut is healed.
//! Needs root and `nft` (scripts/setup installs nftables; CI runs as root).

use std::time::Duration;

use mirrorfarm_tests::farm::{advertised_objects_present, main_of, member_props};
use mirrorfarm_tests::netcut::Cut;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, wait_for, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(90);
/// The group the cut-off node runs as, so the filter can tell its connections apart.
const GID: u32 = 47_474;

fn info_refs_status(n: &Node) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg(format!(
            "{}/info/refs?service=git-upload-pack",
            n.http_url("P", "r")
        ))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_member_cut_off_withholds_its_state_and_catches_up_after_the_cut() {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let start = |i: usize, gid| {
        let seed = (i > 0).then_some(ports[0]);
        Node::start_in_group(&up.ssh_url(), &member_props(ports[i], seed), gid)
    };
    let a = start(0, None);
    let s = a.wait_state("AWAITING_AUTHORIZATION", LIMIT);
    up.authorize(s["publicKey"].as_str().expect("publicKey"));
    assert_eq!(a.trigger(Some(("P", "r"))), 202);
    a.wait_state("SYNCHRONIZED", LIMIT);
    let b = start(1, None);
    let c = start(2, Some(GID));
    for n in [&a, &b, &c] {
        n.wait_state("SYNCHRONIZED", LIMIT);
        wait_for("3 members", LIMIT, || {
            (n.status()["memberCount"] == 3).then_some(())
        });
    }
    assert_eq!(info_refs_status(&c), 200);

    let cut = Cut::new(ports[2], GID, &ports[..2], up.sshd_port());
    // Cut off, and unable to confirm its state with the upstream: it stops serving P/r.
    wait_for("the cut-off member withholding P/r", LIMIT, || {
        (info_refs_status(&c) == 503).then_some(())
    });
    let st = c.status();
    assert_eq!(st["ready"], false, "{st}");
    assert_eq!(
        c.repo_status("P", "r").expect("P/r")["state"],
        "CATCHING_UP"
    );
    // The others see it gone and move on without it.
    for n in [&a, &b] {
        wait_for("2 members", LIMIT, || {
            (n.status()["memberCount"] == 2).then_some(())
        });
        assert_eq!(info_refs_status(n), 200);
    }
    let new = up.commit("P", "r", "main", "while one member is cut off");
    assert_eq!(a.trigger(Some(("P", "r"))), 202);
    for n in [&a, &b] {
        wait_or_explain(
            "the change on the connected members",
            LIMIT,
            || (main_of(n).as_deref() == Some(new.as_str())).then_some(()),
            || format!("{}\n{}", a.explain(60), b.explain(60)),
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(info_refs_status(&c), 503, "the cut-off member serves again");

    // Healed: it rejoins, catches up with the farm's generation, and serves again.
    drop(cut);
    let farm = a.repo_status("P", "r").expect("P/r");
    wait_or_explain(
        "the healed member caught up",
        LIMIT,
        || {
            let r = c.repo_status("P", "r")?;
            (r["refsHash"] == farm["refsHash"]
                && r["generation"] == farm["generation"]
                && r["state"] == "SYNCHRONIZED")
                .then_some(())
        },
        || format!("{}\n{}", a.explain(40), c.explain(80)),
    );
    assert_eq!(info_refs_status(&c), 200);
    assert_eq!(main_of(&c).as_deref(), Some(new.as_str()));
    assert_eq!(c.status()["memberCount"], 3);
    advertised_objects_present(&c).expect("advertised objects present");
}
