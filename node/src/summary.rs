//! What the node says about all its repositories at once — its state word, whether a load
//! balancer may send it requests, the counts, the oldest success it could not confirm — read
//! from the repository map's running tally ([`crate::repo_map`]). The load balancer's health
//! check asks every second and the farm's membership loop every few hundred milliseconds: no
//! walk over the repositories for either.

use std::sync::atomic::Ordering;

use crate::repo_map::Tally;
use crate::shared::Shared;

/// The node-wide facts of one pass (see [`Shared::summary`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The first inventory of repositories has been taken.
    pub listed: bool,
    /// Another farm member has not reached the upstream lately.
    pub farm_stale: bool,
    /// Some repository's upstream host key changed.
    pub host_key_changed: bool,
    /// The upstream refused the farm key for some repository.
    pub unauthorized: bool,
    /// Some repository's last sync could not reach its source.
    pub unreachable: bool,
    /// Every repository still upstream has a complete state.
    pub all_servable: bool,
    /// Some repository still upstream is withheld.
    pub any_withheld: bool,
    /// Some repository with a complete state is withheld (catching up with the farm).
    pub catching_up: bool,
    /// Some repository still upstream shows `ERROR`.
    pub any_error: bool,
    /// A sync of some repository still upstream is running.
    pub any_syncing: bool,
    /// Repositories with a complete state.
    pub servable: usize,
    /// Repositories mirrored.
    pub total: usize,
    /// The oldest last success among repositories whose upstream could not be reached at their
    /// last try (Unix ms).
    pub oldest_unreached_upstream: Option<i64>,
    /// The same, counting a farm member that could not be reached too.
    pub oldest_unreached: Option<i64>,
    /// The newest last success of any repository (Unix ms).
    pub last_success: Option<i64>,
}

impl Summary {
    /// One pass over `repos` (the tests' reference: the node reads its running tally).
    #[cfg(test)]
    pub fn of(
        repos: &std::collections::BTreeMap<crate::names::RepoId, crate::state::RepoEntry>,
        listed: bool,
        farm_stale: bool,
    ) -> Self {
        Self::from_tally(&Tally::of(repos.values()), repos.len(), listed, farm_stale)
    }

    /// The summary of `total` repositories whose parts add up to `t`.
    pub fn from_tally(t: &Tally, total: usize, listed: bool, farm_stale: bool) -> Self {
        Summary {
            listed,
            farm_stale,
            host_key_changed: t.host_key_changed > 0,
            unauthorized: t.unauthorized > 0,
            unreachable: t.unreachable > 0,
            all_servable: t.unservable == 0,
            any_withheld: t.withheld > 0,
            catching_up: t.catching_up > 0,
            any_error: t.errors > 0,
            any_syncing: t.syncing > 0,
            servable: t.servable,
            total,
            oldest_unreached_upstream: t.oldest_unreached_upstream(),
            oldest_unreached: t.oldest_unreached(),
            last_success: t.last_success(),
        }
    }

    /// The node's state word (`STARTING`, `AWAITING_AUTHORIZATION`, `SYNCHRONIZING`,
    /// `SYNCHRONIZED`, `STALE`, `CATCHING_UP`, `ERROR`).
    pub fn state(&self) -> &'static str {
        if !self.listed {
            return "STARTING";
        }
        if self.host_key_changed {
            return "ERROR";
        }
        if self.unauthorized {
            return "AWAITING_AUTHORIZATION";
        }
        if self.catching_up {
            return "CATCHING_UP";
        }
        if self.all_servable {
            // Serving a complete state the upstream could not be asked about lately (by this
            // node, or by the member fetching for the farm).
            if self.farm_stale || self.unreachable {
                return "STALE";
            }
            return "SYNCHRONIZED";
        }
        if self.any_error && !self.any_syncing {
            return "ERROR";
        }
        "SYNCHRONIZING"
    }
}

impl Shared {
    /// The node-wide facts, from the repository map's running tally (no walk over it).
    pub fn summary(&self) -> Summary {
        let listed = self.listed.load(Ordering::Acquire);
        let farm_stale = self.farm_stale_since.load(Ordering::Acquire) != 0;
        self.repos
            .with_tally(|t, total| Summary::from_tally(t, total, listed, farm_stale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::RepoId;
    use crate::state::RepoEntry;
    use crate::store::SyncResult;
    use std::collections::BTreeMap;

    fn entry(result: Option<SyncResult>, generation: u64) -> RepoEntry {
        let mut e = RepoEntry::default();
        e.record.last_result = result;
        e.record.generation = generation;
        e
    }

    fn map(entries: Vec<RepoEntry>) -> BTreeMap<RepoId, RepoEntry> {
        entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| (RepoId::parse(&format!("P/r{i}")).expect("id"), e))
            .collect()
    }

    #[test]
    fn the_state_word_follows_the_worst_repository() {
        let ok = || entry(Some(SyncResult::Ok), 1);
        let word = |v: Vec<RepoEntry>| Summary::of(&map(v), true, false).state();
        assert_eq!(
            Summary::of(&map(vec![ok()]), false, false).state(),
            "STARTING"
        );
        assert_eq!(word(vec![ok(), ok()]), "SYNCHRONIZED");
        assert_eq!(word(vec![ok(), entry(None, 0)]), "SYNCHRONIZING");
        assert_eq!(
            word(vec![ok(), entry(Some(SyncResult::Failed), 0)]),
            "ERROR"
        );
        let mut syncing = entry(Some(SyncResult::Failed), 0);
        syncing.syncing = true;
        assert_eq!(
            word(vec![entry(Some(SyncResult::Failed), 0), syncing]),
            "SYNCHRONIZING"
        );
        assert_eq!(
            word(vec![ok(), entry(Some(SyncResult::NotFound), 0)]),
            "SYNCHRONIZED",
            "a repository gone upstream does not count"
        );
        assert_eq!(
            word(vec![ok(), entry(Some(SyncResult::Unreachable), 1)]),
            "STALE"
        );
        assert_eq!(
            Summary::of(&map(vec![ok()]), true, true).state(),
            "STALE",
            "another member cannot reach the upstream"
        );
        let mut withheld = ok();
        withheld.withheld = Some("behind");
        assert_eq!(word(vec![ok(), withheld]), "CATCHING_UP");
        assert_eq!(
            word(vec![ok(), entry(Some(SyncResult::Unauthorized), 0)]),
            "AWAITING_AUTHORIZATION"
        );
        assert_eq!(
            word(vec![
                entry(Some(SyncResult::Unauthorized), 0),
                entry(Some(SyncResult::HostKeyChanged), 1)
            ]),
            "ERROR"
        );
    }

    #[test]
    fn counts_and_the_oldest_unreached_success() {
        let mut a = entry(Some(SyncResult::Unreachable), 1);
        a.record.last_success_ms = Some(500);
        let mut b = entry(Some(SyncResult::Unreachable), 1);
        b.record.last_success_ms = Some(900);
        b.upstream_tried = true;
        let s = Summary::of(&map(vec![a, b, entry(None, 0)]), true, false);
        assert_eq!((s.servable, s.total), (2, 3));
        assert_eq!(s.last_success, Some(900));
        assert_eq!(s.oldest_unreached, Some(500));
        assert_eq!(
            s.oldest_unreached_upstream,
            Some(900),
            "only a sync that went to the upstream speaks for it"
        );
    }
}
