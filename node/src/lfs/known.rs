//! Which repositories an object is known to belong to: the store holds each object once,
//! whatever repositories refer to it, but a client reading repository B must never get an object
//! only repository A was shown to have. An object is known for a repository once the upstream's
//! LFS server offered it for that repository (a batch answer with a download action) or another
//! member that knew it for that repository gave it. Kept as empty files
//! `<root>/<PROJECT>/<repo>/<ab>/<oid>`, so it survives restarts and costs no memory.

use std::path::PathBuf;

use crate::lfs::oid::LfsOid;
use crate::names::RepoId;

/// The known (repository, object) pairs of a node.
#[derive(Debug, Clone)]
pub struct Known {
    root: PathBuf,
}

impl Known {
    /// Under `root` (created when first written).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, repo: &RepoId, oid: &LfsOid) -> PathBuf {
        self.root
            .join(repo.project.as_str())
            .join(repo.repo.as_str())
            .join(&oid.as_str()[..2])
            .join(oid.as_str())
    }

    /// Whether `oid` is known for `repo`.
    pub async fn contains(&self, repo: &RepoId, oid: &LfsOid) -> bool {
        tokio::fs::metadata(self.path(repo, oid)).await.is_ok()
    }

    /// Records that `oid` belongs to `repo` (best effort: a failure only costs asking again).
    pub async fn insert(&self, repo: &RepoId, oid: &LfsOid) {
        let path = self.path(repo, oid);
        let made = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::File::create(&path).await.map(drop)
        };
        if let Err(e) = made.await {
            tracing::warn!(repo = %repo, %oid, error = %e, "cannot record an LFS object for a repository");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_object_is_known_for_the_repositories_it_was_recorded_for_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let known = Known::new(dir.path().join("known"));
        let (a, b) = (
            RepoId::parse("P/a").expect("id"),
            RepoId::parse("P/b").expect("id"),
        );
        let oid = LfsOid::parse(&"ab".repeat(32)).expect("oid");
        assert!(!known.contains(&a, &oid).await);
        known.insert(&a, &oid).await;
        assert!(known.contains(&a, &oid).await);
        assert!(!known.contains(&b, &oid).await);
        // Survives a new instance (a restart).
        assert!(
            Known::new(dir.path().join("known"))
                .contains(&a, &oid)
                .await
        );
    }
}
