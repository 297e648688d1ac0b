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
    /// The XOR of `parts`: what the member's digest must be at `rev`.
    digest: StatesDigest,
    /// Each repository's part of the digest as received (also for an entry left out of
    /// `states` because it did not parse, so the digests still agree).
    parts: HashMap<String, [u8; 32]>,
    states: RepoStates,
    asking: bool,
    /// Requests that failed or answers that were not usable, in a row.
    failures: u32,
    failed_at: Option<Instant>,
}

impl Cached {
    /// The pause before asking again after `failures` failures in a row: 1 s, doubling, at most
    /// a minute.
    fn pause(&self) -> Duration {
        RETRY * 2u32.pow(self.failures.saturating_sub(1).min(6))
    }

    fn fail(&mut self, now: Instant) {
        self.asking = false;
        self.failures = self.failures.saturating_add(1);
        self.failed_at = Some(now);
    }
}

/// Members' states, by incarnation.
#[derive(Default)]
pub struct StatesCache {
    members: HashMap<ChitchatId, Cached>,
    /// Repositories whose state changed in any member since [`StatesCache::take_changed`].
    changed: HashSet<String>,
}

impl StatesCache {
    /// `id`'s states as held here; whether they may be taken as its current states (false while
    /// they lag behind its gossip, `published`, and no request for them has failed yet — after a
    /// failure they count for what they are); and — when they lag behind and no request is out
    /// — the revision to ask it for changes after (the caller asks, then hands the answer to
    /// [`StatesCache::apply`] or reports [`StatesCache::failed`]). A member that publishes no
    /// revision yet (it just started) lags behind.
    pub fn states(
        &mut self,
        id: &ChitchatId,
        published: Option<StatesRev>,
        now: Instant,
    ) -> (RepoStates, bool, Option<u64>) {
        let c = self.members.entry(id.clone()).or_default();
        // (Gossip showing an earlier revision than held here only lags behind an answer.)
        let behind =
            published.is_none_or(|p| p.rev > c.rev || (p.rev == c.rev && p.digest != c.digest));
        let waited = c
            .failed_at
            .is_none_or(|t| now.saturating_duration_since(t) >= c.pause());
        let ask = match published {
            Some(p) if behind && !c.asking && waited => {
                c.asking = true;
                // Ahead of the member, or the same revision with another digest: this copy went
                // wrong somewhere; read it all again.
                Some(if p.rev > c.rev { c.rev } else { 0 })
            }
            _ => None,
        };
        let current = !behind || c.failures > 0;
        (c.states.clone(), current, ask)
    }

    /// Applies `id`'s answer to a request for changes after `since`; false when it was not
    /// usable (another incarnation answered, or the result does not match its digest: the next
    /// request, after a pause, reads everything again).
    pub fn apply(&mut self, id: &ChitchatId, since: u64, a: StatesAnswer, now: Instant) -> bool {
        let Some(c) = self.members.get_mut(id) else {
            return false;
        };
        let full = since == 0 || a.full;
        if a.generation != id.generation_id || (!full && a.rev < c.rev) {
            c.fail(now);
            return false;
        }
        c.asking = false;
        if full {
            // Whatever a full answer does not list is gone.
            let listed: HashSet<&str> = a.states.iter().map(|e| e.repo.as_str()).collect();
            let gone: Vec<String> = c
                .parts
                .keys()
                .chain(c.states.keys())
                .filter(|r| !listed.contains(r.as_str()))
                .cloned()
                .collect();
            for repo in gone {
                c.parts.remove(&repo);
                if c.states.remove(&repo).is_some() {
                    self.changed.insert(repo);
                }
            }
            c.digest = StatesDigest::default();
            for part in c.parts.values() {
                c.digest.toggle(part);
            }
        }
        for e in &a.states {
            if let Some(old) = c.parts.remove(&e.repo) {
                c.digest.toggle(&old);
            }
            if !e.is_gone() {
                let part = e.digest_part();
                c.digest.toggle(&part);
                c.parts.insert(e.repo.clone(), part);
            }
            let new = crate::names::RepoId::parse(&e.repo)
                .ok()
                .and_then(|_| RepoState::from_entry(e));
            if c.states.get(&e.repo) == new.as_ref() {
                continue;
            }
            match new {
                Some(n) => c.states.insert(e.repo.clone(), n),
                None => c.states.remove(&e.repo),
            };
            self.changed.insert(e.repo.clone());
        }
        if StatesDigest::parse(&a.digest) != Some(c.digest) {
            tracing::warn!(node = %id.node_id, "a member's states did not match its digest: reading them all again");
            c.rev = 0;
            c.fail(now);
            return false;
        }
        c.rev = a.rev;
        c.failures = 0;
        c.failed_at = None;
        true
    }

