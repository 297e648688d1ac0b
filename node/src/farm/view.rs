//! The farm as one node sees it: the verified members agreeing on the farm configuration, with
//! what each says about itself and its repositories, plus the refused and unverified peers.

use std::net::SocketAddr;

use crate::farm::member::Member;
pub use crate::farm::repo_states::{RepoState, RepoStates};

/// Clock difference above which /status warns.
const SKEW_WARNING_MS: i64 = 2000;

/// One member as this node sees it.
#[derive(Debug, Clone)]
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
    /// Since when (Unix ms, by our clock) it has not reached the upstream, if it has not.
    pub stale_since_ms: Option<i64>,
    /// Whether this is the node answering.
    pub this_node: bool,
    /// How long ago (ms) this node last heard its gossip heartbeat (0 for this node).
    pub last_gossip_ms: Option<u64>,
    /// Gossip (and farm TLS) address.
    pub gossip: Option<SocketAddr>,
    /// Its state of each repository (shared with the states cache: copied only when changed).
    pub repo_states: RepoStates,
    /// Whether `repo_states` are as its gossip says they are now (false while being asked for).
    pub states_current: bool,
}

#[cfg(test)]
impl MemberView {
    /// A live, synchronized member `id` holding `repo_states` (for tests).
    pub fn for_test(
        id: &str,
        this_node: bool,
        repo_states: std::collections::BTreeMap<String, RepoState>,
    ) -> Self {
        Self {
            node_id: id.into(),
            address: None,
            state: "SYNCHRONIZED".into(),
            version: "0".into(),
            clock_skew_ms: None,
            stale_since_ms: None,
            this_node,
            last_gossip_ms: None,
            gossip: None,
            repo_states: repo_states.into_iter().collect(),
            states_current: true,
        }
    }
}

/// The farm as this node sees it.
#[derive(Debug, Clone, Default)]
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

impl FarmView {
    /// Since when another member has not reached the upstream (the earliest, by our clock):
    /// the farm serves a state the upstream could not confirm lately.
    pub fn others_stale_since_ms(&self) -> Option<i64> {
        self.members
            .iter()
            .filter(|m| !m.this_node)
            .filter_map(|m| m.stale_since_ms)
            .min()
    }
}

/// Builds the view from the members' gossip: members whose farm keys differ from `ours` are
/// refused (this node is never refused by itself), clock skews over 2 s are warned about.
pub fn build_view(
    me: &str,
    now: i64,
    members: Vec<Member>,
    ours: &std::collections::BTreeMap<&'static str, String>,
) -> FarmView {
    let mut view = FarmView::default();
    for m in members.into_iter().filter(|m| !m.is_lb) {
        if m.node_id != me && m.format != crate::farm::keys::DATA_FORMAT {
            let why = if m.format > crate::farm::keys::DATA_FORMAT {
                "upgrade this node"
            } else {
                "upgrade that node"
            };
            view.refused.push((
                m.node_id.clone(),
                vec![format!(
                    "data format {} (this node's: {}; {why})",
                    m.format,
                    crate::farm::keys::DATA_FORMAT
                )],
            ));
            continue;
        }
        let mismatched = m.mismatched_keys(ours);
        if m.node_id != me && !mismatched.is_empty() {
            view.refused.push((m.node_id.clone(), mismatched));
            continue;
        }
        // A clock from gossip may be anything: no arithmetic on it may overflow.
        let skew = m
            .clock_ms
            .map(|c| c.saturating_sub(now))
            .filter(|_| m.node_id != me);
        if let Some(s) = skew.filter(|s| s.unsigned_abs() > SKEW_WARNING_MS.unsigned_abs()) {
            view.warnings.push(format!(
                "the clock of node {} is {:.1} s off",
                m.node_id,
                s as f64 / 1000.0
            ));
        }
        view.members.push(MemberView {
            gossip: m.gossip,
            repo_states: m.states,
            states_current: m.states_current,
            this_node: m.node_id == me,
            last_gossip_ms: (m.node_id == me).then_some(0),
            node_id: m.node_id,
            address: m.http,
            state: m.state,
            version: m.version,
            clock_skew_ms: skew,
            stale_since_ms: m
                .stale_since_ms
                .map(|t| t.saturating_sub(skew.unwrap_or(0))),
        });
    }
    view.members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    if let Some(w) = mixed_versions(&view.members) {
        view.warnings.push(w);
    }
    view
}

/// A warning when members run different versions: within one minor (`x.y`) a rolling upgrade,
/// allowed; across minors, to be finished.
fn mixed_versions(members: &[MemberView]) -> Option<String> {
    let versions: std::collections::BTreeSet<&str> =
        members.iter().map(|m| m.version.as_str()).collect();
    if versions.len() < 2 {
        return None;
    }
    let minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    let minors: std::collections::BTreeSet<String> = versions.iter().map(|v| minor(v)).collect();
    let list = versions.into_iter().collect::<Vec<_>>().join(", ");
    Some(if minors.len() == 1 {
        format!("members run versions {list}: a rolling upgrade within one minor version (allowed)")
    } else {
        format!("members run versions {list} of different minor versions: finish the upgrade")
    })
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
            format: crate::farm::keys::DATA_FORMAT,
            clock_ms: Some(clock),
            stale_since_ms: None,
            state: "SYNCHRONIZED".into(),
            config: std::sync::Arc::new(
                config
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            ),
            is_lb: false,
            gossip: None,
            states: RepoStates::default(),
            states_current: true,
        }
    }

    #[test]
    fn view_counts_agreeing_members_refuses_others_and_warns_on_skew() {
        let ours: BTreeMap<&'static str, String> = crate::farm::keys::FARM_KEYS
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
        // Absurd clocks from gossip are warned about, not overflowed on.
        let v = build_view(
            "me",
            10_000,
            vec![member("n4", i64::MIN, &ours), member("n5", i64::MAX, &ours)],
            &ours,
        );
        assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
    }

    #[test]
    fn other_data_formats_are_refused_and_mixed_versions_shown() {
        let ours: BTreeMap<&'static str, String> = crate::farm::keys::FARM_KEYS
            .iter()
            .map(|k| (*k, "a".repeat(64)))
            .collect();
        let mut newer = member("new", 10_000, &ours);
        newer.format = crate::farm::keys::DATA_FORMAT + 1;
        let mut patched = member("patched", 10_000, &ours);
        patched.version = "0.1.7".into();
        let v = build_view(
            "me",
            10_000,
            vec![member("me", 10_000, &ours), newer, patched],
            &ours,
        );
        assert_eq!(v.members.len(), 2, "the newer format is refused");
        assert_eq!(v.refused[0].0, "new");
        assert!(
            v.refused[0].1[0].contains("upgrade this node"),
            "{:?}",
            v.refused
        );
        assert!(
            v.warnings
                .iter()
                .any(|w| w.contains("0.1.0, 0.1.7") && w.contains("allowed")),
            "{:?}",
            v.warnings
        );
        let mut other_minor = member("next", 10_000, &ours);
        other_minor.version = "0.2.0".into();
        let v = build_view(
            "me",
            10_000,
            vec![member("me", 10_000, &ours), other_minor],
            &ours,
        );
        assert!(
            v.warnings.iter().any(|w| w.contains("finish the upgrade")),
            "{:?}",
            v.warnings
        );
    }
}
