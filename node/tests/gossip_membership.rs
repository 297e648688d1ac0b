//! Farm membership over chitchat's in-memory transport, with the farm's own gossip settings:
//! members find each other, a member cut off is out of everyone's view within 3 s and back after
//! the cut heals. (Ref states do not travel by gossip: the farm channel carries them.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use chitchat::{spawn_chitchat, ChitchatHandle};
use mirrorfarm_common::gossip::chitchat_config;
use mirrorfarm_node::farm::keys::{CONFIG_PREFIX, DATA_FORMAT, FARM_KEYS, FORMAT};
use mirrorfarm_node::farm::member::Member;
use mirrorfarm_node::farm::view::{build_view, FarmView};

fn digests() -> BTreeMap<&'static str, String> {
    FARM_KEYS.iter().map(|k| (*k, "d".repeat(64))).collect()
}

async fn start(
    transport: &ChannelTransport,
    id: &str,
    addr: SocketAddr,
    seed: Option<SocketAddr>,
) -> ChitchatHandle {
    let seeds: Vec<String> = seed.iter().map(SocketAddr::to_string).collect();
    let config = chitchat_config(id, addr, &seeds);
    let mut kv: Vec<(String, String)> = digests()
        .into_iter()
        .map(|(k, v)| (format!("{CONFIG_PREFIX}{k}"), v))
        .collect();
    kv.push((FORMAT.to_owned(), DATA_FORMAT.to_string()));
    spawn_chitchat(config, kv, transport)
        .await
        .expect("in-memory gossip starts")
}

async fn view(h: &ChitchatHandle, me: &str) -> FarmView {
    let c = h.chitchat();
    let c = c.lock().await;
    let members: Vec<Member> = c
        .live_nodes()
        .filter_map(|id| c.node_state(id).map(|st| Member::from_state(id, st)))
        .collect();
    build_view(me, 0, members, &digests())
}

/// Waits (at most `limit`) until `check` holds for the views of all `nodes`.
async fn settle(
    nodes: &[(&ChitchatHandle, &str)],
    limit: Duration,
    what: &str,
    check: impl Fn(&str, &FarmView) -> bool,
) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let mut all = true;
        for (h, id) in nodes {
            all &= check(id, &view(h, id).await);
        }
        if all {
            return start.elapsed();
        }
        if start.elapsed() >= limit {
            let mut seen = Vec::new();
            for (h, id) in nodes {
                let v = view(h, id).await;
                let ids: Vec<String> = v.members.iter().map(|m| m.node_id.clone()).collect();
                seen.push(format!("{id} sees {ids:?}, refused {:?}", v.refused));
            }
            panic!("not within {limit:?}: {what}; {}", seen.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_leave_within_3_s_and_rejoin() {
    let transport = ChannelTransport::default();
    let addr = |i: u8| SocketAddr::from(([10, 0, 0, i], 7900));
    let ids = ["node-a", "node-b", "node-c"];
    let mut handles = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let seed = (i > 0).then(|| addr(1));
        handles.push(start(&transport, id, addr(i as u8 + 1), seed).await);
    }
    let nodes: Vec<(&ChitchatHandle, &str)> = handles.iter().zip(ids).collect();
    settle(&nodes, Duration::from_secs(5), "3 members", |_, v| {
        v.members.len() == 3
    })
    .await;

    // Cut node-c off: out of the others' views (and they out of its) within 3 s.
    for i in [1, 2] {
        transport.remove_link(addr(3), addr(i)).await;
    }
    let took = settle(&nodes, Duration::from_secs(3), "node-c cut off", |me, v| {
        let ids: Vec<&str> = v.members.iter().map(|m| m.node_id.as_str()).collect();
        if me == "node-c" {
            ids == ["node-c"]
        } else {
            ids == ["node-a", "node-b"]
        }
    })
    .await;
    assert!(took < Duration::from_secs(3), "{took:?}");

    // Healed: it rejoins.
    for i in [1, 2] {
        transport.add_link(addr(3), addr(i)).await;
    }
    settle(&nodes, Duration::from_secs(10), "node-c back", |_, v| {
        v.members.len() == 3
    })
    .await;
    for h in handles {
        h.shutdown().await.expect("gossip stops");
    }
}
