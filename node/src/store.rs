//! The node's durable state in a heed (LMDB) environment under `<home>/data`:
//! identity (node ID, farm ID, data format) and one record per mirrored repository.
//!
//! Repository records are written through one writer thread ([`Store::write_now`],
//! [`Store::write_soon`]); the other calls block on LMDB briefly (reads, start-up).

use heed::types::{SerdeJson, Str};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};

use crate::names::RepoId;

mod writer;
pub use writer::SOON;

/// Version of the on-disk data format written by this build.
pub const DATA_FORMAT: u32 = 1;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// LMDB failed.
    #[error("state store {path}: {source}")]
    Heed {
        /// Store directory.
        path: String,
        /// Cause.
        source: heed::Error,
    },
    /// The home was written by a newer mirrorfarm.
    #[error("state store was written by a newer mirrorfarm (data format {found}, this build reads up to {DATA_FORMAT}); upgrade mirrorfarm")]
    TooNew {
        /// Format found.
        found: u32,
    },
    /// The thread that writes repository records could not start.
    #[error("state store: cannot start the record writer: {0}")]
    Thread(#[source] std::io::Error),
    /// The thread that writes repository records is gone (the node is stopping).
    #[error("state store: the record writer has stopped")]
    WriterGone,
    /// A commit failed for every record in it.
    #[error("{0}")]
    Shared(std::sync::Arc<StoreError>),
}

pub use mirrorfarm_common::status::SyncResult;

