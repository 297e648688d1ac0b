//! This node's ref states in its gossip: a signed `refs:<repo>` for each repository it serves and
//! a `staged:<repo>` for each state it has staged, set when they change and removed when the
//! repository goes; after any change, [`keys::REPOS_REV`] is raised so that peers read them
//! again. A pass looks at the repositories that changed (or, now and then, at all of them, which
//! compares and allocates nothing for those unchanged).

use std::collections::{BTreeMap, HashMap};

use chitchat::NodeState;

use crate::farm::keys::{self, Served, StagedHint};
use crate::farm::signing::{GossipKey, Publisher};
use crate::names::RepoId;
use crate::state::RepoEntry;

/// What was last published for one repository.
#[derive(Default)]
struct Published {
    served: Option<(u64, String)>,
    staged: Option<StagedHint>,
}

/// This node's published ref states.
#[derive(Default)]
pub struct OwnStates {
    published: HashMap<RepoId, Published>,
    rev: u64,
}

/// Where a pass publishes to.
pub struct Target<'a> {
    /// This node's gossip state.
    pub own: &'a mut NodeState,
    /// Who signs.
    pub by: Publisher<'a>,
    /// The farm's gossip key.
    pub key: &'a GossipKey,
}

impl OwnStates {
    /// Brings the gossip in line with every repository of `repos`; true when anything changed.
    pub fn publish_all(&mut self, t: &mut Target<'_>, repos: &BTreeMap<RepoId, RepoEntry>) -> bool {
        let mut changed = false;
        for (id, e) in repos {
            changed |= self.one(t, id, Some(e));
        }
        // A repository no longer mirrored (or gone upstream) is no longer claimed.
        let gone: Vec<RepoId> = self
            .published
            .keys()
            .filter(|id| !repos.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            changed |= self.one(t, &id, None);
        }
        self.raise(t, changed)
    }

    /// Brings the gossip in line for the repositories `ids` only.
    pub fn publish_some<'i>(
        &mut self,
        t: &mut Target<'_>,
        repos: &BTreeMap<RepoId, RepoEntry>,
        ids: impl Iterator<Item = &'i RepoId>,
    ) -> bool {
        let mut changed = false;
        for id in ids {
            changed |= self.one(t, id, repos.get(id));
        }
        self.raise(t, changed)
    }

    fn raise(&mut self, t: &mut Target<'_>, changed: bool) -> bool {
        if changed {
            self.rev += 1;
            t.own.set(keys::REPOS_REV, self.rev);
        }
        changed
    }

    /// Publishes `id`'s entry (`None`: it is gone); true when a key changed.
    fn one(&mut self, t: &mut Target<'_>, id: &RepoId, e: Option<&RepoEntry>) -> bool {
        let served = e
            .filter(|e| e.servable())
            .map(|e| (e.record.generation, e.record.refs_hash.as_str()));
        let staged = e.and_then(|e| e.staged.as_ref());
        let p = self.published.get(id);
        let same_served = p
            .and_then(|p| p.served.as_ref())
            .map(|(g, h)| (*g, h.as_str()))
            == served;
        let same_staged = p.and_then(|p| p.staged.as_ref()) == staged;
        if same_served && same_staged {
            return false;
        }
        let entry = self.published.entry(id.clone()).or_default();
        if !same_served {
            let k = format!("{}{id}", keys::REFS_PREFIX);
            match served {
                Some((generation, h)) => {
                    let v = Served {
                        generation,
                        refs_hash: h.to_owned(),
                    }
                    .encode();
                    t.own.set(k.clone(), t.key.sign(t.by, &k, &v));
                }
                None => t.own.delete(&k),
            }
            entry.served = served.map(|(g, h)| (g, h.to_owned()));
        }
        if !same_staged {
            let k = format!("{}{id}", keys::STAGED_PREFIX);
            match staged {
                Some(s) => t.own.set(k.clone(), t.key.sign(t.by, &k, &s.encode())),
                None => t.own.delete(&k),
            }
            entry.staged = staged.cloned();
        }
        if entry.served.is_none() && entry.staged.is_none() {
            self.published.remove(id);
        }
        true
    }
}
