//! Prefetch: when the repository's leader has staged a state that brings new commits, the LFS
//! objects they point to are downloaded from the upstream before anyone asks
//! (`mirror.lfs.prefetch`, at most `mirror.lfs.prefetch.maxSize` bytes per sync). The scan reads
//! the new commits in-process with libgit2 ([`crate::lfs::scan`]) on a blocking thread; the
//! downloads are the service's own (one per object farm-wide; a client asking meanwhile follows
//! the download under way). It runs beside the flip, never delaying it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::lfs::batch::BatchRequest;
use crate::lfs::service::Lfs;
use crate::lfs::upstream::Auth;
use crate::lfs::LfsOid;
use crate::names::RepoId;

/// Objects asked about per batch call.
const BATCH: usize = 100;

/// Starts prefetching the LFS objects of `new_tips` (commit IDs, hex) of `id` in the background,
/// the commits `old_tips` (the tips served now) reach left out.
pub fn start(lfs: &Arc<Lfs>, id: &RepoId, repo: PathBuf, new_tips: Vec<String>, old: Vec<String>) {
    if !lfs.config.prefetch || new_tips.is_empty() {
        return;
    }
    let (lfs, id) = (lfs.clone(), id.clone());
    tokio::spawn(async move {
        let budget = lfs.config.prefetch_max;
        let scanned = tokio::task::spawn_blocking(move || {
            crate::lfs::scan::scan(&repo, &new_tips, &old, budget)
        })
        .await;
        let found = match scanned {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::warn!(repo = %id, error = %e, "LFS prefetch: cannot scan the new commits");
                return;
            }
            Err(_) => return,
        };
        if found.truncated {
            tracing::info!(repo = %id, bytes = found.bytes, "LFS prefetch: past mirror.lfs.prefetch.maxSize; the rest comes when asked");
        }
        let mut wanted = Vec::new();
        for p in found.pointers {
            if !lfs.holds_for(&id, &p.oid).await {
                wanted.push((p.oid, p.size));
            }
        }
        if wanted.is_empty() {
            return;
        }
        let elsewhere = lfs
            .farm_has(
                &id,
                &wanted.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>(),
            )
            .await;
        wanted.retain(|(o, _)| !elsewhere.contains(o));
        tracing::debug!(repo = %id, objects = wanted.len(), "LFS prefetch");
        for chunk in wanted.chunks(BATCH) {
            fetch_chunk(&lfs, &id, chunk).await;
        }
    });
}

/// One batch call for `chunk`, then its downloads; waits for them to end.
async fn fetch_chunk(lfs: &Arc<Lfs>, id: &RepoId, chunk: &[(LfsOid, u64)]) {
    let req = BatchRequest::download(chunk.iter().map(|(oid, size)| (oid, *size)));
    let answer = match lfs.upstream.batch(id, &Auth::Farm, &req).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(repo = %id, error = %e, "LFS prefetch: cannot ask the upstream's LFS server");
            return;
        }
    };
    let mut flights = Vec::new();
    for (oid, size) in chunk {
        let action = answer
            .objects
            .iter()
            .find(|o| o.oid == oid.as_str())
            .and_then(|o| o.actions.as_ref()?.download.clone());
        let Some(action) = action else {
            tracing::info!(repo = %id, %oid, "LFS prefetch: the upstream has no such object");
            continue;
        };
        match lfs.download(id, oid, *size, Some(action)).await {
            Ok(crate::lfs::flight::Started::Flying(f)) => flights.push(f),
            Ok(crate::lfs::flight::Started::Stored) => {}
            Err(e) => tracing::warn!(repo = %id, %oid, error = %e, "LFS prefetch failed"),
        }
    }
    for f in flights {
        if f.finished().await.is_ok() {
            lfs.stats.prefetched();
        }
    }
}
