//! Members' ref states as this node holds them. A member's gossip carries only
//! [`keys::STATES`] (its revision and the digest of all its states); when that moves, this node
//! asks the member over the farm channel for what changed since the revision it read last
//! ([`mirrorfarm_common::farm::states`]) and applies it here. A farm at rest costs no
//! per-repository work and no per-repository gossip; one repository's change costs one entry.
//! The maps are persistent ([`imbl::OrdMap`]): every view shares them, and a change copies
//! a path, not the map.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chitchat::ChitchatId;
use mirrorfarm_common::farm::states::{StateEntry, StatesAnswer, StatesDigest};

use crate::farm::keys::{is_hash, StatesRev};
use crate::names::RefName;

/// How long after a failed request a member's states are asked for again.
const RETRY: Duration = Duration::from_secs(1);

/// A member's state of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoState {
    /// Generation served (0: none).
    pub generation: u64,
    /// Hash of the ref map served.
    pub refs_hash: Option<String>,
    /// Hash of the newest state staged (equal to `refsHash` once advertised).
    pub staged_hash: Option<String>,
    /// The branch HEAD names in the staged state.
    pub staged_head: Option<RefName>,
}

/// Every repository's state of one member (`PROJECT/repo` → state), shared by every view.
pub type RepoStates = imbl::OrdMap<String, RepoState>;

impl RepoState {
    /// Reads an entry of a member's answer: `None` when it says the repository is gone or does
    /// not parse (a hash that is not one, a HEAD that is not a branch).
    pub fn from_entry(e: &StateEntry) -> Option<Self> {
        let hash = |h: &Option<String>| match h {
            Some(h) if is_hash(h) => Some(Some(h.clone())),
            Some(_) => None,
            None => Some(None),
        };
        let staged_head = match &e.staged_head {
            None => None,
            Some(h) => Some(RefName::parse(h).filter(|r| r.as_str().starts_with("refs/heads/"))?),
        };
        let s = Self {
            generation: e.generation,
            refs_hash: hash(&e.refs_hash)?,
            staged_hash: hash(&e.staged_hash)?,
            staged_head,
        };
        (s.refs_hash.is_some() || s.staged_hash.is_some()).then_some(s)
    }

    /// This state as an entry of an answer about `repo`.
    pub fn entry(&self, repo: &str) -> StateEntry {
        StateEntry {
            repo: repo.to_owned(),
            generation: self.generation,
            refs_hash: self.refs_hash.clone(),
            staged_hash: self.staged_hash.clone(),
            staged_head: self.staged_head.as_ref().map(|h| h.as_str().to_owned()),
        }
    }
}

/// One member's states as this node holds them.
#[derive(Default)]
struct Cached {
    rev: u64,
    digest: StatesDigest,
    states: RepoStates,
    asking: bool,
    failed_at: Option<Instant>,
}

/// Members' states, by incarnation.
#[derive(Default)]
pub struct StatesCache {
    members: HashMap<ChitchatId, Cached>,
    /// Repositories whose state changed in any member since [`StatesCache::take_changed`].
    changed: HashSet<String>,
}

impl StatesCache {
    /// `id`'s states as held here, whether they are as its gossip (`published`) says, and —
    /// when they lag behind and no request is out — the revision to ask it for changes after
    /// (the caller asks, then hands the answer to [`StatesCache::apply`] or reports
    /// [`StatesCache::failed`]).
    pub fn states(
        &mut self,
        id: &ChitchatId,
        published: Option<StatesRev>,
        now: Instant,
    ) -> (RepoStates, bool, Option<u64>) {
        let c = self.members.entry(id.clone()).or_default();
        let behind = published.is_some_and(|p| {
            p.rev > c.rev || (p.rev == c.rev && p.digest != c.digest && p.rev > 0)
        });
        let waited = c
            .failed_at
            .is_none_or(|t| now.saturating_duration_since(t) >= RETRY);
        let ask = (behind && !c.asking && waited).then(|| {
            c.asking = true;
            // Same revision, another digest: this copy went wrong somewhere; read it all again.
            if published.is_some_and(|p| p.rev == c.rev) {
                0
            } else {
                c.rev
            }
        });
        (c.states.clone(), !behind, ask)
    }

    /// Applies `id`'s answer to a request for changes after `since`; false when it was not
    /// usable (another incarnation answered, or the result does not match its digest: the next
    /// request reads everything again).
    pub fn apply(&mut self, id: &ChitchatId, since: u64, a: StatesAnswer) -> bool {
        let Some(c) = self.members.get_mut(id) else {
            return false;
        };
        c.asking = false;
        if a.generation != id.generation_id || a.rev < c.rev {
            return false;
        }
        if since == 0 {
            // A full answer: whatever is not in it is gone.
            let listed: HashSet<&str> = a.states.iter().map(|e| e.repo.as_str()).collect();
            let gone: Vec<String> = c
                .states
                .keys()
                .filter(|r| !listed.contains(r.as_str()))
                .cloned()
                .collect();
            for repo in gone {
                c.states.remove(&repo);
                self.changed.insert(repo);
            }
            c.digest = StatesDigest::default();
            for (repo, s) in c.states.iter() {
                c.digest.toggle(&s.entry(repo).digest_part());
            }
        }
        for e in &a.states {
            if crate::names::RepoId::parse(&e.repo).is_err() {
                continue;
            }
            let new = RepoState::from_entry(e);
            let old = c.states.get(&e.repo);
            if old == new.as_ref() {
                continue;
            }
            if let Some(o) = old {
                c.digest.toggle(&o.entry(&e.repo).digest_part());
            }
            match new {
                Some(n) => {
                    c.digest.toggle(&n.entry(&e.repo).digest_part());
                    c.states.insert(e.repo.clone(), n);
                }
                None => {
                    c.states.remove(&e.repo);
                }
            }
            self.changed.insert(e.repo.clone());
        }
        let matches = StatesDigest::parse(&a.digest) == Some(c.digest);
        // A copy that does not match is read again in full at the next chance.
        c.rev = if matches { a.rev } else { 0 };
        if !matches {
            tracing::warn!(node = %id.node_id, "a member's states did not match its digest: reading them all again");
        }
        matches
    }

