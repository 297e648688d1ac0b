//! Running gossip for a node and keeping the farm view that /status shows.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatId};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::FarmConfig;
use crate::farm::flip;
use crate::farm::keys::{self, Member};
use crate::farm::signing::{GossipKey, Publisher};
use crate::state::Shared;

/// How often this node republishes its clock, state and ref states, and recomputes the view (a
/// follower notices its leader's new state within about this plus a gossip round).
const REFRESH: Duration = Duration::from_millis(20);
/// How often the published clock is refreshed (ms); it is for skew warnings only.
const CLOCK_EVERY_MS: i64 = 500;
/// Clock difference above which /status warns.
const SKEW_WARNING_MS: i64 = 2000;

/// One member as /status shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// Node ID.
    pub node_id: String,
    /// HTTP address.
    pub address: Option<SocketAddr>,
    /// State word.
    pub state: String,
    /// Version.
    pub version: String,
    /// Its clock minus ours, in ms (as last published; within about a second).
    pub clock_skew_ms: Option<i64>,
    /// Whether this is the node answering.
    pub this_node: bool,
    /// Gossip (and farm TLS) address.
    #[serde(skip)]
    pub gossip: Option<SocketAddr>,
    /// Its state of each repository.
    pub repo_states: std::collections::BTreeMap<String, RepoState>,
}

/// A member's state of one repository, as its gossip says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoState {
    /// Generation served (0: none).
    pub generation: u64,
    /// Hash of the ref map served.
    pub refs_hash: Option<String>,
    /// Hash of the newest state staged (equal to `refsHash` once advertised).
    pub staged_hash: Option<String>,
    /// The branch HEAD names in the staged state.
    #[serde(skip)]
    pub staged_head: Option<crate::names::RefName>,
}

fn repo_states(m: &Member) -> std::collections::BTreeMap<String, RepoState> {
    let mut out: std::collections::BTreeMap<String, RepoState> = Default::default();
    for (repo, s) in &m.refs {
        let e = out.entry(repo.clone()).or_default();
        e.generation = s.generation;
        e.refs_hash = Some(s.refs_hash.clone());
    }
    for (repo, s) in &m.staged {
        let e = out.entry(repo.clone()).or_default();
        e.staged_hash = Some(s.refs_hash.clone());
        e.staged_head = s.head.clone();
    }
    out
}

/// The farm as this node sees it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FarmView {
    /// Live members agreeing on the farm configuration, this node included.
    pub members: Vec<MemberView>,
    /// Live nodes refused because their configuration differs: node ID → keys that differ.
    pub refused: Vec<(String, Vec<String>)>,
    /// Warnings (clock skew).
    pub warnings: Vec<String>,
    /// Live gossip peers not (yet) verified as members over the farm's TLS: node IDs.
    pub unverified: Vec<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs gossip until `shutdown` turns true, keeping `shared.farm` up to date.
pub async fn run(
    shared: Arc<Shared>,
    farm: FarmConfig,
    http: SocketAddr,
    ssh: SocketAddr,
    sync: crate::sync::scheduler::SyncHandle,
    verifier: crate::farm::verify::Verifier,
    mut shutdown: watch::Receiver<bool>,
) {
    let ours = keys::config_digests(&shared.config);
    let advertise = |port: u16| SocketAddr::new(farm.gossip_addr.ip(), port);
    let mut initial = vec![
        (keys::HTTP.to_owned(), advertise(http.port()).to_string()),
        (keys::SSH.to_owned(), advertise(ssh.port()).to_string()),
        (
            keys::VERSION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
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
    let handle = match spawn_chitchat(config, initial, &UdpTransport).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(address = %farm.gossip_addr, error = %e, "cannot start farm gossip");
            return;
        }
    };
    tracing::info!(address = %farm.gossip_addr, seeds = ?farm.seeds, "farm gossip started");
    let chitchat = handle.chitchat();
    let key = GossipKey::derive(&farm.secret);
    let mut tick = tokio::time::interval(REFRESH);
    let mut logged: BTreeSet<(String, Vec<String>)> = BTreeSet::new();
    let mut follow = Follow::default();
    let mut isolation = Isolation::default();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
            _ = shared.farm_changed.notified() => {}
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
                .is_none_or(|t| (now - t).abs() >= CLOCK_EVERY_MS)
            {
                own.set(keys::CLOCK_MS, now);
            }
            own.set(keys::STATE, state);
            for (id, e) in &snapshot {
                if e.servable() {
                    let served = keys::Served {
                        generation: e.record.generation,
                        refs_hash: e.record.refs_hash.clone(),
                    };
                    let k = format!("{}{id}", keys::REFS_PREFIX);
                    let v = key.sign(by, &k, &served.encode());
                    own.set(k, v);
                }
                if let Some(st) = &e.staged {
                    let k = format!("{}{id}", keys::STAGED_PREFIX);
                    let v = key.sign(by, &k, &st.encode());
                    own.set(k, v);
                }
            }
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
            let mut view = build_view(&me, now, members, &ours);
            view.unverified = unverified;
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
        mark_withheld(&shared, &view, isolation.since);
        follow.leaders(&me, &view, &snapshot, &sync);
        *shared
            .farm
            .write()
            .expect("farm view lock is never poisoned") = Some(view);
    }
    if let Err(e) = handle.shutdown().await {
        tracing::warn!(error = %e, "farm gossip did not stop cleanly");
    }
}

/// Whether this node has lost every peer it had.
#[derive(Default)]
struct Isolation {
    had_peers: bool,
    /// Since when (Unix ms) it sees no other member, after having seen some.
    since: Option<i64>,
}

