//! What the scheduler does when a sync ends: the record (memory and store), a follow-up sync
//! when one was asked for meanwhile, a retry with backoff after a failure, the directory of a
//! repository gone upstream removed.

use std::time::Duration;

use tokio::time::Instant;

use super::{remove_dir, Scheduler, RETRY_AUTH, RETRY_MAX, RETRY_MIN};
use crate::names::RepoId;
use crate::store::SyncResult;
use crate::sync::fetch::{SyncFailure, Synced};
use crate::sync::record;

impl Scheduler {
    /// Takes the end of `id`'s sync (`res`, after `took`; `from_upstream`: it fetched from the
    /// upstream rather than from a member).
    pub(super) async fn finished(
        &mut self,
        id: RepoId,
        res: Result<Synced, SyncFailure>,
        from_upstream: bool,
        took: Duration,
    ) {
        self.running.remove(&id);
        let fingerprint = self.fingerprints.remove(&id);
        let Some(prev) = self.shared.repos.read().get(&id).map(|e| e.record.clone()) else {
            // Removed from the configuration while it synced.
            remove_dir(self.shared.repo_path(&id)).await;
            return;
        };
        let mut rec = record::next(&prev, &res, &self.shared.config.upstream.host_label());
        rec.last_duration_ms = Some(took.as_millis() as u64);
        if let Ok(Synced {
            size_bytes: Some(b),
            ..
        }) = &res
        {
            rec.size_bytes = Some(*b);
        }
        let kind = rec.last_result.clone();
        if kind == Some(SyncResult::NotFound) {
            remove_dir(self.shared.repo_path(&id)).await;
        }
        // Durable within a second, together with other syncs' records: a new served state was
        // written at its flip; what a crash may lose here is this attempt's times and result.
        // A repository gone upstream (its directory removed) is recorded so at once.
        let written = if kind == Some(SyncResult::NotFound) {
            self.shared.store.write_now(&id, Some(rec.clone())).await
        } else {
            self.shared.store.write_soon(&id, rec.clone())
        };
        if let Err(e) = written {
            tracing::error!(repo = %id, error = %e, "cannot record sync result");
        }
        let again = matches!(&res, Ok(s) if s.again);
        let follow_up = self.pending.remove(&id) || again;
        // Written in place: what others set meanwhile (the farm's `withheld`, a staged state)
        // stays as they left it.
        if let Some(e) = self.shared.repos.write().get_mut(&id) {
            record::finished(e, rec, follow_up);
            e.upstream_tried = from_upstream;
            // The state the fingerprint names (or a newer one) is served now — when it came from
            // the upstream (a member may have held an older one).
            e.upstream_fingerprint = match &res {
                Ok(_) if from_upstream => fingerprint.or(e.upstream_fingerprint.take()),
                Ok(_) => e
                    .upstream_fingerprint
                    .take()
                    .filter(|_| fingerprint.is_none()),
                Err(_) => None,
            };
        }
        self.shared.repo_changed(&id);
        if follow_up {
            self.start(id);
            return;
        }
        let delay = match kind {
            Some(SyncResult::Unauthorized) => Some(RETRY_AUTH),
            Some(SyncResult::Unreachable) | Some(SyncResult::Failed) => {
                let prev = self.retries.get(&id).map(|(_, d)| *d);
                let max = RETRY_MAX.min(self.shared.config.sync_interval);
                Some(prev.map(|d| (d * 2).min(max)).unwrap_or(RETRY_MIN).min(max))
            }
            _ => None,
        };
        match delay {
            Some(d) => {
                self.retries.insert(id, (Instant::now() + d, d));
            }
            None => {
                self.retries.remove(&id);
            }
        }
    }
}
