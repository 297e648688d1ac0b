//! The repository map every part of a node shares, with a running tally of what
//! [`crate::summary::Summary`] reports: each write recounts the entries it touched when it ends,
//! so the node's state word and readiness — read by every health check — cost the same for ten
//! repositories or twenty thousand (a walk over 20 000 entries on each check was a good part of
//! a member's own CPU while it synced).

use std::collections::BTreeMap;
use std::ops::Deref;

use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::names::RepoId;
use crate::state::RepoEntry;
use crate::store::SyncResult;

/// What one entry adds to the tally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Part {
    servable: bool,
    host_key_changed: bool,
    unauthorized: bool,
    unreachable: bool,
    /// Still upstream (its last result is not "not found").
    upstream: bool,
    withheld: bool,
    error: bool,
    syncing: bool,
    last_success: Option<i64>,
    /// Its last success, while its source could not be reached.
    unreached: Option<i64>,
    /// The same, when the last try went to the upstream.
    unreached_upstream: Option<i64>,
}

impl Part {
    /// What `e` adds.
    pub fn of(e: &RepoEntry) -> Self {
        let result = e.record.last_result.as_ref();
        let unreachable = result == Some(&SyncResult::Unreachable);
        let unreached = e.record.last_success_ms.filter(|_| unreachable);
        Self {
            servable: e.servable(),
            host_key_changed: result == Some(&SyncResult::HostKeyChanged),
            unauthorized: result == Some(&SyncResult::Unauthorized),
            unreachable,
            upstream: result != Some(&SyncResult::NotFound),
            withheld: e.withheld.is_some(),
            error: e.state() == "ERROR",
            syncing: e.syncing,
            last_success: e.record.last_success_ms,
            unreached,
            unreached_upstream: unreached.filter(|_| e.upstream_tried),
        }
    }
}

/// Values with their counts: the smallest and largest are at hand, and each may leave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counted(BTreeMap<i64, u32>);

impl Counted {
    fn change(&mut self, v: Option<i64>, add: bool) {
        let Some(v) = v else { return };
        if add {
            *self.0.entry(v).or_default() += 1;
        } else if let Some(n) = self.0.get_mut(&v) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&v);
            }
        }
    }
    fn min(&self) -> Option<i64> {
        self.0.keys().next().copied()
    }
    fn max(&self) -> Option<i64> {
        self.0.keys().next_back().copied()
    }
}

/// The sum of every entry's [`Part`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Entries with a complete state.
    pub servable: usize,
    /// Entries whose upstream host key changed.
    pub host_key_changed: usize,
    /// Entries the upstream refused the farm key for.
    pub unauthorized: usize,
    /// Entries whose last sync could not reach its source.
    pub unreachable: usize,
    /// Entries still upstream without a complete state.
    pub unservable: usize,
    /// Entries still upstream that are withheld.
    pub withheld: usize,
    /// Entries still upstream with a complete state that are withheld.
    pub catching_up: usize,
    /// Entries still upstream that show `ERROR`.
    pub errors: usize,
    /// Entries still upstream whose sync runs.
    pub syncing: usize,
    last_success: Counted,
    unreached: Counted,
    unreached_upstream: Counted,
}

impl Tally {
    /// Adds (or takes away) one entry's part.
    pub fn change(&mut self, p: &Part, add: bool) {
        let step = |n: &mut usize, on: bool| {
            if on {
                *n = if add { *n + 1 } else { n.saturating_sub(1) };
            }
        };
        step(&mut self.servable, p.servable);
        step(&mut self.host_key_changed, p.host_key_changed);
        step(&mut self.unauthorized, p.unauthorized);
        step(&mut self.unreachable, p.unreachable);
        step(&mut self.unservable, p.upstream && !p.servable);
        step(&mut self.withheld, p.upstream && p.withheld);
        step(
            &mut self.catching_up,
            p.upstream && p.servable && p.withheld,
        );
        step(&mut self.errors, p.upstream && p.error);
        step(&mut self.syncing, p.upstream && p.syncing);
        self.last_success.change(p.last_success, add);
        self.unreached.change(p.unreached, add);
        self.unreached_upstream.change(p.unreached_upstream, add);
    }

    /// The tally of `entries`, counted afresh.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a RepoEntry>) -> Self {
        let mut t = Tally::default();
        for e in entries {
            t.change(&Part::of(e), true);
        }
        t
    }

    /// The newest last success of any entry (Unix ms).
    pub fn last_success(&self) -> Option<i64> {
        self.last_success.max()
    }

    /// The oldest last success of an entry whose source could not be reached.
    pub fn oldest_unreached(&self) -> Option<i64> {
        self.unreached.min()
    }

    /// The same, of entries whose last try went to the upstream.
    pub fn oldest_unreached_upstream(&self) -> Option<i64> {
        self.unreached_upstream.min()
    }
}

