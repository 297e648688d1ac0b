//! Keeping this node with its farm: noticing it has been cut off, withholding the repositories it
//! cannot vouch for, and triggering the syncs that catch it up (from the leader, or from the
//! upstream when it leads).

use std::time::Duration;

use std::collections::HashSet;

use crate::farm::flip;
use crate::farm::view::FarmView;
use crate::names::RepoId;
use crate::shared::Shared;
use crate::state::RepoEntry;

/// Whether this node has lost every peer it had.
#[derive(Default)]
pub struct Isolation {
    had_peers: bool,
    /// Since when (Unix ms) it sees no other member, after having seen some.
    pub since: Option<i64>,
}

impl Isolation {
    /// Updates from the view; true when the node has just become isolated.
    pub fn update(&mut self, view: &FarmView, now: i64) -> bool {
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

/// Records, per repository (`only` these, or all), whether this node may serve it now (see
/// [`flip::withheld`]).
pub fn mark_withheld(
    shared: &Shared,
    view: &FarmView,
    isolated_since: Option<i64>,
    only: Option<&HashSet<RepoId>>,
) {
    let mut served_again = false;
    {
        let mut repos = shared.repos.write();
        match only {
            None => {
                for (id, e) in repos.iter_mut() {
                    served_again |= mark(view, id, e, isolated_since);
                }
            }
            Some(ids) => {
                for id in ids {
                    if let Some(e) = repos.get_mut(id) {
                        served_again |= mark(view, id, e, isolated_since);
                    }
                }
            }
        }
    }
    if served_again {
        // Whoever waits to see a state served (a push passed on) looks again.
        shared.served_changed.notify_waiters();
    }
}

/// Marks `e`; true when it is served again.
fn mark(view: &FarmView, id: &RepoId, e: &mut RepoEntry, isolated_since: Option<i64>) -> bool {
    let why = flip::withheld(view, &id.to_string(), e, isolated_since);
    if why == e.withheld {
        return false;
    }
    match why {
        Some(w) => {
            tracing::warn!(repo = %id, reason = w, "not serving this repository for now")
        }
        None => {
            tracing::info!(repo = %id, generation = e.record.generation, "serving this repository again")
        }
    }
    e.withheld = why;
    why.is_none()
}

/// Sync triggers that keep this node with its farm, at most one per repository and target
/// every 5 s.
#[derive(Default)]
pub struct Follow {
    last: std::collections::HashMap<crate::names::RepoId, (String, std::time::Instant)>,
    /// The leader of each repository, as of `members`.
    leaders: std::collections::HashMap<crate::names::RepoId, String>,
    /// The member IDs the leaders were computed for (recomputed only when they change).
    members: Vec<String>,
}

impl Follow {
    /// A follower syncs (from the leader) when the leader holds a state it does not serve and
    /// has not left behind; a leader that is behind the farm syncs from the upstream, and so does
    /// a node that has just taken a repository over (its leader died, perhaps mid-sync). Looks
    /// at `only` these repositories, or all (always all when the members changed).
    pub fn leaders(
        &mut self,
        me: &str,
        view: &FarmView,
        repos: &std::collections::BTreeMap<RepoId, RepoEntry>,
        sync: &crate::sync::scheduler::SyncHandle,
        only: Option<&HashSet<RepoId>>,
    ) {
        let ids: Vec<&str> = view.members.iter().map(|m| m.node_id.as_str()).collect();
        let membership_changed = self.members != ids;
        if membership_changed {
            self.members = ids.iter().map(|s| (*s).to_owned()).collect();
        }
        let pairs: Box<dyn Iterator<Item = (&RepoId, &RepoEntry)>> = match only {
            Some(ids) if !membership_changed => {
                Box::new(ids.iter().filter_map(|id| repos.get_key_value(id)))
            }
            _ => Box::new(repos.iter()),
        };
        for (id, entry) in pairs {
            let repo = id.to_string();
            if membership_changed || !self.leaders.contains_key(id) {
                let Some(leader) = crate::farm::leader::leader_of(&repo, ids.iter().copied())
                else {
                    self.leaders.remove(id);
                    continue;
                };
                let before = self.leaders.insert(id.clone(), leader.to_owned());
                if before.is_some_and(|b| b != leader) && leader == me {
                    tracing::info!(repo = %id, "leading this repository now: syncing from the upstream");
                    sync.trigger(crate::sync::scheduler::Trigger::Takeover(id.clone()));
                    continue;
                }
            }
            let Some(leader) = self.leaders.get(id).map(String::as_str) else {
                continue;
            };
            let want = if leader == me {
                if entry.withheld.is_none() || entry.syncing {
                    continue;
                }
                "upstream"
            } else {
                match flip::target_of(view, leader, &repo) {
                    Some(t)
                        if t != entry.record.refs_hash && !entry.kept.iter().any(|k| k == t) =>
                    {
                        t
                    }
                    _ => continue,
                }
            };
            // A running sync fetches what was asked for last; a newer state of the leader's is
            // asked for now (the scheduler runs it once the running sync is done), not at a
            // pass after that sync, which comes paced ([`crate::farm::pace`]). A sync this loop
            // did not ask for may fetch anything: that one is let be.
            if entry.syncing && self.last.get(id).is_none_or(|(h, _)| h == want) {
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::view::{MemberView, RepoState};
    use crate::sync::scheduler::{channel, Trigger};

    fn view(me: &str, leader: &str, repo: &str, leader_staged: &str) -> FarmView {
        let state = RepoState {
            staged_hash: Some(leader_staged.into()),
            ..Default::default()
        };
        FarmView {
            members: vec![
                MemberView::for_test(me, true, Default::default()),
                MemberView::for_test(leader, false, [(repo.to_owned(), state)].into()),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_newer_state_of_the_leader_is_asked_for_while_a_sync_runs() {
        let id = RepoId::parse("P/r").expect("id");
        let repo = id.to_string();
        let leader = crate::farm::leader::leader_of(&repo, ["a", "b"]).expect("leader");
        let me = if leader == "a" { "b" } else { "a" };
        let (sync, mut rx) = channel();
        let mut repos = std::collections::BTreeMap::new();
        let mut entry = RepoEntry::default();
        entry.record.refs_hash = "x0".into();
        repos.insert(id.clone(), entry);
        let only: HashSet<RepoId> = [id.clone()].into();
        let mut follow = Follow::default();
        let v1 = view(me, leader, &repo, "x1");
        follow.leaders(me, &v1, &repos, &sync, None);
        assert_eq!(rx.try_recv().ok(), Some(Trigger::Repo(id.clone())));
        // Its sync runs: the same state is not asked for again.
        repos.get_mut(&id).expect("entry").syncing = true;
        follow.leaders(me, &v1, &repos, &sync, Some(&only));
        assert!(
            rx.try_recv().is_err(),
            "asked again for the state being fetched"
        );
        // The leader staged a newer one meanwhile: asked for at once.
        let v2 = view(me, leader, &repo, "x2");
        follow.leaders(me, &v2, &repos, &sync, Some(&only));
        assert_eq!(rx.try_recv().ok(), Some(Trigger::Repo(id.clone())));
        // A sync this loop did not ask for is let be.
        let mut fresh = Follow::default();
        fresh.leaders(me, &v2, &repos, &sync, None);
        assert!(
            rx.try_recv().is_err(),
            "a sync it did not start was doubled"
        );
    }
}
