//! One upstream fetch per change: in a farm of three nodes over an OpenSSH upstream, only each
//! repository's leader fetches from the upstream; the others take the new state from the leader
//! over the farm's authenticated channel. A trigger sent to any node works.

use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(90);

fn props(port: u16, seed: Option<u16>) -> String {
    let seeds = seed
        .map(|s| format!("farm.seeds=127.0.0.1:{s}\n"))
        .unwrap_or_default();
    format!(
        "setup.baseUrl=https://farm.example.com\nmirror.repos=P/r\nmirror.access=anonymous\n\
         farm.secret=correct-horse-battery-staple\nfarm.gossip.address=127.0.0.1\nfarm.gossip.port={port}\n{seeds}"
    )
}

fn main_of(n: &Node) -> Option<String> {
    let out = gitc::try_run(
        None,
        &["ls-remote", &n.http_url("P", "r"), "refs/heads/main"],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().next().map(str::to_owned)
}

#[test]
fn a_farm_fetches_each_change_from_the_upstream_once() {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let p0 = free_udp_port();
    let first = Node::start(&up.ssh_url(), &props(p0, None));
    let s = first.wait_state("AWAITING_AUTHORIZATION", LIMIT);
    up.authorize(s["publicKey"].as_str().expect("key"));
    assert_eq!(first.trigger(Some(("P", "r"))), 202);
    first.wait_state("SYNCHRONIZED", LIMIT);
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(Node::start(
            &up.ssh_url(),
            &props(free_udp_port(), Some(p0)),
        ));
    }
    for n in &nodes {
        n.wait_state("SYNCHRONIZED", LIMIT);
        wait_for("3 members", LIMIT, || {
            (n.status()["memberCount"] == 3).then_some(())
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = up.accepted_sessions();
    for (i, n) in nodes.iter().enumerate() {
        let new = up.commit("P", "r", "main", &format!("change {i}"));
        assert_eq!(n.trigger(Some(("P", "r"))), 202);
        for m in &nodes {
            wait_for("the change on every node", LIMIT, || {
                (main_of(m).as_deref() == Some(new.as_str())).then_some(())
            });
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let fetched = up.accepted_sessions() - before;
    assert_eq!(
        fetched, 3,
        "3 changes cost the upstream {fetched} SSH sessions"
    );
    // Every member shows every member serving the same ref state (generation) of the repository.
    for n in &nodes {
        let s = wait_for("one ref state on every member", LIMIT, || {
            let s = n.status();
            let states: std::collections::BTreeSet<String> = s["members"]
                .as_array()?
                .iter()
                .filter_map(|m| m["repoStates"]["P/r"].as_str().map(str::to_owned))
                .collect();
            (states.len() == 1 && s["members"].as_array()?.len() == 3).then_some(s)
        });
        assert_eq!(
            s["members"][0]["repoStates"]["P/r"],
            s["repos"][0]["refsHash"]
        );
    }
}