struct Inner {
    map: BTreeMap<RepoId, RepoEntry>,
    /// Every entry's part as last counted (kept beside the entries, in the same order).
    parts: BTreeMap<RepoId, Part>,
    tally: Tally,
}

/// The repository map with its tally.
pub struct RepoMap {
    inner: RwLock<Inner>,
}

impl RepoMap {
    /// A map holding `map`, counted.
    pub fn new(map: BTreeMap<RepoId, RepoEntry>) -> Self {
        let parts: BTreeMap<RepoId, Part> =
            map.iter().map(|(k, e)| (k.clone(), Part::of(e))).collect();
        let mut tally = Tally::default();
        for p in parts.values() {
            tally.change(p, true);
        }
        Self {
            inner: RwLock::new(Inner { map, parts, tally }),
        }
    }

    /// Reads the map.
    pub fn read(&self) -> MappedRwLockReadGuard<'_, BTreeMap<RepoId, RepoEntry>> {
        RwLockReadGuard::map(self.inner.read(), |i| &i.map)
    }

    /// Writes the map: what the writer touches is recounted when the guard is dropped.
    pub fn write(&self) -> RepoMapWrite<'_> {
        RepoMapWrite {
            inner: self.inner.write(),
            touched: Touched::Some(Vec::new()),
        }
    }

    /// `f` of the tally and the number of entries, as of now (nothing copied).
    pub fn with_tally<R>(&self, f: impl FnOnce(&Tally, usize) -> R) -> R {
        let i = self.inner.read();
        f(&i.tally, i.map.len())
    }
}

enum Touched {
    Some(Vec<RepoId>),
    All,
}

/// Write access to the [`RepoMap`]; reads go through `Deref`, every change through its methods.
pub struct RepoMapWrite<'a> {
    inner: RwLockWriteGuard<'a, Inner>,
    touched: Touched,
}

impl Deref for RepoMapWrite<'_> {
    type Target = BTreeMap<RepoId, RepoEntry>;
    fn deref(&self) -> &Self::Target {
        &self.inner.map
    }
}

impl RepoMapWrite<'_> {
    fn touch(&mut self, id: &RepoId) {
        if let Touched::Some(ids) = &mut self.touched {
            ids.push(id.clone());
        }
    }

    /// `id`'s entry, to change.
    pub fn get_mut(&mut self, id: &RepoId) -> Option<&mut RepoEntry> {
        if !self.inner.map.contains_key(id) {
            return None;
        }
        self.touch(id);
        self.inner.map.get_mut(id)
    }

    /// `id`'s entry, a new one when it has none.
    pub fn get_or_default(&mut self, id: &RepoId) -> &mut RepoEntry {
        self.touch(id);
        self.inner.map.entry(id.clone()).or_default()
    }

    /// Every entry, to change (all are recounted).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&RepoId, &mut RepoEntry)> {
        self.touched = Touched::All;
        self.inner.map.iter_mut()
    }

    /// Takes `id`'s entry out.
    pub fn remove(&mut self, id: &RepoId) -> Option<RepoEntry> {
        let inner = &mut *self.inner;
        if let Some(p) = inner.parts.remove(id) {
            inner.tally.change(&p, false);
        }
        inner.map.remove(id)
    }
}

impl Drop for RepoMapWrite<'_> {
    fn drop(&mut self) {
        let inner = &mut *self.inner;
        match std::mem::replace(&mut self.touched, Touched::Some(Vec::new())) {
            Touched::All => {
                for (id, e) in &inner.map {
                    recount(&mut inner.parts, &mut inner.tally, id, e);
                }
            }
            Touched::Some(ids) => {
                for id in ids {
                    if let Some(e) = inner.map.get(&id) {
                        recount(&mut inner.parts, &mut inner.tally, &id, e);
                    }
                }
            }
        }
    }
}

/// Brings `id`'s part in `parts` and the tally up to date with its entry `e`.
fn recount(parts: &mut BTreeMap<RepoId, Part>, tally: &mut Tally, id: &RepoId, e: &RepoEntry) {
    let new = Part::of(e);
    match parts.get_mut(id) {
        Some(old) if *old == new => {}
        Some(old) => {
            tally.change(old, false);
            tally.change(&new, true);
            *old = new;
        }
        None => {
            tally.change(&new, true);
            parts.insert(id.clone(), new);
        }
    }
}

#[cfg(test)]
mod tests;
