//! The farm's own overhead does not grow with what it mirrors (issue 17), at a size CI affords:
//! two members mirroring 600 one-commit repositories of an OpenSSH upstream. The readiness
//! document the LB reads every second stays a few hundred bytes; `/status` lists the first 100
//! repositories (and each member's first 100 states) and points to the paged resource, which
//! lists all 600 in order; each member's gossip state stays a few hundred bytes (its ref states
//! go over the farm channel); a full reconcile against the upstream reads every repository's
//! refs with one SSH command per member and fetches none of them; a member restarted beside the
//! other fetches none either; a member restarted while the
//! upstream and the other member are down is ready — serving its last state, every repository —
//! without having fetched anything.
//! (The figures at 2 000 and 20 000 repositories are the `scale` benchmark's.)

use std::time::Duration;

use chitchat::spawn_chitchat;
use chitchat::transport::UdpTransport;
use mirrorfarm_common::gossip::chitchat_config;
use mirrorfarm_tests::farm::member_props;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, gitc, poll_until};
use serde_json::Value;

const N: usize = 600;
const LIMIT: Duration = Duration::from_secs(300);

fn names() -> Vec<String> {
    (0..N).map(|i| format!("S{}/r{i:04}", i % 6)).collect()
}

fn ready_doc(node: &Node) -> (Value, usize) {
    let url = format!("{}/rest/mirroring/latest/ready", node.base_url());
    let r = node.admin_client().get(&url).send().expect("ready");
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().expect("body");
    (serde_json::from_slice(&bytes).expect("json"), bytes.len())
}

fn serves_all(node: &Node) -> bool {
    let (doc, _) = ready_doc(node);
    doc["ready"] == true && doc["syncedRepos"].as_u64() == Some(N as u64)
}

