//! Decisions of the upstream, cached per (credential, repository): grants for `mirror.auth.cacheTtl`,
//! denials for a much shorter time, one upstream check however many requests ask at once, and
//! grants kept working for `mirror.auth.offlineTtl` past their TTL while the upstream cannot be
//! asked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::access::credential::{CredKey, Credential};
use crate::access::upstream_check::{CheckError, Upstream, Verdict};
use crate::names::RepoId;

/// Denials (bad credentials, no access) are reused this long at most.
const DENIAL_TTL: Duration = Duration::from_secs(10);
/// Above this many cached decisions, the stale ones are dropped.
const MAX_ENTRIES: usize = 100_000;

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// May read; `offline` when only a cached grant past its TTL says so.
    Granted {
        /// Decided from a cached grant while the upstream cannot be asked.
        offline: bool,
        /// When the upstream said so (ms since the epoch): a grant lasts the TTL from then.
        decided_ms: i64,
    },
    /// Wrong credentials.
    BadCredentials,
    /// No access (or no such repository upstream).
    NoAccess,
    /// The upstream cannot be asked and nothing cached covers the request.
    Unavailable(String),
}

#[derive(Clone, Copy)]
struct Cached {
    verdict: Verdict,
    at: Instant,
    at_ms: i64,
}

type Key = (CredKey, RepoId);
type Flight = Arc<OnceCell<Result<Verdict, CheckError>>>;

/// When the upstream last failed a check, and how (cleared by the next answer).
#[derive(Debug, Clone)]
pub struct Offline {
    /// Since when.
    pub since: SystemTime,
    /// The last error.
    pub error: String,
}

/// The decision cache.
pub struct Decisions {
    upstream: Upstream,
    ttl: Duration,
    offline_ttl: Duration,
    cache: Mutex<HashMap<Key, Cached>>,
    inflight: Mutex<HashMap<Key, Flight>>,
    offline: Mutex<Option<Offline>>,
}

impl Decisions {
    /// A cache asking `upstream`.
    pub fn new(upstream: Upstream, ttl: Duration, offline_ttl: Duration) -> Self {
        Self {
            upstream,
            ttl,
            offline_ttl,
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            offline: Mutex::new(None),
        }
    }

    /// The upstream these decisions come from.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Whether checks are failing now (authentication runs on cached grants).
    pub fn offline(&self) -> Option<Offline> {
        self.offline.lock().clone()
    }

    fn lifetime(&self, v: Verdict) -> Duration {
        match v {
            Verdict::Granted => self.ttl,
            _ => self.ttl.min(DENIAL_TTL),
        }
    }

    fn fresh(&self, key: &Key, now: Instant) -> Option<Cached> {
        let c = *self.cache.lock().get(key)?;
        (now < c.at + self.lifetime(c.verdict)).then_some(c)
    }

    fn remember(&self, key: Key, verdict: Verdict) {
        let now = Instant::now();
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_ENTRIES {
            let keep = self.ttl + self.offline_ttl;
            cache.retain(|_, c| c.verdict == Verdict::Granted && now < c.at + keep);
        }
        cache.insert(
            key,
            Cached {
                verdict,
                at: now,
                at_ms: crate::store::now_ms(),
            },
        );
    }

    /// Decides whether `cred` may read `repo` (counted in `metrics`).
    pub async fn decide(
        &self,
        cred: &Credential,
        repo: &RepoId,
        metrics: &crate::metrics::NodeMetrics,
    ) -> Outcome {
        let key = (cred.key, repo.clone());
        if let Some(c) = self.fresh(&key, Instant::now()) {
            metrics.auth_decision("cache", c.verdict.label());
            return outcome(c.verdict, c.at_ms);
        }
        let flight = self.inflight.lock().entry(key.clone()).or_default().clone();
        let mut asked = false;
        let answer = flight
            .get_or_init(|| async {
                asked = true;
                let r = self.upstream.check(cred, repo).await;
                if let Ok(v) = &r {
                    // Cached before the flight ends: a request arriving after it finds this.
                    self.remember(key.clone(), *v);
                }
                r
            })
            .await
            .clone();
        {
            let mut inflight = self.inflight.lock();
            if inflight.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                inflight.remove(&key);
            }
        }
        let source = if asked { "upstream" } else { "shared" };
        match answer {
            Ok(v) => {
                if asked {
                    *self.offline.lock() = None;
                }
                metrics.auth_decision(source, v.label());
                let at_ms = self
                    .cache
                    .lock()
                    .get(&key)
                    .map_or_else(crate::store::now_ms, |c| c.at_ms);
                outcome(v, at_ms)
            }
            Err(e) => {
                if asked {
                    tracing::warn!(error = %e, repo = %repo, "cannot check credentials with the upstream");
                    let mut off = self.offline.lock();
                    let since = off.as_ref().map_or_else(SystemTime::now, |o| o.since);
                    *off = Some(Offline {
                        since,
                        error: e.to_string(),
                    });
                }
                let cached = self.cache.lock().get(&key).copied();
                match cached {
                    Some(c)
                        if c.verdict == Verdict::Granted
                            && Instant::now() < c.at + self.ttl + self.offline_ttl =>
                    {
                        metrics.auth_decision("cache", "offline");
                        Outcome::Granted {
                            offline: true,
                            decided_ms: c.at_ms,
                        }
                    }
                    _ => {
                        metrics.auth_decision(source, "unavailable");
                        Outcome::Unavailable(e.to_string())
                    }
                }
            }
        }
    }
}

fn outcome(v: Verdict, decided_ms: i64) -> Outcome {
    match v {
        Verdict::Granted => Outcome::Granted {
            offline: false,
            decided_ms,
        },
        Verdict::BadCredentials => Outcome::BadCredentials,
        Verdict::NoAccess => Outcome::NoAccess,
    }
}
