//! Sync-complete notices (`mirror.notify.url`): after each flip of a state this node fetched from
//! the upstream (in a farm, the repository's leader: one member per flip, unless members fell back
//! to the upstream themselves), a POST of
//! `{project, repo, generation, refsHash, changedRefs}` signed as GitHub signs webhooks
//! (`X-Hub-Signature-256` under `mirror.webhook.secretFile`'s secret). Sent beside the sync,
//! never in its way: retried with backoff, then dropped (and counted).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::names::RepoId;
use crate::secrets::SecretFile;

/// Attempts per notice.
const ATTEMPTS: u32 = 5;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most changed refs one notice lists (`changedRefsTruncated` says when there were more).
pub const MAX_LISTED_REFS: usize = 1000;

/// One ref a flip changed (`before`/`after` absent: created/deleted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangedRef {
    /// Full ref name.
    #[serde(rename = "ref")]
    pub name: String,
    /// Object ID before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Object ID after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// The notice's body.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// Project key.
    pub project: String,
    /// Repository slug.
    pub repo: String,
    /// The farm generation now served.
    pub generation: u64,
    /// Hash of the ref state now served.
    pub refs_hash: String,
    /// The refs that changed (at most [`MAX_LISTED_REFS`]).
    pub changed_refs: Vec<ChangedRef>,
    /// More refs changed than are listed.
    pub changed_refs_truncated: bool,
}

impl Notice {
    /// The notice of `id` now serving `generation`.
    pub fn new(
        id: &RepoId,
        generation: u64,
        refs_hash: &str,
        changed: &[ChangedRef],
        total: usize,
    ) -> Self {
        Self {
            project: id.project.as_str().to_owned(),
            repo: id.repo.as_str().to_owned(),
            generation,
            refs_hash: refs_hash.to_owned(),
            changed_refs: changed.iter().take(MAX_LISTED_REFS).cloned().collect(),
            changed_refs_truncated: total > changed.len().min(MAX_LISTED_REFS),
        }
    }
}

/// Sends notices to `mirror.notify.url`.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
    url: Arc<str>,
    secret: Arc<SecretFile>,
    stop: watch::Receiver<bool>,
    metrics: Arc<dyn Fn(&'static str) + Send + Sync>,
}

impl Notifier {
    /// A notifier posting to `url`, signing with `secret`; retries end when `stop` turns true.
    pub fn new(
        client: reqwest::Client,
        url: &str,
        secret: Arc<SecretFile>,
        stop: watch::Receiver<bool>,
        metrics: Arc<dyn Fn(&'static str) + Send + Sync>,
    ) -> Self {
        Self {
            client,
            url: url.into(),
            secret,
            stop,
            metrics,
        }
    }

    /// Sends `notice` in the background.
    pub fn send(&self, notice: Notice) {
        let n = self.clone();
        tokio::spawn(async move {
            let Ok(body) = serde_json::to_vec(&notice) else {
                return;
            };
            let mut stop = n.stop.clone();
            let mut backoff = Duration::from_secs(1);
            for attempt in 1..=ATTEMPTS {
                let signature = crate::forge::webhook::sign(&n.secret.get(), &body);
                let sent = n
                    .client
                    .post(&*n.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Hub-Signature-256", signature)
                    .header("X-Mirrorfarm-Event", "sync_complete")
                    .body(body.clone())
                    .timeout(ATTEMPT_TIMEOUT)
                    .send()
                    .await;
                let why = match sent {
                    Ok(r) if r.status().is_success() => {
                        (n.metrics)("delivered");
                        return;
                    }
                    Ok(r) => format!("answered {}", r.status().as_u16()),
                    Err(e) => e.without_url().to_string(),
                };
                tracing::warn!(url = %n.url, repo = %format!("{}/{}", notice.project, notice.repo), attempt, error = why, "sync notice not delivered");
                if attempt == ATTEMPTS {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff *= 2;
            }
            (n.metrics)("failed");
        });
    }
}
