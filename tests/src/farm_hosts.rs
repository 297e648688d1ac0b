//! A farm on separate hosts of a [`Topology`]: the OpenSSH upstream, each member, the LB and the
//! git clients on a host of their own, so that a member's death or cut is a host's.

use std::net::IpAddr;
use std::time::Duration;

use crate::farm::{wait_synchronized_members, SECRET};
use crate::lb::Lb;
use crate::node::{Node, Placement};
use crate::topology::{Host, Topology};
use crate::upstream::{Shape, Upstream};
use crate::{free_udp_port, gitc};

/// The port every member gossips on (each host has its own ports).
pub const GOSSIP_PORT: u16 = 7_900;

/// A member's properties on `host`: mirrors `P/r`, gossips there, joins through `seed`.
pub fn member_props_at(host: &Host, seed: Option<IpAddr>) -> String {
    let seeds = seed
        .map(|s| format!("farm.seeds={s}:{GOSSIP_PORT}\n"))
        .unwrap_or_default();
    format!(
        "setup.baseUrl=https://lb.test\nmirror.repos=P/r\nmirror.access=anonymous\nfarm.secret={SECRET}\n\
         farm.gossip.address={}\nfarm.gossip.port={GOSSIP_PORT}\n{seeds}",
        host.ip
    )
}

/// The farm; fields drop in order, the topology (and whatever still runs on it) last.
pub struct HostsFarm {
    /// The LB, on host `lb` (clients know it as `lb.test`).
    pub lb: Lb,
    /// The members, on hosts `m1`, `m2`, …
    pub nodes: Vec<Node>,
    /// The upstream, its sshd on host `upstream`.
    pub up: Upstream,
    /// Where git clients run.
    pub clients: Host,
    /// The hosts.
    pub topo: Topology,
}

impl HostsFarm {
    /// `n` synchronized members (`extra` appended to each one's properties) and an LB
    /// following them with all `n` in rotation.
    pub fn start(n: usize, limit: Duration, extra: &str) -> Self {
        Self::start_with(n, limit, extra, |_| Placement::default())
    }

    /// Like [`Self::start`], member `i` (from 0) placed as `placement(i)` says (its home, its
    /// environment; its host is the farm's `m<i+1>`).
    pub fn start_with(
        n: usize,
        limit: Duration,
        extra: &str,
        placement: impl Fn(usize) -> Placement,
    ) -> Self {
        let mut names = vec!["upstream", "lb", "clients"];
        let members: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
        names.extend(members.iter().map(String::as_str));
        let topo = Topology::new(&names);
        let mut up = Upstream::new();
        up.create("P", "r", &Shape::small());
        up.start_sshd_on(&topo.host("upstream"));
        let mut nodes = Vec::new();
        for (i, name) in members.iter().enumerate() {
            let host = topo.host(name);
            let seed = (i > 0).then(|| topo.host("m1").ip);
            let props = format!("{}{extra}", member_props_at(&host, seed));
            let placement = Placement {
                host: Some(host),
                ..placement(i)
            };
            let node = Node::start_placed(&up.ssh_url(), &props, &placement);
            if i == 0 {
                let s = node.wait_state("AWAITING_AUTHORIZATION", limit);
                up.authorize(s["publicKey"].as_str().expect("publicKey"));
                assert_eq!(node.trigger(Some(("P", "r"))), 202);
                node.wait_state("SYNCHRONIZED", limit);
            }
            nodes.push(node);
        }
        wait_synchronized_members(&nodes, limit);
        let lb_host = topo.host("lb");
        let lb_props = format!(
            "lb.farm.seeds={}:{GOSSIP_PORT}\nlb.farm.secret={SECRET}\nlb.farm.gossip.address={}\n\
             lb.farm.gossip.port={}\n",
            topo.host("m1").ip,
            lb_host.ip,
            free_udp_port()
        );
        let lb = Lb::start_on(&lb_host, "lb.test", "", &lb_props);
        lb.wait_healthy(n as u64, limit);
        Self {
            lb,
            nodes,
            up,
            clients: topo.host("clients"),
            topo,
        }
    }

    /// The LB's last log lines and each member's status and last log lines, for a failure's
    /// message.
    pub fn explain(&self) -> String {
        let log = self.lb.log();
        let lines: Vec<&str> = log.lines().collect();
        let mut out = format!(
            "LB log tail:\n{}\n",
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
        for n in &self.nodes {
            out.push_str(&n.explain(40));
            out.push('\n');
        }
        out
    }

    /// Panics (with [`Self::explain`]) unless `failures`, what git clients of the LB saw fail
    /// (see [`crate::traffic::Traffic::stop`]), is empty; `what` names the scenario.
    pub fn assert_no_failures(&self, what: &str, served: usize, failures: &[String]) {
        eprintln!(
            "{what}: {served} requests through the LB, {} failed",
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "{what}: {} of {} requests through the LB failed; first: {}\n{}",
            failures.len(),
            served + failures.len(),
            failures[0],
            self.explain()
        );
    }
}

/// Nothing lost on a member: its mirror of `P/r` passes `git fsck --strict` and every ref it
/// advertises is there.
pub fn nothing_lost(node: &Node) {
    let mirror = node.mirror_path("P", "r");
    let out = gitc::try_run(Some(&mirror), &["fsck", "--no-progress", "--strict"], &[]);
    assert!(
        out.status.success(),
        "git fsck on {}: {}",
        mirror.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    crate::farm::advertised_objects_present(node).expect("every advertised ref present");
}
