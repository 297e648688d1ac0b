//! This node's ref states as it publishes them: what it serves and has staged per repository,
//! each change numbered by a revision. Gossip carries only the revision and the digest of all
//! states ([`keys::STATES`]); peers ask over the farm channel for the changes after the revision
//! they hold ([`OwnStates::since`]). A pass looks at the repositories that changed (or, now and
//! then, at all of them, which compares and allocates nothing for those unchanged).

use std::collections::{BTreeMap, HashMap};

use chitchat::NodeState;
use mirrorfarm_common::farm::states::{StatesAnswer, StatesDigest};

use crate::farm::keys::{self, StatesRev};
use crate::farm::repo_states::{RepoState, RepoStates};
use crate::names::RepoId;
use crate::state::RepoEntry;

/// This node's published ref states.
#[derive(Default)]
pub struct OwnStates {
    /// Every repository ever published (a gone one with an empty state, so that a peer behind
    /// learns it went) and the revision of its last change.
    published: HashMap<RepoId, (RepoState, u64)>,
    /// The repositories by the revision of their last change.
    by_rev: BTreeMap<u64, RepoId>,
    rev: u64,
    digest: StatesDigest,
    /// The repositories published now (none gone), as the view shows this node.
    map: RepoStates,
    /// This incarnation's gossip generation.
    generation: u64,
}

/// An answer to a peer: the changes, or everything (listed from a [`Snapshot`]).
pub enum Answer {
    /// The changes after the revision asked.
    Changes(StatesAnswer),
    /// Everything.
    All(Snapshot),
}

/// Every state published at one revision.
pub struct Snapshot {
    map: RepoStates,
    rev: u64,
    digest: StatesDigest,
    generation: u64,
}

impl Snapshot {
    /// The full answer.
    pub fn answer(&self) -> StatesAnswer {
        StatesAnswer {
            generation: self.generation,
            rev: self.rev,
            digest: self.digest.hex(),
            full: true,
            states: self.map.iter().map(|(r, s)| s.entry(r)).collect(),
        }
    }
}

/// What `e` publishes (`None`: nothing, the repository is gone).
fn state_of(e: Option<&RepoEntry>) -> RepoState {
    let Some(e) = e else {
        return RepoState::default();
    };
    let served = e.servable();
    RepoState {
        generation: if served { e.record.generation } else { 0 },
        refs_hash: served.then(|| e.record.refs_hash.clone()),
        staged_hash: e.staged.as_ref().map(|s| s.refs_hash.clone()),
        staged_head: e.staged.as_ref().and_then(|s| s.head.clone()),
    }
}

fn part(id: &RepoId, s: &RepoState) -> [u8; 32] {
    s.entry(&id.to_string()).digest_part()
}

