//! What members said over the farm channel ahead of their published states: the states they
//! staged ([`mirrorfarm_common::farm::messages::StagedNotice`]). Each rebuild of the view merges
//! them in (so `/status` and every decision see them as if the member's published states had
//! brought them), and a consistent flip waits for the members' word rather than for those. The
//! published states ([`crate::farm::repo_states`]: read once gossip shows their revision move)
//! stay the record: a word goes once they show that state, once they show anything new for that
//! member and repository after the word came (they are then the fresher source), when the member
//! leaves the view, or after [`KEEP`]. Of two words about one repository from one member, the
//! one staged later counts, whatever order they arrive in.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::farm::view::{FarmView, RepoStates};
use crate::names::RefName;

/// How long a word counts without the member's published states confirming it (they carry a
/// staged state within a gossip round or two and one request; a word older than this is stale).
pub const KEEP: Duration = Duration::from_secs(5);

/// One member's word about one repository.
#[derive(Debug, Clone)]
pub struct Word {
    refs_hash: String,
    head: Option<RefName>,
    /// When the member staged it (its clock, µs).
    staged_at_us: u64,
    /// When it came.
    at: Instant,
    /// What gossip showed (staged, served hash) the first time the word was applied.
    gossip_then: Option<(Option<String>, Option<String>)>,
}

impl Word {
    /// A member staged `refs_hash` (with `head`) at `staged_at_us` by its clock; the word came
    /// at `at`.
    pub fn new(refs_hash: String, head: Option<RefName>, staged_at_us: u64, at: Instant) -> Self {
        Self {
            refs_hash,
            head,
            staged_at_us,
            at,
            gossip_then: None,
        }
    }
}

/// The words heard, by (member, repository).
#[derive(Debug, Default)]
pub struct Heard {
    words: HashMap<(String, String), Word>,
    /// Per member: the states gossip gave the last view, and those with its words merged in.
    /// Reused while neither moved: merging copies parts of the map gossip's cache shares, and
    /// the view is rebuilt many times a second while repositories sync.
    merged: HashMap<String, Merged>,
}

#[derive(Debug)]
struct Merged {
    gossip: RepoStates,
    with_words: RepoStates,
}

impl Heard {
    /// Member `node` said that it staged `word` of `repo`; ignored when a word about a later
    /// stage is already here.
    pub fn record(&mut self, node: &str, repo: &str, word: Word) {
        let key = (node.to_owned(), repo.to_owned());
        if self
            .words
            .get(&key)
            .is_some_and(|w| w.staged_at_us > word.staged_at_us)
        {
            return;
        }
        self.words.insert(key, word);
        self.merged.remove(node);
    }

