//! Farms of test nodes: the properties of a member (mirroring `P/r`), and a farm of nodes over an
//! OpenSSH upstream whose key has been authorized.

use std::time::Duration;

use crate::node::Node;
use crate::upstream::{Shape, Upstream};
use crate::{free_udp_port, gitc, wait_for};

/// The farm secret of test farms.
pub const SECRET: &str = "correct-horse-battery-staple";

/// A member's properties: mirrors `P/r`, gossips at 127.0.0.1:`port`, joins through `seed`.
pub fn member_props(port: u16, seed: Option<u16>) -> String {
    let seeds = seed
        .map(|s| format!("farm.seeds=127.0.0.1:{s}\n"))
        .unwrap_or_default();
    format!(
        "setup.baseUrl=https://farm.example.com\nmirror.repos=P/r\nmirror.access=anonymous\nfarm.secret={SECRET}\n\
         farm.gossip.address=127.0.0.1\nfarm.gossip.port={port}\n{seeds}"
    )
}

/// Starts a member on `upstream` (URL).
pub fn member(upstream: &str, port: u16, seed: Option<u16>) -> Node {
    Node::start(upstream, &member_props(port, seed))
}

/// A farm of `n` synchronized members over a fresh OpenSSH upstream holding `P/r`: the first
/// node's farm key is authorized upstream, the others join it; returns when every member sees
/// all `n`.
pub fn ssh_farm(n: usize, limit: Duration) -> (Upstream, Vec<Node>) {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let p0 = free_udp_port();
    let first = member(&up.ssh_url(), p0, None);
    let s = first.wait_state("AWAITING_AUTHORIZATION", limit);
    up.authorize(s["publicKey"].as_str().expect("publicKey"));
    assert_eq!(first.trigger(Some(("P", "r"))), 202);
    first.wait_state("SYNCHRONIZED", limit);
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(member(&up.ssh_url(), free_udp_port(), Some(p0)));
    }
    for node in &nodes {
        node.wait_state("SYNCHRONIZED", limit);
        wait_for(&format!("{n} members"), limit, || {
            (node.status()["memberCount"] == n as u64).then_some(())
        });
    }
    (up, nodes)
}

/// The commit `refs/heads/main` of `P/r` names on a node, as `git ls-remote` over HTTP shows it.
pub fn main_of(node: &Node) -> Option<String> {
    let out = gitc::try_run(
        None,
        &["ls-remote", &node.http_url("P", "r"), "refs/heads/main"],
        &[],
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
}