impl Isolation {
    /// Updates from the view; true when the node has just become isolated.
    fn update(&mut self, view: &FarmView, now: i64) -> bool {
        let peers = view.members.iter().filter(|m| !m.this_node).count();
        if peers > 0 {
            if self.since.take().is_some() {
                tracing::info!(peers, "in contact with the farm again");
            }
            self.had_peers = true;
            return false;
        }
        if self.had_peers && self.since.is_none() {
            self.since = Some(now);
            return true;
        }
        false
    }
}

/// Records, per repository, whether this node may serve it now (see [`flip::withheld`]).
fn mark_withheld(shared: &Shared, view: &FarmView, isolated_since: Option<i64>) {
    let mut repos = shared
        .repos
        .write()
        .expect("repo map lock is never poisoned");
    for (id, e) in repos.iter_mut() {
        let why = flip::withheld(view, &id.to_string(), e, isolated_since);
        if why != e.withheld {
            match why {
                Some(w) => {
                    tracing::warn!(repo = %id, reason = w, "not serving this repository for now")
                }
                None => {
                    tracing::info!(repo = %id, generation = e.record.generation, "serving this repository again")
                }
            }
            e.withheld = why;
        }
    }
}

/// Sync triggers that keep this node with its farm, at most one per repository and target
/// every 5 s.
#[derive(Default)]
struct Follow {
    last: std::collections::HashMap<crate::names::RepoId, (String, std::time::Instant)>,
    /// The leader of each repository at the previous look.
    leaders: std::collections::HashMap<crate::names::RepoId, String>,
}

impl Follow {
    /// A follower syncs (from the leader) when the leader holds a state it does not serve and
    /// has not left behind; a leader that is behind the farm syncs from the upstream, and so does
    /// a node that has just taken a repository over (its leader died, perhaps mid-sync).
    fn leaders(
        &mut self,
        me: &str,
        view: &FarmView,
        snapshot: &std::collections::BTreeMap<crate::names::RepoId, crate::state::RepoEntry>,
        sync: &crate::sync::scheduler::SyncHandle,
    ) {
        for (id, entry) in snapshot {
            let repo = id.to_string();
            let Some(leader) = crate::farm::leader::leader_of(
                &repo,
                view.members.iter().map(|m| m.node_id.as_str()),
            ) else {
                continue;
            };
            let before = self.leaders.insert(id.clone(), leader.to_owned());
            let took_over = before.is_some_and(|b| b != leader) && leader == me;
            if took_over {
                tracing::info!(repo = %id, "leading this repository now: syncing from the upstream");
                sync.trigger(crate::sync::scheduler::Trigger::Repo(id.clone()));
                continue;
            }
            if entry.syncing {
                continue;
            }
            let want = if leader == me {
                if entry.withheld.is_none() {
                    continue;
                }
                "upstream"
            } else {
                match flip::target(view, &repo) {
                    Some(t)
                        if t != entry.record.refs_hash && !entry.kept.iter().any(|k| k == t) =>
                    {
                        t
                    }
                    _ => continue,
                }
            };
            let now = std::time::Instant::now();
            let recent = self
                .last
                .get(id)
                .is_some_and(|(h, t)| h == want && now.duration_since(*t) < Duration::from_secs(5));
            if recent {
                continue;
            }
            self.last.insert(id.clone(), (want.to_owned(), now));
            sync.trigger(crate::sync::scheduler::Trigger::Repo(id.clone()));
        }
    }
}

fn build_view(
    me: &str,
    now: i64,
    members: Vec<Member>,
    ours: &std::collections::BTreeMap<&'static str, String>,
) -> FarmView {
    let mut view = FarmView::default();
    for m in members.into_iter().filter(|m| !m.is_lb) {
        let mismatched = m.mismatched_keys(ours);
        if m.node_id != me && !mismatched.is_empty() {
            view.refused.push((m.node_id.clone(), mismatched));
            continue;
        }
        let skew = m.clock_ms.map(|c| c - now).filter(|_| m.node_id != me);
        if let Some(s) = skew.filter(|s| s.abs() > SKEW_WARNING_MS) {
            view.warnings.push(format!(
                "the clock of node {} is {:.1} s off",
                m.node_id,
                s as f64 / 1000.0
            ));
        }
        view.members.push(MemberView {
            gossip: m.gossip,
            repo_states: repo_states(&m),
            this_node: m.node_id == me,
            node_id: m.node_id,
            address: m.http,
            state: m.state,
            version: m.version,
            clock_skew_ms: skew,
        });
    }
    view.members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn member(id: &str, clock: i64, config: &BTreeMap<&'static str, String>) -> Member {
        Member {
            node_id: id.into(),
            http: None,
            ssh: None,
            version: "0.1.0".into(),
            clock_ms: Some(clock),
            state: "SYNCHRONIZED".into(),
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            is_lb: false,
            gossip: None,
            refs: BTreeMap::new(),
            staged: BTreeMap::new(),
        }
    }

    #[test]
    fn view_counts_agreeing_members_refuses_others_and_warns_on_skew() {
        let ours: BTreeMap<&'static str, String> = keys::FARM_KEYS
            .iter()
            .map(|k| (*k, "a".repeat(64)))
            .collect();
        let mut other = ours.clone();
        other.insert("plugin.mirroring.upstream.url", "b".repeat(64));
        let v = build_view(
            "me",
            10_000,
            vec![
                member("me", 10_000, &ours),
                member("n2", 10_500, &ours),
                member("n3", 13_000, &ours),
                member("bad", 10_000, &other),
            ],
            &ours,
        );
        assert_eq!(v.members.len(), 3);
        assert_eq!(
            v.refused,
            vec![(
                "bad".to_owned(),
                vec!["plugin.mirroring.upstream.url".to_owned()]
            )]
        );
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
        assert!(v.warnings[0].contains("n3"));
    }
}
