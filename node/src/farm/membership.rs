//! Running gossip for a node and keeping the farm view that /status shows.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{spawn_chitchat, ChitchatId};
use tokio::sync::watch;

use crate::farm::follow::{mark_withheld, Follow, Isolation};
use crate::farm::keys::{self, StatesRev};
use crate::farm::member::{Member, MemberCache};
use crate::farm::pace::LocalPace;
use crate::farm::view::build_view;
use crate::farm::Farm;
use crate::store::now_ms;

/// How often this node republishes its clock, state and ref states and recomputes the view when
/// nothing happened (other members' news wakes it at once, own changes within
/// [`crate::farm::pace::LOCAL_PACE`]).
const REFRESH: Duration = Duration::from_millis(250);
/// The longest time between two passes over every repository when nothing seems to change (a
/// safety net: every change wakes a pass over the repositories it touched, and a change of
/// members a full one). At 20 000 repositories a full pass costs tens of milliseconds: every 5 s
/// it was half of a member's CPU at rest.
const FULL_PASS: Duration = Duration::from_secs(30);
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
    let generation = chitchat.lock().await.self_chitchat_id().generation_id;
    *this.own_states.lock() = crate::farm::own_states::OwnStates::new(generation);
    let mut tick = tokio::time::interval(REFRESH);
    let mut logged: BTreeSet<(String, Vec<String>)> = BTreeSet::new();
    let mut follow = Follow::default();
    let mut isolation = Isolation::default();
    // The per-repository passes (publishing, withholding, following) look at what changed (here,
    // in gossip) and, when the members change and at least every FULL_PASS, at everything.
    let started = std::time::Instant::now();
    let mut last_full = started.checked_sub(FULL_PASS).unwrap_or(started);
    let mut last_members: Vec<String> = Vec::new();
    let mut heartbeats = crate::farm::heartbeats::Heartbeats::default();
    let mut read = MemberCache::default();
    let mut pace = LocalPace::new(tokio::time::Instant::now());
    loop {
        // Event-driven: a local sync staged or flipped a state (paced), another member's word or
        // states came, or gossip brought news (a new value or a member coming or going); the
        // tick is a fallback.
        let owed = pace.due();
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
            _ = shared.repos_changed.notified(), if owed.is_none() => {
                // (A wake stored while the last pass ran may find its change taken already.)
                if shared.nothing_changed() || !pace.changed(tokio::time::Instant::now()) {
                    continue;
                }
            }
            _ = tokio::time::sleep_until(owed.unwrap_or_else(tokio::time::Instant::now)), if owed.is_some() => {}
            _ = this.states_news.notified() => {}
            r = gossip_news.changed() => if r.is_err() { break },
        }
        pace.passed(tokio::time::Instant::now());
        let changed = shared.take_changed();
        let due = changed.all || last_full.elapsed() >= FULL_PASS;
        // The repository map's running tally: no walk over the repositories.
        let summary = shared.summary();
        let (state, stale_since) = (summary.state(), summary.oldest_unreached_upstream);
        let mut asks: Vec<(ChitchatId, u64)> = Vec::new();
        let me = shared.identity.node_id.clone();
        let now = now_ms();
        let view = {
            let mut c = chitchat.lock().await;
            let own = c.self_node_state();
            if own
                .get(keys::CLOCK_MS)
                .and_then(|v| v.parse::<i64>().ok())
                .is_none_or(|t| now.saturating_sub(t).unsigned_abs() >= CLOCK_EVERY_MS)
            {
                own.set(keys::CLOCK_MS, now);
            }
            own.set(keys::STATE, state);
            let stale = stale_since.map_or("-".to_owned(), |t| t.to_string());
            own.set(keys::STALE_SINCE_MS, stale);
            let own_map = {
                let repos = shared.repos.read();
                let mut o = this.own_states.lock();
                let moved = if due {
                    o.publish_all(&repos)
                } else {
                    o.publish_some(&repos, changed.repos.iter())
                };
                // Announced at once (revision 0 included): a member without it counts as just
                // started, its states not known yet.
                if moved || own.get(keys::STATES).is_none() {
                    o.announce(own);
                }
                o.map()
            };
            // A member that restarted is a new incarnation (generation) of its node ID; until the
            // failure detector buries the old one, both look live. Only the newest counts: the old
            // one will never stage anything, and a flip must not wait for it.
            let mut live: Vec<ChitchatId> = c.live_nodes().cloned().collect();
            newest_incarnations(&mut live);
            let mut unverified = Vec::new();
            let asked_at = std::time::Instant::now();
            let mut cache = this.states.lock();
            let members: Vec<Member> = live
                .iter()
                .filter_map(|id| {
                    let st = c.node_state(id)?;
                    if *id.node_id == *me {
                        return Some(read.member(id, st, own_map.clone()));
                    }
                    if !verifier.verified(&id.node_id, id.gossip_advertise_addr) {
                        let m = read.member(id, st, Default::default());
                        if !m.is_lb {
                            unverified.push(m.node_id.clone());
                            return None;
                        }
                        return Some(m);
                    }
                    let published = st.get(keys::STATES).and_then(StatesRev::decode);
                    let (states, current, ask) = cache.states(id, published, asked_at);
                    if let Some(since) = ask {
                        asks.push((id.clone(), since));
                    }
                    let mut m = read.member(id, st, states);
                    m.states_current = current;
                    Some(m)
                })
                .collect();
            let heard_at = std::time::Instant::now();
            for id in &live {
                if let Some(st) = c.node_state(id) {
                    heartbeats.saw(&id.node_id, st.heartbeat(), heard_at);
                }
            }
            heartbeats.retain(|n| live.iter().any(|id| &*id.node_id == n));
            read.retain(&live);
            cache.retain(&live);
            drop(cache);
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
        let isolated = isolation.update(&view, now);
        if isolated {
            tracing::warn!("cut off from every other farm member: not serving until each repository is confirmed with the upstream");
            sync.trigger(crate::sync::scheduler::Trigger::All);
        }
        let members: Vec<String> = view.members.iter().map(|m| m.node_id.clone()).collect();
        for (id, since) in asks.drain(..) {
            ask_states(&this, id, since, shutdown.clone());
        }
        let mut dirty = changed.repos;
        dirty.extend(
            this.states
                .lock()
                .take_changed()
                .iter()
                .filter_map(|r| crate::names::RepoId::parse(r).ok()),
        );
        if due || isolated || members != last_members {
            mark_withheld(shared, &view, isolation.since, None);
            follow.leaders(&me, &view, &shared.repos.read(), sync, None);
            last_members = members;
            last_full = std::time::Instant::now();
        } else if !dirty.is_empty() {
            mark_withheld(shared, &view, isolation.since, Some(&dirty));
            follow.leaders(&me, &view, &shared.repos.read(), sync, Some(&dirty));
        }
        shared.set_farm_stale_since(view.others_stale_since_ms());
        *this.view.write() = Some(view);
        this.view_updated.notify_waiters();
    }
    if let Err(e) = handle.shutdown().await {
        tracing::warn!(error = %e, "farm gossip did not stop cleanly");
    }
}

