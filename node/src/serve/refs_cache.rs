//! Ref advertisements from memory. For each repository the node keeps, per ref state (generation),
//! git's own protocol-v0 advertisement and protocol-v2 capability advertisement (captured once
//! from `git upload-pack` when the state is first asked for) and the ref list, from which it
//! answers v2 `ls-refs` itself — byte for byte what `git upload-pack` would send — so listing refs
//! costs no process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;

use crate::mirror_repo::MirrorRepo;
use crate::names::{RefName, RepoId};
use crate::packed_refs::refs_hash;
pub use crate::serve::ls_refs::{LsRefs, RefList};

/// One ref state of one repository, ready to be served.
#[derive(Debug)]
pub struct Advertised {
    /// Hash of the ref state (HEAD included) the bytes below describe.
    pub key: String,
    /// `git upload-pack --stateless-rpc --advertise-refs` output for protocol v0/v1.
    pub v0: Bytes,
    /// The same for protocol v2 (the capability advertisement).
    pub v2_caps: Bytes,
    /// HEAD and the visible refs, from which `ls-refs` is answered.
    pub list: RefList,
}

impl Advertised {
    /// The `ls-refs` response, rendered once per distinct arguments.
    pub fn ls_refs_cached(&self, args: &LsRefs) -> Bytes {
        self.list.ls_refs_cached(args)
    }
}

/// Why an advertisement could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the refs of {repo}: {message}")]
pub struct CacheError {
    repo: String,
    message: String,
}

/// Per-repository cache of [`Advertised`] states.
#[derive(Default)]
pub struct RefsCache {
    entries: Mutex<HashMap<RepoId, Arc<Advertised>>>,
    builders: Mutex<HashMap<RepoId, Arc<tokio::sync::Mutex<()>>>>,
}

const LOCAL: Duration = Duration::from_secs(120);

impl RefsCache {
    /// The advertisement of `id`'s state `key` (the refs hash the node recorded for it), built
    /// from the repository at `path` when not cached; concurrent misses build it once.
    pub async fn get(
        &self,
        id: &RepoId,
        path: &Path,
        key: &str,
    ) -> Result<Arc<Advertised>, CacheError> {
        if let Some(a) = self.cached(id, key) {
            return Ok(a);
        }
        let builder = self.builders.lock().entry(id.clone()).or_default().clone();
        let _guard = builder.lock().await;
        if let Some(a) = self.cached(id, key) {
            return Ok(a);
        }
        let built = Arc::new(build(path).await.map_err(|message| CacheError {
            repo: id.to_string(),
            message,
        })?);
        self.entries.lock().insert(id.clone(), built.clone());
        Ok(built)
    }

    fn cached(&self, id: &RepoId, key: &str) -> Option<Arc<Advertised>> {
        let entries = self.entries.lock();
        entries.get(id).filter(|a| a.key == key).cloned()
    }

    /// Forgets a repository (no longer mirrored).
    pub fn forget(&self, id: &RepoId) {
        self.entries.lock().remove(id);
    }
}

async fn advertise(path: &Path, protocol: Option<&str>) -> Result<Bytes, String> {
    crate::upload_pack::advertisement(path, protocol, LOCAL)
        .await
        .map_err(|e| e.to_string())
}

/// Reads the repository's state and git's advertisements of it; retries when a sync flips the
/// state in between, so the pieces always describe one state.
async fn build(path: &Path) -> Result<Advertised, String> {
    let repo = MirrorRepo::new(PathBuf::from(path));
    for _ in 0..5 {
        let before = read_state(&repo).await?;
        let v0 = advertise(path, None).await?;
        let v2_caps = advertise(path, Some("version=2")).await?;
        let after = read_state(&repo).await?;
        if before.0 == after.0 {
            let (key, head, refs) = after;
            return Ok(Advertised {
                key,
                v0,
                v2_caps,
                list: RefList::new(head, refs),
            });
        }
    }
    Err("the refs kept changing while being read".into())
}

type State = (
    String,
    Option<(String, Option<String>)>,
    Vec<(String, String, Option<String>)>,
);

async fn read_state(repo: &MirrorRepo) -> Result<State, String> {
    let map = repo.read_refs().await.map_err(|e| e.to_string())?;
    let target = repo.head_target().await.map_err(|e| e.to_string())?;
    let head_ref = target.as_deref().and_then(RefName::parse);
    let key = refs_hash(&map, head_ref.as_ref());
    let head = target.map(|t| {
        let oid = RefName::parse(&t)
            .and_then(|n| map.get(&n))
            .map(|v| v.oid.clone());
        (t, oid)
    });
    let refs = map
        .into_iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.oid, v.peeled))
        .collect();
    Ok((key, head, refs))
}