/// What an observer in the farm's gossip (seeded at `seed_port`) sees of each member: the bytes of its keys and values,
/// and the revision of its ref states.
fn gossip_states(nodes: &[Node], seed_port: u16) -> Vec<(usize, u64)> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let seed = format!("127.0.0.1:{seed_port}");
    rt.block_on(async {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let observer = spawn_chitchat(
            chitchat_config("observer", addr, &[seed]),
            Vec::new(),
            &UdpTransport,
        )
        .await
        .expect("observer gossip");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let seen = loop {
            let c = observer.chitchat();
            let c = c.lock().await;
            let seen: Vec<(usize, u64)> = c
                .live_nodes()
                .filter(|id| *id.node_id != *"observer")
                .filter_map(|id| {
                    let st = c.node_state(id)?;
                    let rev = st.get("states")?.split(' ').next()?.parse().ok()?;
                    let bytes = st.key_values().map(|(k, v)| k.len() + v.len()).sum();
                    Some((bytes, rev))
                })
                .collect();
            if seen.len() == nodes.len() {
                break seen;
            }
            drop(c);
            assert!(
                tokio::time::Instant::now() < deadline,
                "the observer saw {} members' states",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let _ = observer.shutdown().await;
        seen
    })
}

#[test]
fn sizes_stay_small_paging_lists_everything_and_a_restart_is_ready_without_fetching() {
    let mut up = Upstream::new();
    let names = names();
    up.create_copies(&names, &Shape::one_commit());
    up.start_sshd();
    let repos = format!("mirror.repos={}\n", names.join(","));
    let props = |port, seed| member_props(port, seed).replace("mirror.repos=P/r\n", &repos);
    let p0 = free_udp_port();
    let first = Node::start(&up.ssh_url(), &props(p0, None));
    let s = first.wait_state("AWAITING_AUTHORIZATION", LIMIT);
    up.authorize(s["publicKey"].as_str().expect("publicKey"));
    assert_eq!(first.trigger(None), 202);
    let mut nodes = [
        first,
        Node::start(&up.ssh_url(), &props(free_udp_port(), Some(p0))),
    ];
    poll_until(LIMIT, || nodes.iter().all(serves_all).then_some(())).unwrap_or_else(|| {
        panic!(
            "both members serve {N} repositories: {}",
            nodes[1].explain(20)
        )
    });

    // The readiness document: a few hundred bytes, whatever the count.
    let (doc, bytes) = ready_doc(&nodes[0]);
    assert!(bytes < 512, "{bytes} bytes: {doc}");
    assert_eq!(doc["totalRepos"], N);

    // /status: the first 100, a pointer to the rest, members' states cut at 100 too.
    let status = nodes[0]
        .admin_client()
        .get(format!("{}/status", nodes[0].base_url()))
        .send()
        .and_then(|r| r.bytes())
        .expect("status");
    let doc: Value = serde_json::from_slice(&status).expect("json");
    assert!(
        status.len() < 64 * 1024,
        "/status is {} bytes",
        status.len()
    );
    assert_eq!(doc["totalRepos"], N);
    assert_eq!(doc["repos"].as_array().expect("repos").len(), 100);
    assert_eq!(
        doc["reposNext"],
        "/rest/mirroring/latest/repos?start=100&limit=100"
    );
    for m in doc["members"].as_array().expect("members") {
        assert_eq!(
            m["repoStates"].as_object().expect("states").len(),
            50,
            "{}",
            m["nodeId"]
        );
        assert_eq!(m["repoStatesTotal"], N);
    }

    // The paged resource: every repository once, in order, in Bitbucket's shape.
    let mut listed = Vec::new();
    let mut start = 0;
    for page in 0.. {
        assert!(page < 10, "more pages than {N} repositories need");
        let p = nodes[0].get_json(&format!(
            "/rest/mirroring/latest/repos?start={start}&limit=250"
        ));
        let values = p["values"].as_array().expect("values");
        assert_eq!(p["size"], values.len());
        assert_eq!(
            (p["start"].as_u64(), p["limit"].as_u64()),
            (Some(start as u64), Some(250))
        );
        listed.extend(values.iter().map(|r| {
            format!(
                "{}/{}",
                r["project"].as_str().unwrap_or(""),
                r["repo"].as_str().unwrap_or("")
            )
        }));
        if p["isLastPage"] == true {
            assert!(p["nextPageStart"].is_null());
            break;
        }
        start = p["nextPageStart"].as_u64().expect("nextPageStart") as usize;
    }
    let mut want = names.clone();
    want.sort();
    assert_eq!(listed, want);

    // Gossip: each member's whole state (what every round's digest and deltas draw from) is a
    // few hundred bytes, whatever the count: ref states go over the farm channel.
    for (bytes, rev) in gossip_states(&nodes, p0) {
        assert!(bytes < 4096, "a member gossips {bytes} bytes of state");
        assert!(rev >= N as u64, "revision {rev} after {N} repositories");
    }

    // A full reconcile of {N} unchanged repositories against the ssh:// upstream: each member
    // reads the refs of the repositories it leads with one SSH command over its shared
    // connection (`mirror.sync.probe`) and fetches none of them — no connection, nor a fetch,
    // per repository.
    // (Counted once the syncs of the first state are over: each counts when it ends, after the
    // flip and the repository's maintenance.)
    poll_until(LIMIT, || {
        nodes.iter().all(Node::no_sync_running).then_some(())
    })
    .unwrap_or_else(|| panic!("syncs still running: {}", nodes[1].explain(20)));
    let sum = |name: &str, result: &str| -> f64 {
        nodes
            .iter()
            .map(|n| n.metric(name, &[("result", result)]))
            .sum()
    };
    let unchanged = || sum("mirrorfarm_reconcile_probes_total", "unchanged");
    let fetched = || sum("mirrorfarm_syncs_total", "ok");
    let others = || {
        sum("mirrorfarm_reconcile_probes_total", "changed")
            + sum("mirrorfarm_reconcile_probes_total", "unanswered")
    };
    let (conns, cmds, probed, before, others0) = (
        up.accepted_sessions(),
        up.command_sessions(),
        unchanged(),
        fetched(),
        others(),
    );
    for n in &nodes {
        assert_eq!(n.trigger(None), 202);
    }
    poll_until(LIMIT, || (unchanged() >= probed + N as f64).then_some(())).unwrap_or_else(|| {
        panic!(
            "{} of {N} repositories probed unchanged: {}",
            unchanged() - probed,
            nodes[0].explain(20)
        )
    });
    assert_eq!(fetched(), before, "unchanged repositories were fetched");
    assert_eq!(
        others(),
        others0,
        "repositories probed changed or unanswered"
    );
    // The probes went to the ssh:// upstream (sshd logged their commands).
    assert!(
        up.command_sessions() > cmds,
        "no command over SSH during the reconcile"
    );
    let new = up.accepted_sessions() - conns;
    assert!(
        new <= 2,
        "{new} SSH connections for a reconcile of {N} repositories"
    );

    // A member restarts beside the other: it serves at once and fetches none of the unchanged
    // repositories — neither those it leads (probed) nor those it follows (its start-up probe
    // may cover them too, before the farm's view shows the other member).
    let probes = |n: &Node| n.log().matches("reconcile probe done").count();
    let before = probes(&nodes[1]);
    nodes[1].stop();
    nodes[1].spawn();
    poll_until(LIMIT, || {
        (serves_all(&nodes[1])
            && probes(&nodes[1]) > before
            && nodes.iter().all(Node::no_sync_running))
        .then_some(())
    })
    .unwrap_or_else(|| panic!("the restarted member settled: {}", nodes[1].explain(30)));
    assert_eq!(
        nodes[1].metric("mirrorfarm_syncs_total", &[("result", "ok")]),
        0.0,
        "a restarted member fetched unchanged repositories"
    );

    // A restart with nothing to fetch from: the upstream and the other member are down.
    nodes[0].stop();
    up.stop_sshd();
    let node = &mut nodes[1];
    node.stop();
    node.spawn();
    poll_until(Duration::from_secs(60), || serves_all(node).then_some(())).unwrap_or_else(|| {
        panic!(
            "ready after a restart without fetching: {}",
            node.explain(30)
        )
    });
    let fetched = node.metric("mirrorfarm_syncs_total", &[("result", "ok")]);
    assert_eq!(fetched, 0.0, "nothing could be fetched");
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("c");
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            &node.http_url("S3", "r0003"),
            dest.to_str().expect("utf8"),
        ],
        &[],
    );
    assert!(dest.join(".git").exists());
}