/// The wall clock as records keep it: Unix milliseconds (0 before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Durable per-repository record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoRecord {
    /// Counter of ref states applied; 0 means never synced.
    pub generation: u64,
    /// Hash of the visible ref map of this generation (hex).
    pub refs_hash: String,
    /// When the last sync attempt ended (Unix ms).
    pub last_sync_ms: Option<i64>,
    /// When the last successful sync ended (Unix ms).
    pub last_success_ms: Option<i64>,
    /// Result of the last attempt.
    pub last_result: Option<SyncResult>,
    /// A short message about the last attempt (empty when OK).
    pub last_message: String,
    /// How long the last attempt took (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<u64>,
    /// Bytes the repository takes on disk, counted after the last change was maintained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    env: Env<WithoutTls>,
    meta: Database<'static, Str, Str>,
    repos: Database<'static, Str, SerdeJson<RepoRecord>>,
    writer: std::sync::Arc<writer::Writer>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`; refuses a newer data format and upgrades older ones.
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let err = |source| StoreError::Heed {
            path: dir.display().to_string(),
            source,
        };
        // SAFETY: the home lock guarantees this process is the only one opening the environment,
        // and it is opened once per process. (heed's open is the one unsafe call in mirrorfarm.)
        #[allow(unsafe_code)]
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(256 * 1024 * 1024)
                .max_dbs(4)
                .open(dir)
        }
        .map_err(err)?;
        let wtxn = env.write_txn().map_err(err)?;
        let (meta, repos) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| {
                let meta = dbo.create_database::<Str, Str>(wtxn, Some("meta"))?;
                let repos =
                    dbo.create_database::<Str, SerdeJson<RepoRecord>>(wtxn, Some("repos"))?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((meta, repos)))
            })
            .map_err(err)?
            .unwrap_commit();
        let writer = writer::Writer::start(env.clone(), repos).map_err(StoreError::Thread)?;
        let store = Self {
            env,
            meta,
            repos,
            writer: std::sync::Arc::new(writer),
        };
        store.check_format()?;
        Ok(store)
    }

    fn err(&self, source: heed::Error) -> StoreError {
        StoreError::Heed {
            path: self.env.path().display().to_string(),
            source,
        }
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let found = self.meta_get("format")?.and_then(|v| v.parse::<u32>().ok());
        match found {
            Some(f) if f > DATA_FORMAT => Err(StoreError::TooNew { found: f }),
            Some(f) if f == DATA_FORMAT => Ok(()),
            // No format yet (new home) or an older one: nothing to migrate before format 1.
            _ => self.meta_put("format", &DATA_FORMAT.to_string()),
        }
    }

    /// Reads a metadata value.
    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let rtxn = self.env.read_txn().map_err(|e| self.err(e))?;
        let v = self.meta.get(&rtxn, key).map_err(|e| self.err(e))?;
        Ok(v.map(str::to_owned))
    }

    /// Writes a metadata value.
    pub fn meta_put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn().map_err(|e| self.err(e))?;
        self.meta
            .put(&mut wtxn, key, value)
            .map_err(|e| self.err(e))?;
        wtxn.commit().map_err(|e| self.err(e))
    }

    /// Every repository record.
    pub fn repos(&self) -> Result<Vec<(String, RepoRecord)>, StoreError> {
        let rtxn = self.env.read_txn().map_err(|e| self.err(e))?;
        let iter = self.repos.iter(&rtxn).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.to_owned(), v));
        }
        Ok(out)
    }

    /// One repository's record.
    pub fn repo(&self, id: &RepoId) -> Result<Option<RepoRecord>, StoreError> {
        let rtxn = self.env.read_txn().map_err(|e| self.err(e))?;
        self.repos.get(&rtxn, &id.key()).map_err(|e| self.err(e))
    }

    /// Writes one repository's record (`None`: forgets the repository), together with the
    /// others written meanwhile (one commit), and waits until it is durable.
    pub async fn write_now(&self, id: &RepoId, rec: Option<RepoRecord>) -> Result<(), StoreError> {
        self.writer.now(id, rec).await
    }

    /// Writes one repository's record within [`SOON`], together with the others written
    /// meanwhile; returns at once. For what a crash may lose (a finished sync's times and
    /// result), not for a new served state.
    pub fn write_soon(&self, id: &RepoId, rec: RepoRecord) -> Result<(), StoreError> {
        self.writer.soon(id, rec)
    }

    /// Makes every record written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_record_writer_commits_in_order_now_soon_and_at_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let (a, b) = (
            RepoId::parse("P/a").expect("id"),
            RepoId::parse("P/b").expect("id"),
        );
        let rec = |generation| RepoRecord {
            generation,
            ..Default::default()
        };
        // "Now": durable when it returns.
        s.write_now(&a, Some(rec(1))).await.expect("now");
        assert_eq!(s.repo(&a).expect("get").map(|r| r.generation), Some(1));
        // "Soon": waits for company, then is committed within SOON without anyone asking.
        s.write_soon(&b, rec(2)).expect("soon");
        assert_eq!(s.repo(&b).expect("get"), None, "not committed at once");
        let deadline = std::time::Instant::now() + SOON * 5;
        while s.repo(&b).expect("get").is_none() {
            assert!(std::time::Instant::now() < deadline, "never committed");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The last word on a repository wins: a removal after a waiting record removes it.
        s.write_soon(&a, rec(3)).expect("soon");
        s.write_now(&a, None).await.expect("forget");
        s.flush().await.expect("flush");
        assert_eq!(s.repo(&a).expect("get"), None);
        // A flush makes what waits durable.
        s.write_soon(&b, rec(4)).expect("soon");
        s.flush().await.expect("flush");
        assert_eq!(s.repo(&b).expect("get").map(|r| r.generation), Some(4));
    }

    #[tokio::test]
    async fn records_survive_reopen_and_newer_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = RepoId::parse("P/r").expect("id");
        {
            let s = Store::open(dir.path()).expect("open");
            let rec = RepoRecord {
                generation: 3,
                last_result: Some(SyncResult::Ok),
                ..Default::default()
            };
            s.write_now(&id, Some(rec)).await.expect("put");
        }
        {
            let s = Store::open(dir.path()).expect("reopen");
            assert_eq!(s.repo(&id).expect("get").map(|r| r.generation), Some(3));
            s.meta_put("format", "99").expect("put format");
        }
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { found: 99 })
        ));
    }
}