/// Asks member `id` for its states changed after `since` and applies the answer (in the
/// background; the membership loop is woken when it came).
fn ask_states(this: &Arc<Farm>, id: ChitchatId, since: u64, mut shutdown: watch::Receiver<bool>) {
    let this = this.clone();
    tokio::spawn(async move {
        let asked = this
            .client
            .states(&id.node_id, id.gossip_advertise_addr, since);
        let answer = tokio::select! {
            _ = shutdown.changed() => return,
            a = asked => a,
        };
        let mut cache = this.states.lock();
        match answer {
            Ok(a) => {
                cache.apply(&id, since, a, std::time::Instant::now());
            }
            Err(e) => {
                tracing::warn!(node = %id.node_id, error = %e, "cannot read a member's ref states");
                cache.failed(&id, std::time::Instant::now());
            }
        }
        drop(cache);
        this.states_news.notify_one();
    });
}

/// Keeps, of the incarnations of each node ID, the one with the highest generation.
fn newest_incarnations(live: &mut Vec<ChitchatId>) {
    let newest: std::collections::HashMap<std::sync::Arc<str>, u64> =
        live.iter().fold(Default::default(), |mut m, id| {
            let g = m.entry(id.node_id.clone()).or_insert(id.generation_id);
            *g = (*g).max(id.generation_id);
            m
        });
    live.retain(|id| newest.get(&id.node_id) == Some(&id.generation_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_incarnation_of_a_node_counts() {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut live = vec![
            ChitchatId::new("a", 5, addr),
            ChitchatId::new("b", 1, addr),
            ChitchatId::new("a", 9, addr),
        ];
        newest_incarnations(&mut live);
        assert_eq!(
            live,
            [ChitchatId::new("b", 1, addr), ChitchatId::new("a", 9, addr)]
        );
    }
}
