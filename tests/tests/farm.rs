//! Farm membership by gossip: three nodes find each other (memberCount 3 everywhere), a node
//! whose configuration differs is refused with the differing key named, a killed node leaves the
//! member list quickly and comes back when restarted; farm keys are validated like the others.

use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::member_props;
use mirrorfarm_tests::node::{properties, run_expecting_exit, Node};
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_port, free_udp_port, wait_for};

const LIMIT: Duration = Duration::from_secs(60);
const SECRET: &str = "farm.secret=correct-horse-battery-staple\n";

/// Starts a node that asks the member at `seed` to join, and returns how it exited.
fn try_join(upstream: &str, secret: &str, seed: u16) -> (Option<i32>, String) {
    let home = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "setup.baseUrl=https://farm.example.com\nmirror.repos=P/r\nmirror.access=anonymous\n{secret}\
         farm.gossip.address=127.0.0.1\nfarm.gossip.port={}\nfarm.seeds=127.0.0.1:{seed}\n",
        free_udp_port()
    );
    std::fs::write(
        home.path().join("mirrorfarm.properties"),
        properties(upstream, free_port(), free_port(), &extra),
    )
    .expect("write");
    let res = run_expecting_exit(home.path(), Duration::from_secs(40));
    assert!(
        !home.path().join("farm/ca.key").exists(),
        "a refused node took the farm CA"
    );
    res
}

fn member_count(n: &Node) -> u64 {
    n.status()["memberCount"].as_u64().unwrap_or(0)
}

#[test]
fn nodes_find_each_other_refuse_mismatches_and_notice_deaths() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let ports: Vec<u16> = (0..3).map(|_| free_udp_port()).collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            Node::start(
                &up.file_url(),
                &member_props(ports[i], (i > 0).then_some(ports[0])),
            )
        })
        .collect();
    for n in &nodes {
        wait_for("3 members", LIMIT, || (member_count(n) == 3).then_some(()));
    }
    let s = nodes[1].status();
    let ids: Vec<&str> = s["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["nodeId"].as_str())
        .collect();
    for n in &nodes {
        let id = n.status()["nodeId"].as_str().expect("id").to_owned();
        assert!(ids.contains(&id.as_str()), "{id} missing from {ids:?}");
    }
    assert!(s["members"][0]["address"].is_string() && s["members"][0]["version"].is_string());
    let status_text = s.to_string();
    assert!(
        !status_text.contains("correct-horse"),
        "the secret leaked into /status"
    );

    // One identity: every member has the farm ID and the upstream key of the first node.
    let first = nodes[0].status();
    for n in &nodes[1..] {
        let s = n.status();
        assert_eq!(s["farmId"], first["farmId"], "farm ID not shared");
        assert_eq!(
            s["publicKey"], first["publicKey"],
            "upstream key not shared"
        );
    }

    // A node mirroring another upstream is refused when it asks to join, naming the key.
    let other = Upstream::new();
    other.create("P", "r", &Shape::small());
    let (code, err) = try_join(&other.file_url(), SECRET, ports[0]);
    assert_eq!(code, Some(69), "{err}");
    assert!(
        err.contains("refused") && err.contains("plugin.mirroring.upstream.url"),
        "{err}"
    );
    // A node with the wrong secret gets nothing, and the member logs it.
    let (code, err) = try_join(
        &up.file_url(),
        "farm.secret=not-the-right-secret-at-all\n",
        ports[0],
    );
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("wrong farm secret"), "{err}");
    // The member logs the refusal right after answering it.
    wait_for("the member to log the refusal", LIMIT, || {
        nodes[0]
            .log()
            .contains("did not prove the farm secret")
            .then_some(())
    });

    // A member whose configuration later differs is refused by the others, with the key named.
    nodes[1].stop();
    let props = nodes[1].home().join("mirrorfarm.properties");
    let text = std::fs::read_to_string(&props)
        .expect("read")
        .replace("mirror.repos=P/r", "mirror.repos=P/r,P/other");
    std::fs::write(&props, text).expect("write");
    nodes[1].spawn();
    let s = wait_for("the changed member to be refused", LIMIT, || {
        let s = nodes[0].status();
        (s["refusedMembers"].as_array()?.len() == 1).then_some(s)
    });
    assert_eq!(s["refusedMembers"][0]["differingKeys"][0], "mirror.repos");
    // (the stopped generation of that node may linger for a moment before it is declared dead)
    wait_for("2 agreeing members", LIMIT, || {
        (member_count(&nodes[0]) == 2).then_some(())
    });
    assert!(nodes[0]
        .log()
        .contains("refusing a node whose farm configuration differs"));
    nodes[1].stop();
    let text = std::fs::read_to_string(&props)
        .expect("read")
        .replace("mirror.repos=P/r,P/other", "mirror.repos=P/r");
    std::fs::write(&props, text).expect("write");
    nodes[1].spawn();
    wait_for("3 members", LIMIT, || {
        (member_count(&nodes[0]) == 3).then_some(())
    });

    // A dead node leaves the member list; it comes back when restarted.
    nodes[2].kill9();
    let t = Instant::now();
    wait_for("the dead node to leave", LIMIT, || {
        (member_count(&nodes[0]) == 2 && member_count(&nodes[1]) == 2).then_some(())
    });
    eprintln!("dead node noticed after {:?}", t.elapsed());
    nodes[2].spawn();
    for n in &nodes {
        wait_for("3 members again", LIMIT, || {
            (member_count(n) == 3).then_some(())
        });
    }
}

#[test]
fn farm_keys_are_validated() {
    let cases = [
        ("farm.seeds=127.0.0.1:7900\n", "farm.seeds", "needs farm.secret"),
        ("farm.secret=short\n", "farm.secret", "at least 16 characters"),
        ("farm.secret=0123456789abcdef0123\nfarm.gossip.address=0.0.0.0\n", "farm.gossip.address", "reach"),
        ("farm.secret=0123456789abcdef0123\nfarm.gossip.address=127.0.0.1\nfarm.seeds=nohostport\n", "farm.seeds", "host:port"),
    ];
    for (extra, key, msg) in cases {
        let home = tempfile::tempdir().expect("tempdir");
        let text = properties(
            "file:///srv/git",
            free_port(),
            free_port(),
            &format!("mirror.repos=P/r\n{extra}"),
        );
        std::fs::write(home.path().join("mirrorfarm.properties"), text).expect("write");
        let (code, err) = run_expecting_exit(home.path(), Duration::from_secs(20));
        assert_eq!(code, Some(64), "{key}: {err}");
        assert!(err.contains(key) && err.contains(msg), "{key}: {err}");
        assert!(
            !err.contains("0123456789abcdef0123") && !err.contains("short\""),
            "a secret was printed: {err}"
        );
    }
}
