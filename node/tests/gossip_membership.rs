//! Farm membership over chitchat's in-memory transport, with the farm's own gossip settings and
//! signed values: members find each other, a member cut off is out of everyone's view within 3 s
//! and back after the cut heals, and a peer signing with another key has its ref states dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use chitchat::{spawn_chitchat, ChitchatHandle};
use mirrorfarm_common::gossip::chitchat_config;
use mirrorfarm_node::farm::keys::{Served, CONFIG_PREFIX, FARM_KEYS, REFS_PREFIX};
use mirrorfarm_node::farm::member::Member;
use mirrorfarm_node::farm::signing::{GossipKey, Publisher};
use mirrorfarm_node::farm::view::{build_view, FarmView};

const SECRET: &str = "correct-horse-battery-staple";

fn digests() -> BTreeMap<&'static str, String> {
    FARM_KEYS.iter().map(|k| (*k, "d".repeat(64))).collect()
}

async fn start(
    transport: &ChannelTransport,
    id: &str,
    addr: SocketAddr,
    seed: Option<SocketAddr>,
    key: &GossipKey,
) -> ChitchatHandle {
    let seeds: Vec<String> = seed.iter().map(SocketAddr::to_string).collect();
    let config = chitchat_config(id, addr, &seeds);
    let by = Publisher {
        node_id: id,
        generation: config.chitchat_id.generation_id,
    };
    let refs_key = format!("{REFS_PREFIX}P/r");
    let served = Served {
        generation: 3,
        refs_hash: "a".repeat(64),
    };
    let mut kv: Vec<(String, String)> = digests()
        .into_iter()
        .map(|(k, v)| (format!("{CONFIG_PREFIX}{k}"), v))
        .collect();
    kv.push((refs_key.clone(), key.sign(by, &refs_key, &served.encode())));
    spawn_chitchat(config, kv, transport)
        .await
        .expect("in-memory gossip starts")
}

async fn view(h: &ChitchatHandle, me: &str, key: &GossipKey) -> FarmView {
    let c = h.chitchat();
    let c = c.lock().await;
    let members: Vec<Member> = c
        .live_nodes()
        .filter_map(|id| c.node_state(id).map(|st| Member::from_state(id, st, key)))
        .collect();
    build_view(me, 0, members, &digests())
}

/// Waits (at most `limit`) until `check` holds for the views of all `nodes`.
async fn settle(
    nodes: &[(&ChitchatHandle, &str)],
    key: &GossipKey,
    limit: Duration,
    what: &str,
    check: impl Fn(&str, &FarmView) -> bool,
) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let mut all = true;
        for (h, id) in nodes {
            all &= check(id, &view(h, id, key).await);
        }
        if all {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_leave_within_3_s_rejoin_and_forged_values_are_dropped() {
    let transport = ChannelTransport::default();
    let key = GossipKey::derive(SECRET);
    let addr = |i: u8| SocketAddr::from(([10, 0, 0, i], 7900));
    let ids = ["node-a", "node-b", "node-c"];
    let mut handles = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let seed = (i > 0).then(|| addr(1));
        handles.push(start(&transport, id, addr(i as u8 + 1), seed, &key).await);
    }
    let nodes: Vec<(&ChitchatHandle, &str)> = handles.iter().zip(ids).collect();
    let signed_states = |_: &str, v: &FarmView| {
        v.members.len() == 3
            && v.members
                .iter()
                .all(|m| m.repo_states.get("P/r").is_some_and(|s| s.generation == 3))
    };
    settle(
        &nodes,
        &key,
        Duration::from_secs(5),
        "3 members with their signed states",
        signed_states,
    )
    .await;

    // A peer signing with another key: seen, but its ref state is dropped.
    let forger = start(
        &transport,
        "forger",
        addr(9),
        Some(addr(1)),
        &GossipKey::derive("not-the-farm-secret"),
    )
    .await;
    settle(
        &nodes,
        &key,
        Duration::from_secs(5),
        "the forger seen without a ref state",
        |_, v| {
            v.members
                .iter()
                .any(|m| m.node_id == "forger" && m.repo_states.is_empty())
        },
    )
    .await;
    forger.shutdown().await.expect("forger stops");
    settle(
        &nodes,
        &key,
        Duration::from_secs(5),
        "the forger gone",
        |_, v| v.members.len() == 3,
    )
    .await;

    // Cut node-c off: out of the others' views (and they out of its) within 3 s.
    for i in [1, 2, 9] {
        transport.remove_link(addr(3), addr(i)).await;
    }
    let took = settle(
        &nodes,
        &key,
        Duration::from_secs(3),
        "node-c cut off",
        |me, v| {
            let ids: Vec<&str> = v.members.iter().map(|m| m.node_id.as_str()).collect();
            if me == "node-c" {
                ids == ["node-c"]
            } else {
                ids == ["node-a", "node-b"]
            }
        },
    )
    .await;
    assert!(took < Duration::from_secs(3), "{took:?}");

    // Healed: it rejoins.
    for i in [1, 2] {
        transport.add_link(addr(3), addr(i)).await;
    }
    settle(
        &nodes,
        &key,
        Duration::from_secs(10),
        "node-c back",
        |_, v| v.members.len() == 3,
    )
    .await;
    for h in handles {
        h.shutdown().await.expect("gossip stops");
    }
}
