//! Forged gossip gets nothing: a process that speaks the farm's gossip, copies a member's
//! configuration digests and claims far newer ref states — without the farm
//! secret or a farm certificate — is not counted as a member, leads nothing, holds no flip back,
//! makes no member stop serving and is never fetched from.

use std::time::Duration;

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatId};
use mirrorfarm_common::gossip::chitchat_config;
use mirrorfarm_tests::farm::{main_of, member_props};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, wait_for};

const LIMIT: Duration = Duration::from_secs(60);
const EVIL: &str = "evil0000-0000-0000-0000-000000000000";

#[test]
fn forged_gossip_is_ignored() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let p0 = free_udp_port();
    // A long stage timeout: were the forger counted, every flip would wait for it that long.
    let props = |port, seed| format!("{}farm.stage.timeout=120\n", member_props(port, seed));
    let nodes: Vec<Node> = [None, Some(p0), Some(p0)]
        .iter()
        .enumerate()
        .map(|(i, seed)| {
            let port = if i == 0 { p0 } else { free_udp_port() };
            Node::start(&up.file_url(), &props(port, *seed))
        })
        .collect();
    for n in &nodes {
        n.wait_state("SYNCHRONIZED", LIMIT);
        wait_for("3 members", LIMIT, || {
            (n.status()["memberCount"] == 3).then_some(())
        });
    }

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let evil_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let forger = rt.block_on(async {
        let config = chitchat_config(EVIL, evil_addr, &[format!("127.0.0.1:{p0}")]);
        spawn_chitchat(config, Vec::new(), &UdpTransport)
            .await
            .expect("forger gossip")
    });
    let fake_hash = "f".repeat(64);
    rt.block_on(async {
        // Learn a member's configuration digests from gossip, then claim to be a member far
        // ahead, with a made-up signature.
        let deadline = tokio::time::Instant::now() + LIMIT;
        let chitchat = forger.chitchat();
        loop {
            let mut c = chitchat.lock().await;
            let digests: Vec<(String, String)> = c
                .live_nodes()
                .filter(|id| *id.node_id != *EVIL)
                .collect::<Vec<&ChitchatId>>()
                .first()
                .and_then(|id| c.node_state(id))
                .map(|st| {
                    st.key_values()
                        .filter(|(k, _)| k.starts_with("config:"))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            if digests.len() >= 4 {
                let own = c.self_node_state();
                for (k, v) in digests {
                    own.set(k, v);
                }
                own.set("http", "127.0.0.1:9");
                own.set("ssh", "127.0.0.1:9");
                own.set("version", env!("CARGO_PKG_VERSION"));
                own.set("state", "SYNCHRONIZED");
                own.set("format", "2");
                // States far ahead: were it counted, members would ask it for them (it has no
                // farm certificate to answer with).
                own.set("states", format!("999999 {fake_hash}"));
                // What earlier versions gossiped per repository, with a made-up signature.
                own.set("refs:P/r", format!("999 {fake_hash} {}", "0".repeat(32)));
                break;
            }
            drop(c);
            assert!(
                tokio::time::Instant::now() < deadline,
                "the forger learned no digests"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Every member sees the forger in gossip, and does not count it.
    for n in &nodes {
        let s = wait_for("the forger seen and not verified", LIMIT, || {
            let s = n.status();
            s["unverifiedNodes"]
                .as_array()?
                .iter()
                .any(|v| v == EVIL)
                .then_some(s)
        });
        assert_eq!(s["memberCount"], 3, "{s}");
        let r = n.repo_status("P", "r").expect("P/r");
        assert_ne!(r["leader"], EVIL);
        assert_eq!(
            r["state"], "SYNCHRONIZED",
            "a forged claim made a member stop: {r}"
        );
    }
    // Changes still flip at once on every member (no waiting for the forger).
    for i in 0..3 {
        let new = up.commit("P", "r", "main", &format!("change {i}"));
        assert_eq!(nodes[i].trigger(Some(("P", "r"))), 202);
        for n in &nodes {
            wait_for(
                "the change on every member",
                Duration::from_secs(30),
                || (main_of(n).as_deref() == Some(new.as_str())).then_some(()),
            );
            assert_ne!(
                n.repo_status("P", "r").expect("P/r")["refsHash"],
                fake_hash.as_str()
            );
        }
    }
    rt.block_on(async {
        let _ = forger.shutdown().await;
    });
}