    /// A request to `id` failed: asked again after a pause.
    pub fn failed(&mut self, id: &ChitchatId, now: Instant) {
        if let Some(c) = self.members.get_mut(id) {
            c.fail(now);
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

    fn rev(rev: u64, d: &str) -> Option<StatesRev> {
        StatesDigest::parse(d).map(|digest| StatesRev { rev, digest })
    }

    fn answer(rev: u64, digest: &str, states: Vec<StateEntry>) -> StatesAnswer {
        StatesAnswer {
            generation: 7,
            rev,
            digest: digest.into(),
            full: false,
            states,
        }
    }

    fn id() -> ChitchatId {
        ChitchatId::new("n1", 7, "127.0.0.1:1".parse().expect("addr"))
    }

    #[test]
    fn the_cache_asks_when_the_revision_moves_and_follows_the_changes() {
        let (id, now) = (id(), Instant::now());
        let mut cache = StatesCache::default();
        // No revision published yet (it just started): not current, nothing to ask.
        assert!(!cache.states(&id, None, now).1);
        let (a, b) = (entry("P/a", 3, 'a'), entry("P/b", 1, 'b'));
        let d1 = digest(&[&a, &b]);
        // Gossip says revision 2: ask for everything, once.
        let (s, current, ask) = cache.states(&id, rev(2, &d1), now);
        assert!(s.is_empty() && !current);
        assert_eq!(ask, Some(0));
        assert_eq!(
            cache.states(&id, rev(2, &d1), now).2,
            None,
            "one request out"
        );
        assert!(cache.apply(&id, 0, answer(2, &d1, vec![a.clone(), b.clone()]), now));
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
        assert!(cache.apply(&id, 2, answer(4, &d2, vec![a2, gone]), now));
        let (s2, _, ask) = cache.states(&id, rev(4, &d2), now);
        assert_eq!(ask, None);
        assert_eq!(s2.len(), 1);
        assert_eq!(s2["P/a"].generation, 4);
        // The earlier map, still held by an earlier view, is as it was.
        assert_eq!(s["P/a"].generation, 3);
        // Gossip lagging behind what an answer brought is not a reason to ask.
        assert_eq!(cache.states(&id, rev(3, &d1), now).2, None);
    }

    #[test]
    fn unusable_answers_and_failures_are_asked_again_after_a_growing_pause() {
        let (id, now) = (id(), Instant::now());
        let mut cache = StatesCache::default();
        let a = entry("P/a", 3, 'a');
        let d = digest(&[&a]);
        assert_eq!(cache.states(&id, rev(5, &d), now).2, Some(0));
        // Another incarnation answered: not taken, asked again only after a pause.
        let mut other = answer(5, &d, vec![a.clone()]);
        other.generation = 8;
        assert!(!cache.apply(&id, 0, other, now));
        assert_eq!(cache.states(&id, rev(5, &d), now).2, None);
        assert_eq!(cache.states(&id, rev(5, &d), now + RETRY).2, Some(0));
        // A result that does not match the digest: not taken, the pause doubles; the states
        // held count for what they are once a request failed (so the member is not followed
        // blindly).
        let wrong = digest(&[&entry("P/a", 9, 'f')]);
        assert!(!cache.apply(&id, 0, answer(5, &wrong, vec![a.clone()]), now));
        let (_, current, ask) = cache.states(&id, rev(5, &d), now + RETRY);
        assert_eq!((current, ask), (true, None));
        let later = now + 2 * RETRY;
        assert_eq!(cache.states(&id, rev(5, &d), later).2, Some(0));
        cache.failed(&id, later);
        assert_eq!(cache.states(&id, rev(5, &d), later + 3 * RETRY).2, None);
        assert_eq!(cache.states(&id, rev(5, &d), later + 4 * RETRY).2, Some(0));
        // An entry that does not parse is left out of the map but counts in the digest.
        let mut bad = entry("P/b", 1, 'b');
        bad.staged_head = Some("refs/tags/v1".into());
        let d2 = digest(&[&a, &bad]);
        assert!(cache.apply(&id, 0, answer(6, &d2, vec![a, bad]), later));
        let (s, current, ask) = cache.states(&id, rev(6, &d2), later);
        assert_eq!((s.len(), current, ask), (1, true, None));
        // A full answer to a delta request (the member did not know the revision) is taken as
        // full: what it does not list is gone.
        assert_eq!(cache.states(&id, rev(7, &digest(&[])), later).2, Some(6));
        let mut full = answer(7, &digest(&[]), vec![]);
        full.full = true;
        assert!(cache.apply(&id, 6, full, later));
        assert!(cache.states(&id, rev(7, &digest(&[])), later).0.is_empty());
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
