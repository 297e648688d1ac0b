//! The farm's consistent state, decided the same way on every member from the gossip view:
//! a member that staged a new state of a repository advertises it only once every live member
//! has staged it too (or the stage timeout passed), and a member that the farm has left behind
//! (or that is cut off from it) does not serve the repository until it has caught up.

use std::time::Duration;

use crate::farm::leader::leader_of;
use crate::farm::view::FarmView;
use crate::state::RepoEntry;

/// What a member holding a staged state should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not every live member has staged it yet.
    Wait,
    /// Advertise it, as this generation.
    Flip(u64),
    /// The farm has moved on to another state: drop this one and sync again.
    Superseded,
}

/// The state the farm converges on for `repo`: the one its leader staged (or serves).
pub fn target<'v>(view: &'v FarmView, repo: &str) -> Option<&'v str> {
    let leader = leader_of(repo, view.members.iter().map(|m| m.node_id.as_str()))?;
    target_of(view, leader, repo)
}

/// [`target`] when the leader is known.
pub fn target_of<'v>(view: &'v FarmView, leader: &str, repo: &str) -> Option<&'v str> {
    let m = view.members.iter().find(|m| m.node_id == leader)?;
    m.repo_states
        .get(repo)
        .and_then(|s| s.staged_hash.as_deref().or(s.refs_hash.as_deref()))
}

fn served_here<'v>(view: &'v FarmView, repo: &str) -> Option<&'v str> {
    view.members
        .iter()
        .find(|m| m.this_node)?
        .repo_states
        .get(repo)?
        .refs_hash
        .as_deref()
}

/// Whether this node may advertise `staged` (the state it has staged of `repo`), having waited
/// `waited` for the others. `own_generation` is the generation it serves now.
pub fn decide(
    view: &FarmView,
    repo: &str,
    staged: &str,
    own_generation: u64,
    waited: Duration,
    timeout: Duration,
) -> Decision {
    let leader = leader_of(repo, view.members.iter().map(|m| m.node_id.as_str()));
    let leading = view
        .members
        .iter()
        .any(|m| m.this_node && Some(m.node_id.as_str()) == leader);
    if !leading {
        // Gossip may not carry the leader's newest staged state yet (this node fetched it on the
        // leader's word): wait for it; a third state, or no word within the timeout, means the
        // farm moved on. A follower never advertises a state its leader does not hold.
        if let Some(t) = target(view, repo) {
            if t != staged {
                let stale = Some(t) == served_here(view, repo);
                return if stale && waited < timeout {
                    Decision::Wait
                } else {
                    Decision::Superseded
                };
            }
        }
    }
    let others = view.members.iter().filter(|m| !m.this_node);
    let all_staged = others.clone().all(|m| {
        m.repo_states.get(repo).is_some_and(|s| {
            s.staged_hash.as_deref() == Some(staged) || s.refs_hash.as_deref() == Some(staged)
        })
    });
    if !all_staged && waited < timeout {
        return Decision::Wait;
    }
    let served = others.filter_map(|m| m.repo_states.get(repo));
    let mut max = own_generation;
    for s in served {
        if s.refs_hash.as_deref() == Some(staged) {
            return Decision::Flip(s.generation);
        }
        max = max.max(s.generation);
    }
    Decision::Flip(max.saturating_add(1))
}

