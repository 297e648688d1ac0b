//! A member's ref states as its gossip says — two signed keys per repository
//! ([`keys::REFS_PREFIX`], [`keys::STAGED_PREFIX`]) — read into one shared map. [`StatesCache`]
//! reads a member's keys again only when its [`keys::REPOS_REV`] moved (or, for a member that
//! predates it, when anything of its state changed), and then verifies only the keys whose
//! version changed: a farm at rest costs no per-repository work, and one repository's change
//! costs one signature check, not one per repository.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chitchat::{ChitchatId, NodeState, Version};

use crate::farm::keys::{self, Served, StagedHint};
use crate::farm::signing::{GossipKey, Publisher};

/// A member's state of one repository, as its gossip says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoState {
    /// Generation served (0: none).
    pub generation: u64,
    /// Hash of the ref map served.
    pub refs_hash: Option<String>,
    /// Hash of the newest state staged (equal to `refsHash` once advertised).
    pub staged_hash: Option<String>,
    /// The branch HEAD names in the staged state.
    pub staged_head: Option<crate::names::RefName>,
}

/// Every repository's state of one member (`PROJECT/repo` → state), shared by every view.
pub type RepoStates = Arc<BTreeMap<String, RepoState>>;

/// One verified, decoded key.
#[derive(Debug, Clone)]
enum Value {
    Served(Served),
    Staged(StagedHint),
}

/// The repository a state key names, and whether it is the served (not the staged) state.
fn repo_of(key: &str) -> Option<(&str, bool)> {
    let (repo, served) = match key.strip_prefix(keys::REFS_PREFIX) {
        Some(r) => (r, true),
        None => (key.strip_prefix(keys::STAGED_PREFIX)?, false),
    };
    crate::names::RepoId::parse(repo).ok()?;
    Some((repo, served))
}

fn open(key: &GossipKey, by: Publisher<'_>, k: &str, v: &str, served: bool) -> Option<Value> {
    let v = key.open(by, k, v)?;
    if served {
        Served::decode(v).map(Value::Served)
    } else {
        StagedHint::decode(v).map(Value::Staged)
    }
}

/// Sets (or, with `None`, clears) one key's part of `states`.
fn apply(states: &mut BTreeMap<String, RepoState>, repo: &str, served: bool, v: Option<&Value>) {
    let e = states.entry(repo.to_owned()).or_default();
    match (served, v) {
        (_, Some(Value::Served(s))) => {
            e.generation = s.generation;
            e.refs_hash = Some(s.refs_hash.clone());
        }
        (_, Some(Value::Staged(h))) => {
            e.staged_hash = Some(h.refs_hash.clone());
            e.staged_head = h.head.clone();
        }
        (true, None) => {
            e.generation = 0;
            e.refs_hash = None;
        }
        (false, None) => {
            e.staged_hash = None;
            e.staged_head = None;
        }
    }
    if e.refs_hash.is_none() && e.staged_hash.is_none() {
        states.remove(repo);
    }
}

/// Reads every state key of `st` (published by `id`), verifying each.
pub fn read(id: &ChitchatId, st: &NodeState, key: &GossipKey) -> RepoStates {
    let by = Publisher {
        node_id: &id.node_id,
        generation: id.generation_id,
    };
    let mut states = BTreeMap::new();
    for prefix in [keys::REFS_PREFIX, keys::STAGED_PREFIX] {
        for (k, vv) in st.iter_prefix(prefix) {
            if let Some((repo, served)) = repo_of(k) {
                if let Some(v) = open(key, by, k, &vv.value, served) {
                    apply(&mut states, repo, served, Some(&v));
                }
            }
        }
    }
    Arc::new(states)
}

/// One member's states as last read.
#[derive(Default)]
struct Cached {
    /// The [`keys::REPOS_REV`] version (or the state's max version) they were read at.
    at: Option<Version>,
    /// Each state key's version and what it verified to.
    keys: HashMap<String, (Version, Option<Value>)>,
    states: RepoStates,
}

/// Members' states, read again only when they moved.
#[derive(Default)]
pub struct StatesCache {
    members: HashMap<ChitchatId, Cached>,
    /// Repositories whose state changed in any member since [`StatesCache::take_changed`].
    changed: std::collections::HashSet<String>,
}

impl StatesCache {
    /// `id`'s states as of `st`.
    pub fn states(&mut self, id: &ChitchatId, st: &NodeState, key: &GossipKey) -> RepoStates {
        let at = st
            .get_versioned(keys::REPOS_REV)
            .filter(|v| !v.is_deleted())
            .map_or_else(|| st.max_version(), |v| v.version);
        let c = self.members.entry(id.clone()).or_default();
        if c.at != Some(at) {
            self.changed.extend(c.refresh(id, st, key));
            c.at = Some(at);
        }
        c.states.clone()
    }

