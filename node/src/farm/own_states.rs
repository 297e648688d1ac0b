//! This node's ref states in its gossip: a signed `refs:<repo>` for each repository it serves and
//! a `staged:<repo>` for each state it has staged, set when they change and removed when the
//! repository goes; after any change, [`keys::REPOS_REV`] is raised so that peers read them
//! again. A pass over unchanged repositories compares and allocates nothing.

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

impl OwnStates {
    /// Brings `own` (this node's gossip state, published by `by`) in line with `repos`; true
    /// when anything changed.
    pub fn publish(
        &mut self,
        own: &mut NodeState,
        by: Publisher<'_>,
        key: &GossipKey,
        repos: &BTreeMap<RepoId, RepoEntry>,
    ) -> bool {
        let mut changed = false;
        let mut seen = 0usize;
        for (id, e) in repos {
            let served = e
                .servable()
                .then_some((e.record.generation, e.record.refs_hash.as_str()));
            let staged = e.staged.as_ref();
            let p = self.published.get(id);
            let same_served = p
                .and_then(|p| p.served.as_ref())
                .map(|(g, h)| (*g, h.as_str()))
                == served;
            let same_staged = p.and_then(|p| p.staged.as_ref()) == staged;
            if served.is_some() || staged.is_some() {
                seen += 1;
            }
            if same_served && same_staged {
                continue;
            }
            changed = true;
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
                        own.set(k.clone(), key.sign(by, &k, &v));
                    }
                    None => own.delete(&k),
                }
                entry.served = served.map(|(g, h)| (g, h.to_owned()));
            }
            if !same_staged {
                let k = format!("{}{id}", keys::STAGED_PREFIX);
                match staged {
                    Some(s) => own.set(k.clone(), key.sign(by, &k, &s.encode())),
                    None => own.delete(&k),
                }
                entry.staged = staged.cloned();
            }
            if entry.served.is_none() && entry.staged.is_none() {
                self.published.remove(id);
            }
        }
        if self.published.len() != seen {
            // A repository no longer mirrored (or gone upstream) is no longer claimed.
            self.published.retain(|id, p| {
                let keep = repos.contains_key(id);
                if !keep {
                    if p.served.is_some() {
                        own.delete(&format!("{}{id}", keys::REFS_PREFIX));
                    }
                    if p.staged.is_some() {
                        own.delete(&format!("{}{id}", keys::STAGED_PREFIX));
                    }
                    changed = true;
                }
                keep
            });
        }
        if changed {
            self.rev += 1;
            own.set(keys::REPOS_REV, self.rev);
        }
        changed
    }
}