/// Why this node should not serve `repo` now, if it should not: another live member advertises
/// a newer generation whose objects this node does not hold, or this node lost every peer and
/// has not confirmed the state with the upstream since (`isolated_since`, Unix ms).
pub fn withheld(
    view: &FarmView,
    repo: &str,
    entry: &RepoEntry,
    isolated_since: Option<i64>,
) -> Option<&'static str> {
    if !entry.servable() {
        return None;
    }
    if let Some(t) = isolated_since {
        if entry.record.last_success_ms.unwrap_or(0) < t {
            return Some("cut off from the farm and not yet confirmed with the upstream");
        }
    }
    let behind = view.members.iter().filter(|m| !m.this_node).any(|m| {
        m.repo_states.get(repo).is_some_and(|s| {
            s.generation > entry.record.generation
                && s.refs_hash.as_deref().is_some_and(|h| !entry.holds(h))
        })
    });
    behind.then_some("behind the farm: catching up")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::view::{MemberView, RepoState};

    fn member(id: &str, me: bool, gen: u64, served: &str, staged: Option<&str>) -> MemberView {
        let state = RepoState {
            generation: gen,
            refs_hash: Some(served.into()),
            staged_hash: staged.map(str::to_owned),
            staged_head: None,
        };
        MemberView::for_test(id, me, [("P/r".to_owned(), state)].into())
    }

    fn view(members: Vec<MemberView>) -> FarmView {
        FarmView {
            members,
            ..Default::default()
        }
    }

    const T: Duration = Duration::from_secs(15);

    #[test]
    fn flips_only_when_every_member_staged_or_after_the_timeout() {
        let leader = leader_of("P/r", ["a", "b", "c"]).expect("leader");
        let ids = ["a", "b", "c"];
        // Everyone at generation 4 (hash "g"); the leader staged "h".
        let mk = |staged_by: &[&str], me: &str| {
            view(
                ids.iter()
                    .map(|id| {
                        let s = (staged_by.contains(id) || *id == leader).then_some("h");
                        member(id, *id == me, 4, "g", s)
                    })
                    .collect(),
            )
        };
        let d = |v: &FarmView, w| decide(v, "P/r", "h", 4, w, T);
        let others: Vec<&str> = ids.iter().copied().filter(|i| *i != leader).collect();
        assert_eq!(d(&mk(&[], leader), Duration::ZERO), Decision::Wait);
        assert_eq!(d(&mk(&others[..1], leader), Duration::ZERO), Decision::Wait);
        assert_eq!(d(&mk(&others, leader), Duration::ZERO), Decision::Flip(5));
        assert_eq!(
            d(&mk(&others, others[0]), Duration::ZERO),
            Decision::Flip(5)
        );
        assert_eq!(d(&mk(&[], leader), T), Decision::Flip(5));
        // A follower whose staged state is not the leader's gives it up; one whose view of the
        // leader is older than what it staged waits for gossip, up to the timeout.
        let stale = view(
            ids.iter()
                .map(|id| member(id, *id == others[0], 4, "g", None))
                .collect(),
        );
        assert_eq!(d(&stale, Duration::ZERO), Decision::Wait);
        assert_eq!(d(&stale, T), Decision::Superseded);
        assert_eq!(
            decide(&mk(&others, others[0]), "P/r", "x", 4, Duration::ZERO, T),
            Decision::Superseded
        );
        // A member already serving it gives the generation.
        let mut v = mk(&others, others[0]);
        for m in &mut v.members {
            if m.node_id == leader {
                let states = &mut m.repo_states;
                states.get_mut("P/r").expect("state").generation = 5;
                states.get_mut("P/r").expect("state").refs_hash = Some("h".into());
            }
        }
        assert_eq!(d(&v, Duration::ZERO), Decision::Flip(5));
    }

    #[test]
    fn withholds_when_behind_or_cut_off() {
        let mut entry = RepoEntry::default();
        entry.record.generation = 4;
        entry.record.refs_hash = "g".into();
        entry.record.last_success_ms = Some(1000);
        let v = view(vec![
            member("a", true, 4, "g", None),
            member("b", false, 5, "h", None),
        ]);
        assert!(withheld(&v, "P/r", &entry, None).is_some());
        entry.staged = Some(crate::state::StagedHint {
            refs_hash: "h".into(),
            head: None,
        });
        assert_eq!(withheld(&v, "P/r", &entry, None), None);
        // A member still on an older state does not hold this one back.
        let v = view(vec![member("b", false, 3, "f", None)]);
        assert_eq!(withheld(&v, "P/r", &entry, None), None);
        assert!(withheld(&v, "P/r", &entry, Some(2000)).is_some());
        assert_eq!(withheld(&v, "P/r", &entry, Some(500)), None);
    }
}
