//! The states this node staged and has not flipped yet, listed as a member's fetch of them sees
//! the repository (the served refs, the staged ones under `refs/mirrorfarm/staging/`, the staged
//! HEAD's object, HEAD): the farm channel writes a member's ref advertisement (v0) or `ls-refs`
//! answer (v2) from here instead of starting `git upload-pack` for it. A listing is kept from the sync's stage until its flip, while
//! that sync alone writes the repository's refs, so it is what the repository holds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use parking_lot::Mutex;

use crate::gitcmd::GitError;
use crate::mirror_repo::{STAGING, STAGING_HEAD};
use crate::names::{RefName, RepoId};
use crate::serve::ls_refs::RefList;
use crate::serve::v0_advert::{CapsError, V0Caps};
use crate::sync::fetch::Staged;
use crate::upload_pack;

/// Listings of staged states, by repository.
#[derive(Default)]
pub struct StagedRefs {
    listings: Mutex<HashMap<RepoId, Arc<RefList>>>,
    caps: tokio::sync::OnceCell<Bytes>,
    v0_caps: tokio::sync::OnceCell<V0Caps>,
}

/// Why git's capabilities could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CapsReadError {
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// Its advertisement did not read as expected.
    #[error(transparent)]
    Caps(#[from] CapsError),
}

/// How long git may take to write its capability advertisement.
const CAPS_LIMIT: Duration = Duration::from_secs(60);

impl StagedRefs {
    /// The protocol-v2 capability advertisement a member's fetch gets first: git's own, taken
    /// once from the mirror at `path` (every mirror of a node has the same settings, and the
    /// advertisement names no ref).
    pub async fn caps(&self, path: &Path) -> Result<Bytes, GitError> {
        self.caps
            .get_or_try_init(|| upload_pack::advertisement(path, Some("version=2"), CAPS_LIMIT))
            .await
            .cloned()
    }

    /// The protocol-v0 capabilities for advertisements of staged states: git's own, taken once
    /// from the mirror at `path` (less its `symref=`, which each advertisement writes).
    pub async fn v0_caps(&self, path: &Path) -> Result<&V0Caps, CapsReadError> {
        self.v0_caps
            .get_or_try_init(|| async {
                let adv = upload_pack::advertisement(path, None, CAPS_LIMIT).await?;
                Ok(V0Caps::from_advertisement(&adv)?)
            })
            .await
    }

    /// Keeps the listing of `staged`, just staged for `id` (replacing any older one), until the
    /// guard returned is dropped: before the sync flips, or when it ends (or is stopped) without.
    pub fn keep<'a>(&'a self, id: &RepoId, staged: &Staged) -> Kept<'a> {
        let list = Arc::new(listing(staged));
        self.listings.lock().insert(id.clone(), list);
        Kept {
            refs: self,
            id: id.clone(),
        }
    }

    /// The listing of the state staged for `id`, if its sync is between stage and flip.
    pub fn get(&self, id: &RepoId) -> Option<Arc<RefList>> {
        self.listings.lock().get(id).cloned()
    }
}

/// Keeps a listing while it lives ([`StagedRefs::keep`]).
pub struct Kept<'a> {
    refs: &'a StagedRefs,
    id: RepoId,
}

impl Drop for Kept<'_> {
    fn drop(&mut self) {
        self.refs.listings.lock().remove(&self.id);
    }
}

/// What `git upload-pack` with the staged state un-hidden lists: HEAD, the served refs, the
/// staged refs under [`STAGING`] and [`STAGING_HEAD`], in name order.
pub fn listing(staged: &Staged) -> RefList {
    let (served, served_head) = staged.served();
    let mut refs: Vec<(String, String, Option<String>)> = served
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.oid.clone(), v.peeled.clone()))
        .collect();
    for (n, v) in &staged.refs {
        let rest = n.as_str().strip_prefix("refs/").unwrap_or(n.as_str());
        refs.push((format!("{STAGING}{rest}"), v.oid.clone(), v.peeled.clone()));
    }
    if let Some(oid) = &staged.head_oid {
        // The staged HEAD names what one of the staged refs names: peeled the same way.
        let peeled = staged
            .refs
            .values()
            .find(|v| &v.oid == oid)
            .and_then(|v| v.peeled.clone());
        refs.push((STAGING_HEAD.to_owned(), oid.clone(), peeled));
    }
    refs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let head = served_head.map(|target| {
        let oid = RefName::parse(target)
            .and_then(|n| served.get(&n))
            .map(|v| v.oid.clone());
        (target.to_owned(), oid)
    });
    RefList::new(head, refs)
}

#[cfg(test)]
mod tests;