impl OwnStates {
    /// States of the incarnation with gossip generation `generation`.
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            ..Self::default()
        }
    }

    /// Brings the states in line with every repository of `repos`; true when anything changed
    /// (then [`OwnStates::announce`]).
    pub fn publish_all(&mut self, repos: &BTreeMap<RepoId, RepoEntry>) -> bool {
        let mut changed = false;
        for (id, e) in repos {
            changed |= self.one(id, Some(e));
        }
        // A repository no longer mirrored (or gone upstream) is no longer claimed.
        let gone: Vec<RepoId> = self
            .published
            .iter()
            .filter(|(id, (s, _))| *s != RepoState::default() && !repos.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            changed |= self.one(&id, None);
        }
        changed
    }

    /// Brings the states in line for the repositories `ids` only.
    pub fn publish_some<'i>(
        &mut self,
        repos: &BTreeMap<RepoId, RepoEntry>,
        ids: impl Iterator<Item = &'i RepoId>,
    ) -> bool {
        let mut changed = false;
        for id in ids {
            changed |= self.one(id, repos.get(id));
        }
        changed
    }

    /// The states published now, by repository.
    pub fn map(&self) -> RepoStates {
        self.map.clone()
    }

    /// Sets the gossip's [`keys::STATES`] to the revision and digest now.
    pub fn announce(&self, own: &mut NodeState) {
        let v = StatesRev {
            rev: self.rev,
            digest: self.digest,
        };
        own.set(keys::STATES, v.encode());
    }

    /// Every state changed after revision `since` (all of them for 0, or for a revision this
    /// incarnation never reached).
    pub fn since(&self, since: u64) -> StatesAnswer {
        match self.answer(since) {
            Answer::Changes(a) => a,
            Answer::All(snapshot) => snapshot.answer(),
        }
    }

    /// The states changed after revision `since`, or — for a full answer — a snapshot to list
    /// them from outside the lock (a copy of a persistent map: constant time).
    pub fn answer(&self, since: u64) -> Answer {
        if since == 0 || since > self.rev {
            return Answer::All(Snapshot {
                map: self.map.clone(),
                rev: self.rev,
                digest: self.digest,
                generation: self.generation,
            });
        }
        let states = self
            .by_rev
            .range(since + 1..)
            .filter_map(|(_, id)| {
                let (s, _) = self.published.get(id)?;
                Some(s.entry(&id.to_string()))
            })
            .collect();
        Answer::Changes(StatesAnswer {
            generation: self.generation,
            rev: self.rev,
            digest: self.digest.hex(),
            full: false,
            states,
        })
    }

    /// Publishes `id`'s entry (`None`: it is gone); true when its state changed.
    fn one(&mut self, id: &RepoId, e: Option<&RepoEntry>) -> bool {
        let new = state_of(e);
        let old = self.published.get(id);
        if old.map_or(RepoState::default(), |(s, _)| s.clone()) == new {
            return false;
        }
        if let Some((s, r)) = old {
            self.digest.toggle(&part(id, s));
            self.by_rev.remove(r);
        }
        self.digest.toggle(&part(id, &new));
        self.rev += 1;
        self.by_rev.insert(self.rev, id.clone());
        if new == RepoState::default() {
            self.map.remove(&id.to_string());
        } else {
            self.map.insert(id.to_string(), new.clone());
        }
        self.published.insert(id.clone(), (new, self.rev));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::repo_states::StatesCache;

    #[test]
    fn a_peer_following_the_changes_holds_what_this_node_publishes() {
        let mut own = OwnStates::new(7);
        let id = chitchat::ChitchatId::new("n1", 7, "127.0.0.1:1".parse().expect("addr"));
        let mut peer = StatesCache::default();
        let now = std::time::Instant::now();
        let mut repos = BTreeMap::new();
        let entry = |h: char| {
            let mut e = RepoEntry::default();
            e.record.generation = 1;
            e.record.refs_hash = h.to_string().repeat(64);
            e
        };
        for (i, name) in ["P/a", "P/b", "Q/c"].iter().enumerate() {
            let e = entry(char::from(b'a' + i as u8));
            repos.insert(RepoId::parse(name).expect("id"), e);
        }
        assert!(own.publish_all(&repos));
        assert!(!own.publish_all(&repos), "nothing changed");
        let follow = |own: &OwnStates, peer: &mut StatesCache| {
            let published = StatesRev {
                rev: own.rev,
                digest: own.digest,
            };
            let (_, _, ask) = peer.states(&id, Some(published), now);
            let since = ask.expect("the peer asks");
            assert!(peer.apply(&id, since, own.since(since), now));
            let (held, current, ask) = peer.states(&id, Some(published), now);
            assert_eq!((current, ask), (true, None));
            held
        };
        let held = follow(&own, &mut peer);
        assert_eq!(held.len(), 3);
        // One changes, one goes: the peer asks only for those two.
        let b = RepoId::parse("P/b").expect("id");
        repos.insert(b.clone(), entry('e'));
        repos.remove(&RepoId::parse("Q/c").expect("id"));
        assert!(own.publish_all(&repos));
        assert_eq!(own.since(own.rev - 2).states.len(), 2);
        let held = follow(&own, &mut peer);
        assert_eq!(held.len(), 2);
        assert!(!held.contains_key("Q/c"));
        assert_eq!(held["P/b"].refs_hash.as_deref(), Some(&*"e".repeat(64)));
        // A full answer lists no gone repository.
        assert!(own.since(0).states.iter().all(|e| !e.is_gone()));
    }
}
