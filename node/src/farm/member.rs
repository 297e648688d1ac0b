//! Reading a peer's gossip state back into a [`Member`]: what it says about itself (strictly
//! parsed: a value that does not parse is left out), with its ref states ([`crate::farm::repo_states`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use chitchat::{ChitchatId, NodeState};

use crate::farm::keys::{
    differs, is_hash, CLOCK_MS, CONFIG_PREFIX, FARM_KEYS, FORMAT, HTTP, LATER_FARM_KEYS, SSH,
    STALE_SINCE_MS, STATE, VERSION,
};
use crate::farm::repo_states::RepoStates;

/// What a peer says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node ID.
    pub node_id: String,
    /// HTTP listener.
    pub http: Option<SocketAddr>,
    /// SSH listener.
    pub ssh: Option<SocketAddr>,
    /// Version.
    pub version: String,
    /// Data format ([`DATA_FORMAT`] of its build).
    pub format: u32,
    /// Its clock when it last published (Unix ms).
    pub clock_ms: Option<i64>,
    /// Since when it has not reached the upstream (Unix ms, by its clock), if it has not.
    pub stale_since_ms: Option<i64>,
    /// State word.
    pub state: String,
    /// Configuration digests by key (shared: read once per change of the member's gossip).
    pub config: Arc<BTreeMap<String, String>>,
    /// Whether it is a load balancer rather than a node.
    pub is_lb: bool,
    /// Its gossip (and farm TLS) address.
    pub gossip: Option<SocketAddr>,
    /// What it serves and has staged, per repository (`PROJECT/repo`).
    pub states: RepoStates,
    /// Whether `states` are as its gossip says they are now (false while they are being asked
    /// for: a member that just joined or restarted, say).
    pub states_current: bool,
}

fn word(s: &str) -> Option<String> {
    (s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c)))
    .then(|| s.to_owned())
}

impl Member {
    /// Reads what a peer says about itself in its gossip, without ref states (they come over the
    /// farm channel: see [`crate::farm::repo_states`]; [`MemberCache::member`] adds them).
    pub fn from_state(id: &ChitchatId, st: &NodeState) -> Self {
        let config = st
            .iter_prefix(CONFIG_PREFIX)
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(CONFIG_PREFIX)?;
                let known = FARM_KEYS.contains(&key) || LATER_FARM_KEYS.contains(&key);
                (known && is_hash(&v.value)).then(|| (key.to_owned(), v.value.clone()))
            })
            .collect();
        Self {
            node_id: word(&id.node_id).unwrap_or_default(),
            http: st.get(HTTP).and_then(|v| v.parse().ok()),
            ssh: st.get(SSH).and_then(|v| v.parse().ok()),
            version: st.get(VERSION).and_then(word).unwrap_or_default(),
            format: st.get(FORMAT).and_then(|v| v.parse().ok()).unwrap_or(1),
            clock_ms: st.get(CLOCK_MS).and_then(|v| v.parse().ok()),
            stale_since_ms: st.get(STALE_SINCE_MS).and_then(|v| v.parse().ok()),
            state: st.get(STATE).and_then(word).unwrap_or_default(),
            config: Arc::new(config),
            is_lb: st.get(mirrorfarm_common::gossip::ROLE)
                == Some(mirrorfarm_common::gossip::ROLE_LB),
            gossip: Some(id.gossip_advertise_addr),
            states: RepoStates::default(),
            states_current: true,
        }
    }

    /// The farm keys on which this member disagrees with `ours` (missing counts as different).
    pub fn mismatched_keys(&self, ours: &BTreeMap<&'static str, String>) -> Vec<String> {
        ours.iter()
            .filter(|(k, v)| differs(k, v, self.config.get(**k).map(String::as_str)))
            .map(|(k, _)| (*k).to_owned())
            .collect()
    }
}

/// Members read back from gossip, each kept while its gossip state has not moved (its version):
/// the membership loop passes many times a second while repositories sync, and reading a
/// member again each time (its configuration digests copied) showed in a busy member's profile.
#[derive(Debug, Default)]
pub struct MemberCache {
    read: HashMap<ChitchatId, (u64, Member)>,
}

impl MemberCache {
    /// What the peer `id` says about itself in `st`, with its ref states `states`.
    pub fn member(&mut self, id: &ChitchatId, st: &NodeState, states: RepoStates) -> Member {
        let version = st.max_version();
        let read = match self.read.get(id) {
            Some((v, m)) if *v == version => m,
            _ => {
                let m = Member::from_state(id, st);
                &self
                    .read
                    .entry(id.clone())
                    .insert_entry((version, m))
                    .into_mut()
                    .1
            }
        };
        Member {
            states,
            ..read.clone()
        }
    }

    /// Forgets the peers not in `live`.
    pub fn retain(&mut self, live: &[ChitchatId]) {
        self.read.retain(|id, _| live.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::keys::DATA_FORMAT;

    #[test]
    fn a_later_key_is_compared_only_when_published() {
        let ours: BTreeMap<&'static str, String> = FARM_KEYS
            .iter()
            .chain(LATER_FARM_KEYS.iter())
            .map(|k| (*k, "a".repeat(64)))
            .collect();
        let mut m = Member {
            node_id: "n".into(),
            http: None,
            ssh: None,
            version: "0.1.0".into(),
            format: DATA_FORMAT,
            clock_ms: None,
            stale_since_ms: None,
            state: String::new(),
            config: Arc::new(
                FARM_KEYS
                    .iter()
                    .map(|k| ((*k).to_owned(), "a".repeat(64)))
                    .collect(),
            ),
            is_lb: false,
            gossip: None,
            states: RepoStates::default(),
            states_current: true,
        };
        assert!(m.mismatched_keys(&ours).is_empty(), "an older member");
        Arc::make_mut(&mut m.config).insert("mirror.admins".into(), "b".repeat(64));
        assert_eq!(m.mismatched_keys(&ours), ["mirror.admins"]);
        Arc::make_mut(&mut m.config).remove("mirror.repos");
        assert_eq!(m.mismatched_keys(&ours), ["mirror.admins", "mirror.repos"]);
    }

    #[test]
    fn a_member_is_read_again_when_its_gossip_moved() {
        let id = ChitchatId::new("n1", 1, "127.0.0.1:1".parse().expect("addr"));
        let mut st = NodeState::for_test();
        st.set(STATE, "SYNCHRONIZED");
        let mut cache = MemberCache::default();
        let m = cache.member(&id, &st, RepoStates::default());
        assert_eq!(m.state, "SYNCHRONIZED");
        assert_eq!(m, Member::from_state(&id, &st));
        st.set(STATE, "SYNCHRONIZING");
        st.set(HTTP, "127.0.0.1:8080");
        let m = cache.member(&id, &st, RepoStates::default());
        assert_eq!(m.state, "SYNCHRONIZING");
        assert_eq!(m, Member::from_state(&id, &st));
        cache.retain(&[]);
        assert!(cache.read.is_empty());
    }
}
