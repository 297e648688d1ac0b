//! Running gossip for a node and keeping the farm view that /status shows.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{spawn_chitchat, ChitchatId};
use tokio::sync::watch;

use crate::farm::follow::{mark_withheld, Follow, Isolation};
use crate::farm::keys::{self, Member};
use crate::farm::signing::{GossipKey, Publisher};
use crate::farm::view::build_view;
use crate::farm::Farm;
use crate::store::now_ms;

/// How often this node republishes its clock, state and ref states and recomputes the view when
/// nothing happened (changes wake it at once).
const REFRESH: Duration = Duration::from_millis(250);
/// How often the published clock is refreshed (ms); it is for skew warnings only.
const CLOCK_EVERY_MS: u64 = 500;

/// Runs gossip until `shutdown` turns true, keeping the farm's view up to date.
pub async fn run(
    this: Arc<Farm>,
    http: SocketAddr,
    ssh: SocketAddr,
    verifier: crate::farm::verify::Verifier,
    mut shutdown: watch::Receiver<bool>,
) {
    let (shared, farm, sync) = (&this.shared, &this.config, &this.sync);
    let ours = keys::config_digests(&shared.config);
    let advertise = |port: u16| SocketAddr::new(farm.gossip_addr.ip(), port);
    let mut initial = vec![
        (keys::HTTP.to_owned(), advertise(http.port()).to_string()),
        (keys::SSH.to_owned(), advertise(ssh.port()).to_string()),
        (
            keys::VERSION.to_owned(),
            mirrorfarm_common::version::version(),
        ),
        (keys::FORMAT.to_owned(), keys::DATA_FORMAT.to_string()),
        (keys::CLOCK_MS.to_owned(), now_ms().to_string()),
        (keys::STATE.to_owned(), shared.node_state().to_owned()),
    ];
    initial.extend(
        ours.iter()
            .map(|(k, v)| (format!("{}{k}", keys::CONFIG_PREFIX), v.clone())),
    );
    let config = mirrorfarm_common::gossip::chitchat_config(
        &shared.identity.node_id,
        farm.gossip_addr,
        &farm.seeds,
    );
    let handle = match spawn_chitchat(config, initial, &crate::farm::gossip_bytes::CountingUdp)
        .await
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(address = %farm.gossip_addr, error = %e, "cannot start farm gossip");
            return;
        }
    };
    tracing::info!(address = %farm.gossip_addr, seeds = ?farm.seeds, "farm gossip started");
    let chitchat = handle.chitchat();
    // Wakes when a gossip round brought any member's new values (heartbeats alone do not).
    let mut gossip_news = chitchat.lock().await.live_nodes_watcher();
    let key = GossipKey::derive(&farm.secret);
    let mut tick = tokio::time::interval(REFRESH);
    let mut logged: BTreeSet<(String, Vec<String>)> = BTreeSet::new();
    let mut follow = Follow::default();
    let mut isolation = Isolation::default();
    let mut published: std::collections::HashMap<String, String> = Default::default();
    let mut heartbeats = crate::farm::heartbeats::Heartbeats::default();
    loop {
        // Event-driven: a local sync staged or flipped a state, or gossip brought news (a new
        // value or a member coming or going); the tick is a fallback.
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
            _ = shared.repos_changed.notified() => {}
            r = gossip_news.changed() => if r.is_err() { break },
        }
        let me = shared.identity.node_id.clone();
        let state = shared.node_state();
        let now = now_ms();
        let snapshot = shared.snapshot();
        let view = {
            let mut c = chitchat.lock().await;
            let self_id = c.self_chitchat_id().clone();
            let by = Publisher {
                node_id: &self_id.node_id,
                generation: self_id.generation_id,
            };
            let own = c.self_node_state();
            if own
                .get(keys::CLOCK_MS)
                .and_then(|v| v.parse::<i64>().ok())
                .is_none_or(|t| now.saturating_sub(t).unsigned_abs() >= CLOCK_EVERY_MS)
            {
                own.set(keys::CLOCK_MS, now);
            }
            own.set(keys::STATE, state);
            let stale = shared
                .stale_since_ms()
                .map_or("-".to_owned(), |t| t.to_string());
            own.set(keys::STALE_SINCE_MS, stale);
            // Only changed values are signed and set again.
            let mut publish = |k: String, v: String| {
                if published.get(&k) != Some(&v) {
                    own.set(k.clone(), key.sign(by, &k, &v));
                    published.insert(k, v);
                }
            };
            let current: std::collections::HashSet<String> = snapshot
                .iter()
                .flat_map(|(id, e)| {
                    let refs = e.servable().then(|| format!("{}{id}", keys::REFS_PREFIX));
                    let staged = e
                        .staged
                        .as_ref()
                        .map(|_| format!("{}{id}", keys::STAGED_PREFIX));
                    refs.into_iter().chain(staged)
                })
                .collect();
            for (id, e) in &snapshot {
                if e.servable() {
                    let served = keys::Served {
                        generation: e.record.generation,
                        refs_hash: e.record.refs_hash.clone(),
                    };
                    publish(format!("{}{id}", keys::REFS_PREFIX), served.encode());
                }
                if let Some(st) = &e.staged {
                    publish(format!("{}{id}", keys::STAGED_PREFIX), st.encode());
                }
            }
            // A repository no longer mirrored (or gone upstream) is no longer claimed.
            published.retain(|k, _| {
                let keep = current.contains(k);
                if !keep {
                    own.delete(k);
                }
                keep
            });
            let live: Vec<ChitchatId> = c.live_nodes().cloned().collect();
            let mut unverified = Vec::new();
            let members: Vec<Member> = live
                .iter()
                .filter_map(|id| c.node_state(id).map(|st| Member::from_state(id, st, &key)))
                .filter(|m| {
                    let ok = m.is_lb
                        || m.node_id == me
                        || m.gossip.is_some_and(|a| verifier.verified(&m.node_id, a));
                    if !ok {
                        unverified.push(m.node_id.clone());
                    }
                    ok
                })
                .collect();
            let heard_at = std::time::Instant::now();
            for id in &live {
                if let Some(st) = c.node_state(id) {
                    heartbeats.saw(&id.node_id, st.heartbeat(), heard_at);
                }
            }
            heartbeats.retain(|n| live.iter().any(|id| &*id.node_id == n));
            let mut view = build_view(&me, now, members, &ours);
            for m in view.members.iter_mut().filter(|m| !m.this_node) {
                m.last_gossip_ms = heartbeats.age_ms(&m.node_id, heard_at);
            }
            view.unverified = unverified;
            this.heard
                .lock()
                .apply(&mut view, std::time::Instant::now());
            view
        };
        for r in &view.refused {
            if logged.insert(r.clone()) {
                tracing::error!(node = %r.0, keys = ?r.1, "refusing a node whose farm configuration differs");
            }
        }
        if isolation.update(&view, now) {
            tracing::warn!("cut off from every other farm member: not serving until each repository is confirmed with the upstream");
            sync.trigger(crate::sync::scheduler::Trigger::All);
        }
        mark_withheld(shared, &view, isolation.since);
        shared.set_farm_stale_since(view.others_stale_since_ms());
        follow.leaders(&me, &view, &snapshot, sync);
        *this.view.write() = Some(view);
        this.view_updated.notify_waiters();
    }
    if let Err(e) = handle.shutdown().await {
        tracing::warn!(error = %e, "farm gossip did not stop cleanly");
    }
}