    /// Merges the words into `view` (built from gossip alone) as the members' staged states, and
    /// forgets those gossip has caught up with or moved past, the expired ones and those of
    /// members no longer in the view.
    pub fn apply(&mut self, view: &mut FarmView, now: Instant) {
        let Self { words, merged } = self;
        let mut dropped: HashSet<String> = HashSet::new();
        words.retain(|(node, repo), w| {
            let keep = keeps(view, node, repo, w, now);
            if !keep {
                dropped.insert(node.clone());
            }
            keep
        });
        let mut by_member: HashMap<&str, Vec<(&String, &Word)>> = HashMap::new();
        for ((node, repo), w) in words.iter() {
            by_member.entry(node).or_default().push((repo, w));
        }
        merged.retain(|node, _| by_member.contains_key(node.as_str()) && !dropped.contains(node));
        for m in view.members.iter_mut().filter(|m| !m.this_node) {
            let Some(told) = by_member.get(m.node_id.as_str()) else {
                continue;
            };
            if let Some(c) = merged.get(&m.node_id) {
                if c.gossip.ptr_eq(&m.repo_states) {
                    m.repo_states = c.with_words.clone();
                    continue;
                }
            }
            // The gossip cache's map is shared: this view gets its own copy.
            let gossip = m.repo_states.clone();
            for (repo, w) in told {
                let s = m.repo_states.entry((*repo).clone()).or_default();
                s.staged_hash = Some(w.refs_hash.clone());
                s.staged_head = w.head.clone();
            }
            let with_words = m.repo_states.clone();
            merged.insert(m.node_id.clone(), Merged { gossip, with_words });
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.words.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// Whether the word of `node` about `repo` still counts for `view` (built from gossip alone):
/// not expired, its member in the view, gossip neither showing it yet nor anything newer for
/// that member and repository since it came (noted in the word the first time it is applied).
fn keeps(view: &FarmView, node: &str, repo: &str, w: &mut Word, now: Instant) -> bool {
    if now.saturating_duration_since(w.at) > KEEP {
        return false;
    }
    let Some(m) = view
        .members
        .iter()
        .find(|m| !m.this_node && m.node_id == node)
    else {
        return false;
    };
    let h = Some(w.refs_hash.as_str());
    let (staged, served) = m
        .repo_states
        .get(repo)
        .map(|s| (s.staged_hash.clone(), s.refs_hash.clone()))
        .unwrap_or_default();
    if staged.as_deref() == h || served.as_deref() == h {
        return false;
    }
    let gossip = (staged, served);
    // What the member's states showed when the word came counts only once they are current
    // (before, they may be empty for a while: a member just joined).
    if m.states_current {
        match &w.gossip_then {
            None => w.gossip_then = Some(gossip),
            Some(then) if *then != gossip => return false,
            Some(_) => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::view::{MemberView, RepoState};

    fn member(id: &str, this: bool, states: &[(&str, RepoState)]) -> MemberView {
        let states = states.iter().map(|(r, s)| ((*r).to_owned(), s.clone()));
        MemberView::for_test(id, this, states.collect())
    }

    fn served(h: &str, generation: u64) -> RepoState {
        RepoState {
            generation,
            refs_hash: Some(h.into()),
            ..Default::default()
        }
    }

    fn view() -> FarmView {
        FarmView {
            members: vec![
                member("a", true, &[("P/r", served("h1", 3))]),
                member("b", false, &[("P/r", served("h1", 3))]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_word_shows_as_staged_until_gossip_carries_it() {
        let (mut heard, t0) = (Heard::default(), Instant::now());
        let head = RefName::parse("refs/heads/main");
        heard.record("b", "P/r", Word::new("h2".into(), head.clone(), 1, t0));
        let mut v = view();
        heard.apply(&mut v, t0);
        let b = &v.members[1].repo_states["P/r"];
        assert_eq!(b.staged_hash.as_deref(), Some("h2"));
        assert_eq!(b.staged_head, head);
        assert_eq!(
            b.refs_hash.as_deref(),
            Some("h1"),
            "what it serves is gossip's"
        );
        assert_eq!(heard.len(), 1);
        // Gossip now carries it: the word goes.
        let mut v = view();
        v.members[1]
            .repo_states
            .get_mut("P/r")
            .expect("state")
            .staged_hash = Some("h2".into());
        heard.apply(&mut v, t0);
        assert!(heard.is_empty());
    }

    #[test]
    fn words_about_this_node_unknown_members_or_too_old_are_dropped() {
        let (mut heard, t0) = (Heard::default(), Instant::now());
        heard.record("a", "P/r", Word::new("h2".into(), None, 1, t0));
        heard.record("gone", "P/r", Word::new("h2".into(), None, 1, t0));
        heard.record("b", "P/new", Word::new("h9".into(), None, 1, t0));
        let mut v = view();
        heard.apply(&mut v, t0);
        assert_eq!(v.members[0].repo_states["P/r"].staged_hash, None);
        assert_eq!(
            v.members[1].repo_states["P/new"].staged_hash.as_deref(),
            Some("h9"),
            "a repository gossip does not show yet"
        );
        assert_eq!(heard.len(), 1);
        let mut v = view();
        heard.apply(&mut v, t0 + KEEP + Duration::from_millis(1));
        assert!(heard.is_empty());
        assert!(!v.members[1].repo_states.contains_key("P/new"));
    }

    #[test]
    fn a_merge_is_reused_only_while_gossip_and_the_words_stand_still() {
        let (mut heard, t0) = (Heard::default(), Instant::now());
        heard.record("b", "P/r", Word::new("h2".into(), None, 1, t0));
        heard.record("b", "P/s", Word::new("h7".into(), None, 1, t0));
        let gossip = view();
        let staged = |v: &FarmView, r: &str| v.members[1].repo_states[r].staged_hash.clone();
        for _ in 0..2 {
            let mut v = gossip.clone();
            heard.apply(&mut v, t0);
            assert_eq!(staged(&v, "P/r").as_deref(), Some("h2"));
            assert_eq!(staged(&v, "P/s").as_deref(), Some("h7"));
        }
        assert!(heard.merged["b"]
            .gossip
            .ptr_eq(&gossip.members[1].repo_states));
        // A new word shows at once.
        heard.record("b", "P/r", Word::new("h3".into(), None, 2, t0));
        let mut v = gossip.clone();
        heard.apply(&mut v, t0);
        assert_eq!(staged(&v, "P/r").as_deref(), Some("h3"));
        // Gossip moved (it carries P/s now): its word goes, the merge is made again.
        let mut moved = gossip.clone();
        moved.members[1]
            .repo_states
            .insert("P/s".into(), served("h7", 1));
        let mut v = moved.clone();
        heard.apply(&mut v, t0);
        assert_eq!(staged(&v, "P/r").as_deref(), Some("h3"));
        assert_eq!(staged(&v, "P/s"), None);
        assert_eq!(heard.len(), 1);
        // The last word expires, gossip unchanged: nothing of it is left in the view.
        let mut v = moved.clone();
        heard.apply(&mut v, t0 + KEEP + Duration::from_millis(1));
        assert_eq!(staged(&v, "P/r"), None);
        assert!(heard.merged.is_empty());
    }

    #[test]
    fn the_word_about_the_later_stage_wins_whatever_the_order() {
        let (mut heard, t0) = (Heard::default(), Instant::now());
        heard.record("b", "P/r", Word::new("h2".into(), None, 10, t0));
        heard.record("b", "P/r", Word::new("h3".into(), None, 20, t0));
        heard.record("b", "P/r", Word::new("h1".into(), None, 5, t0));
        let mut v = view();
        heard.apply(&mut v, t0);
        assert_eq!(
            v.members[1].repo_states["P/r"].staged_hash.as_deref(),
            Some("h3")
        );
    }

    #[test]
    fn gossip_that_moved_on_after_the_word_wins() {
        let (mut heard, t0) = (Heard::default(), Instant::now());
        heard.record("b", "P/r", Word::new("h2".into(), None, 1, t0));
        let mut v = view();
        heard.apply(&mut v, t0);
        assert_eq!(
            v.members[1].repo_states["P/r"].staged_hash.as_deref(),
            Some("h2")
        );
        // Gossip shows something else new for that member and repository: the word is stale.
        let mut v = view();
        v.members[1]
            .repo_states
            .get_mut("P/r")
            .expect("state")
            .staged_hash = Some("h4".into());
        heard.apply(&mut v, t0);
        assert_eq!(
            v.members[1].repo_states["P/r"].staged_hash.as_deref(),
            Some("h4")
        );
        assert!(heard.is_empty());
    }

    #[test]
    fn a_word_heard_before_the_members_states_came_survives_their_arrival() {
        let (mut heard, t0) = (Heard::default(), Instant::now());
        heard.record("b", "P/r", Word::new("h2".into(), None, 1, t0));
        // b's states are still being asked for: empty, not current.
        let mut v = view();
        v.members[1].repo_states = Default::default();
        v.members[1].states_current = false;
        heard.apply(&mut v, t0);
        assert_eq!(
            v.members[1].repo_states["P/r"].staged_hash.as_deref(),
            Some("h2")
        );
        // They come (older than the word): the word still counts.
        let mut v = view();
        heard.apply(&mut v, t0);
        assert_eq!(
            v.members[1].repo_states["P/r"].staged_hash.as_deref(),
            Some("h2")
        );
        assert_eq!(heard.len(), 1);
    }
}