    /// A request to `id` failed: asked again after [`RETRY`].
    pub fn failed(&mut self, id: &ChitchatId, now: Instant) {
        if let Some(c) = self.members.get_mut(id) {
            c.asking = false;
            c.failed_at = Some(now);
        }
    }

    /// The repositories whose state changed in any member since the last call.
    pub fn take_changed(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// Forgets members `live` no longer holds.
    pub fn retain(&mut self, live: &[ChitchatId]) {
        self.members.retain(|id, _| live.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(repo: &str, generation: u64, h: char) -> StateEntry {
        StateEntry {
            repo: repo.into(),
            generation,
            refs_hash: Some(h.to_string().repeat(64)),
            ..Default::default()
        }
    }

    fn digest(entries: &[&StateEntry]) -> String {
        let mut d = StatesDigest::default();
        for e in entries {
            d.toggle(&e.digest_part());
        }
        d.hex()
    }

    #[test]
    fn the_cache_asks_when_the_revision_moves_and_follows_the_changes() {
        let id = ChitchatId::new("n1", 7, "127.0.0.1:1".parse().expect("addr"));
        let now = Instant::now();
        let mut cache = StatesCache::default();
        let (a, b) = (entry("P/a", 3, 'a'), entry("P/b", 1, 'b'));
        let d1 = digest(&[&a, &b]);
        let rev = |rev, d: &str| StatesDigest::parse(d).map(|digest| StatesRev { rev, digest });
        // Gossip says revision 2: ask for everything, once.
        let (s, current, ask) = cache.states(&id, rev(2, &d1), now);
        assert!(s.is_empty() && !current);
        assert_eq!(ask, Some(0));
        assert_eq!(
            cache.states(&id, rev(2, &d1), now).2,
            None,
            "one request out"
        );
        let answer = |rev, digest: &str, states: Vec<StateEntry>| StatesAnswer {
            generation: 7,
            rev,
            digest: digest.into(),
            states,
        };
        assert!(cache.apply(&id, 0, answer(2, &d1, vec![a.clone(), b.clone()])));
        let (s, current, ask) = cache.states(&id, rev(2, &d1), now);
        assert_eq!((s.len(), current, ask), (2, true, None));
        assert_eq!(s["P/a"].generation, 3);
        let mut changed: Vec<String> = cache.take_changed().into_iter().collect();
        changed.sort();
        assert_eq!(changed, ["P/a", "P/b"]);
        // a moves, b goes: revision 4; only the changes after 2 are asked for.
        let a2 = entry("P/a", 4, 'c');
        let d2 = digest(&[&a2]);
        assert_eq!(cache.states(&id, rev(4, &d2), now).2, Some(2));
        let gone = StateEntry {
            repo: "P/b".into(),
            ..Default::default()
        };
        assert!(cache.apply(&id, 2, answer(4, &d2, vec![a2, gone])));
        let (s2, _, ask) = cache.states(&id, rev(4, &d2), now);
        assert_eq!(ask, None);
        assert_eq!(s2.len(), 1);
        assert_eq!(s2["P/a"].generation, 4);
        // The earlier map, still held by an earlier view, is as it was.
        assert_eq!(s["P/a"].generation, 3);
        // Another incarnation's answer is not taken; a wrong digest sends it back to 0.
        assert_eq!(cache.states(&id, rev(5, &d2), now).2, Some(4));
        let mut other = answer(5, &d2, vec![]);
        other.generation = 8;
        assert!(!cache.apply(&id, 4, other));
        assert_eq!(cache.states(&id, rev(5, &d2), now).2, Some(4));
        assert!(!cache.apply(&id, 4, answer(5, &d1, vec![])));
        assert_eq!(cache.states(&id, rev(5, &d2), now).2, Some(0));
        // A failed request is retried only after a pause.
        cache.failed(&id, now);
        assert_eq!(cache.states(&id, rev(5, &d2), now).2, None);
        assert_eq!(cache.states(&id, rev(5, &d2), now + RETRY).2, Some(0));
    }

    #[test]
    fn entries_that_do_not_parse_are_left_out() {
        let mut e = entry("P/a", 1, 'a');
        assert!(RepoState::from_entry(&e).is_some());
        e.staged_head = Some("refs/tags/v1".into());
        assert_eq!(RepoState::from_entry(&e), None);
        e.staged_head = None;
        e.refs_hash = Some("not a hash".into());
        assert_eq!(RepoState::from_entry(&e), None);
        let s = RepoState::from_entry(&entry("P/a", 2, 'b')).expect("parses");
        assert_eq!(RepoState::from_entry(&s.entry("P/a")), Some(s));
    }
}