    /// The repositories whose state changed in any member since the last call.
    pub fn take_changed(&mut self) -> std::collections::HashSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// Forgets members `live` no longer holds.
    pub fn retain(&mut self, live: &[ChitchatId]) {
        self.members.retain(|id, _| live.contains(id));
    }
}

impl Cached {
    /// Reads the keys that moved; returns the repositories whose state changed.
    fn refresh(&mut self, id: &ChitchatId, st: &NodeState, key: &GossipKey) -> Vec<String> {
        let by = Publisher {
            node_id: &id.node_id,
            generation: id.generation_id,
        };
        let mut changed: Vec<(String, bool, Option<Value>)> = Vec::new();
        let mut seen = 0usize;
        for prefix in [keys::REFS_PREFIX, keys::STAGED_PREFIX] {
            for (k, vv) in st.iter_prefix(prefix) {
                let Some((repo, served)) = repo_of(k) else {
                    continue;
                };
                seen += 1;
                if self.keys.get(k).is_some_and(|(ver, _)| *ver == vv.version) {
                    continue;
                }
                let v = open(key, by, k, &vv.value, served);
                self.keys.insert(k.to_owned(), (vv.version, v.clone()));
                changed.push((repo.to_owned(), served, v));
            }
        }
        if seen < self.keys.len() {
            // Keys removed (a repository no longer mirrored, a staged state withdrawn).
            let gone: Vec<String> = self
                .keys
                .keys()
                .filter(|k| st.get(k).is_none())
                .cloned()
                .collect();
            for k in gone {
                self.keys.remove(&k);
                if let Some((repo, served)) = repo_of(&k) {
                    changed.push((repo.to_owned(), served, None));
                }
            }
        }
        if changed.is_empty() {
            return Vec::new();
        }
        let states = Arc::make_mut(&mut self.states);
        for (repo, served, v) in &changed {
            apply(states, repo, *served, v.as_ref());
        }
        changed.into_iter().map(|(repo, _, _)| repo).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_reads_what_a_full_read_reads_and_only_again_when_the_counter_moves() {
        let key = GossipKey::derive("correct-horse-battery-staple");
        let id = ChitchatId::new("n1", 7, "127.0.0.1:1".parse().expect("addr"));
        let by = Publisher {
            node_id: "n1",
            generation: 7,
        };
        let sign = |k: &str, v: &str| (k.to_owned(), key.sign(by, k, v));
        let served = |g: u64, h: char| {
            Served {
                generation: g,
                refs_hash: h.to_string().repeat(64),
            }
            .encode()
        };
        let kv = vec![
            sign("refs:P/a", &served(3, 'a')),
            sign("refs:P/b", &served(1, 'b')),
            sign("staged:P/b", &format!("{} refs/heads/main", "c".repeat(64))),
            // A forged value is left out.
            (
                "refs:P/x".to_owned(),
                format!("{} {}", served(9, 'd'), "0".repeat(64)),
            ),
            (keys::REPOS_REV.to_owned(), "1".to_owned()),
        ];
        let mut st = NodeState::for_test();
        for (k, v) in &kv {
            st.set(k, v);
        }
        let mut cache = StatesCache::default();
        let first = cache.states(&id, &st, &key);
        assert_eq!(*first, *read(&id, &st, &key));
        assert_eq!(first.len(), 2);
        assert_eq!(first["P/b"].staged_hash.as_deref(), Some(&*"c".repeat(64)));
        // Another key moving (the clock) reads nothing again: the same map.
        st.set("clock_ms", "5");
        assert!(Arc::ptr_eq(&first, &cache.states(&id, &st, &key)));
        // Without the counter moving, even a changed state key is not read yet (it comes with
        // the counter, or before it).
        let (k, v) = sign("refs:P/a", &served(4, 'e'));
        st.set(&k, &v);
        assert!(Arc::ptr_eq(&first, &cache.states(&id, &st, &key)));
        // One repository changed, one staged state goes, the counter moves: the cache follows.
        st.delete("staged:P/b");
        st.set(keys::REPOS_REV, "2");
        let next = cache.states(&id, &st, &key);
        assert_eq!(*next, *read(&id, &st, &key));
        assert_eq!(next["P/a"].generation, 4);
        assert_eq!(next["P/b"].staged_hash, None);
        let mut changed: Vec<String> = cache.take_changed().into_iter().collect();
        changed.sort();
        assert_eq!(changed, ["P/a", "P/b", "P/x"]);
        assert!(cache.take_changed().is_empty());
        // A view that held the earlier map still sees what it saw.
        assert_eq!(first["P/a"].generation, 3);
    }
}
