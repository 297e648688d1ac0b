//! Farms of test nodes: the properties of a member (mirroring `P/r`), and a farm of nodes over an
//! OpenSSH upstream whose key has been authorized.

use std::time::Duration;

use crate::lb::Lb;
use crate::node::{Node, Placement};
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
    ssh_farm_with(n, limit, "")
}

/// [`ssh_farm`] with `extra` properties on every member.
pub fn ssh_farm_with(n: usize, limit: Duration, extra: &str) -> (Upstream, Vec<Node>) {
    ssh_farm_placed(n, limit, extra, &Placement::default())
}

/// [`ssh_farm_with`], each member's home and binary placed as `placement` says.
pub fn ssh_farm_placed(
    n: usize,
    limit: Duration,
    extra: &str,
    placement: &Placement,
) -> (Upstream, Vec<Node>) {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let nodes = ssh_farm_on(&up, n, limit, extra, placement);
    (up, nodes)
}

/// A farm of `n` synchronized members over `up` (holding `P/r`, its sshd started); `extra` may
/// set `mirror.access` (members are anonymous otherwise) and `setup.baseUrl`.
pub fn ssh_farm_on(
    up: &Upstream,
    n: usize,
    limit: Duration,
    extra: &str,
    placement: &Placement,
) -> Vec<Node> {
    let p0 = free_udp_port();
    let member = |url: &str, port, seed| {
        let mut base = member_props(port, seed);
        if extra.contains("mirror.access=") {
            base = base.replace("mirror.access=anonymous\n", "");
        }
        if extra.contains("setup.baseUrl=") {
            base = base.replace("setup.baseUrl=https://farm.example.com\n", "");
        }
        let props = format!("{base}{extra}");
        Node::start_placed(url, &props, placement)
    };
    let first = member(&up.ssh_url(), p0, None);
    let s = first.wait_state("AWAITING_AUTHORIZATION", limit);
    up.authorize(s["publicKey"].as_str().expect("publicKey"));
    assert_eq!(first.trigger(Some(("P", "r"))), 202);
    first.wait_state("SYNCHRONIZED", limit);
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(member(&up.ssh_url(), free_udp_port(), Some(p0)));
    }
    wait_synchronized_members(&nodes, limit);
    nodes
}

/// The gossip port a member's properties name.
pub fn gossip_port(node: &Node) -> u16 {
    std::fs::read_to_string(node.home().join("mirrorfarm.properties"))
        .expect("properties")
        .lines()
        .find_map(|l| l.strip_prefix("farm.gossip.port="))
        .and_then(|p| p.trim().parse().ok())
        .expect("farm.gossip.port")
}

/// Waits until every node is `SYNCHRONIZED` and counts all of them as members.
pub fn wait_synchronized_members(nodes: &[Node], limit: Duration) {
    let n = nodes.len() as u64;
    for node in nodes {
        node.wait_state("SYNCHRONIZED", limit);
        wait_for(&format!("{n} members"), limit, || {
            (node.status()["memberCount"] == n).then_some(())
        });
    }
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

/// A load balancer following the farm whose member gossips at 127.0.0.1:`seed` (its own gossip
/// address left for it to learn from the seed).
pub fn following_lb(seed: u16) -> Lb {
    following_lb_with(seed, "")
}

/// [`following_lb`] with `extra` LB properties.
pub fn following_lb_with(seed: u16, extra: &str) -> Lb {
    let extra = format!(
        "lb.farm.seeds=127.0.0.1:{seed}\nlb.farm.secret={SECRET}\nlb.farm.gossip.port={}\n{extra}",
        free_udp_port()
    );
    Lb::start("", &extra)
}

/// A farm of `n` synchronized members over a fresh `file://` upstream holding `P/r`, and the
/// gossip port of the first; returns when every member sees all `n`.
pub fn file_farm(n: usize, limit: Duration) -> (Upstream, Vec<Node>, u16) {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let p0 = free_udp_port();
    let mut nodes = vec![member(&up.file_url(), p0, None)];
    for _ in 1..n {
        nodes.push(member(&up.file_url(), free_udp_port(), Some(p0)));
    }
    wait_synchronized_members(&nodes, limit);
    (up, nodes, p0)
}

/// Every ref `node` advertises names an object present in its mirror (the farm's invariant).
pub fn advertised_objects_present(node: &Node) -> Result<usize, String> {
    let refs = gitc::ls_remote(&node.http_url("P", "r"), &[]);
    let mirror = node.mirror_path("P", "r");
    for (name, oid) in &refs {
        let out = gitc::try_run(Some(&mirror), &["cat-file", "-e", oid], &[]);
        if !out.status.success() {
            return Err(format!("{name} {oid} is advertised but missing"));
        }
    }
    Ok(refs.len())
}

/// Lands one change of `P/r` per node, each triggered at another node, waits until every node
/// serves it, and returns the fetches (SSH command sessions, also those over a shared connection)
/// those changes cost the upstream (counted from when no start-up sync runs to when no sync runs).
pub fn sessions_for_one_change_per_node(up: &Upstream, nodes: &[Node], limit: Duration) -> usize {
    for n in nodes {
        wait_for("start-up syncs to end", limit, || {
            (n.repo_status("P", "r")?["syncing"] == false).then_some(())
        });
    }
    let before = up.command_sessions();
    for (i, n) in nodes.iter().enumerate() {
        let new = up.commit("P", "r", "main", &format!("change {i}"));
        assert_eq!(n.trigger(Some(("P", "r"))), 202);
        for m in nodes {
            wait_for("the change on every node", limit, || {
                (main_of(m).as_deref() == Some(new.as_str())).then_some(())
            });
        }
    }
    // A member that fetched from the upstream did so inside a sync (sshd logs the session when it
    // opens): once no member syncs, every session these changes cost has been counted.
    for n in nodes {
        wait_for("every member's syncs to end", limit, || {
            (n.repo_status("P", "r")?["syncing"] == false).then_some(())
        });
    }
    up.command_sessions() - before
}
