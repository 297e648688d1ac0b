//! The pack cache: identical upload-pack requests against the same ref state — a CI fleet cloning
//! one commit — are answered from one `git upload-pack` run whose response is written to disk and
//! streamed to every client asking for it, while it is being written and afterwards (as Gitaly's
//! pack-objects cache does). Entries are keyed by the repository, its ref state and the whole
//! request; bounded in size (least recently used go first); an entry is only ever served complete
//! or while its one writer is still writing it — a failed or interrupted one is dropped, and the
//! cache directory is emptied at start (so a file left by a killed writer is never read). An
//! entry whose file cannot take more (the disk filled) is finished from memory for the clients
//! already reading it and not kept.
//!
//! The size bound counts entries being written too: a growing entry first pushes out the least
//! recently used complete ones, and one the cache cannot hold even then is taken out of the
//! index — finished for the clients already reading it, not kept. A writer whose every reader
//! has left stops, unless it finishes within [`ABANDON_GRACE`].

mod stream;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use self::stream::CachedStream;
use self::stream::{Progress, Readers};
use self::writer::{EntryFile, Slot, WriteError, Written};
use crate::names::RepoId;
use crate::upload_pack::{self, Exposure, Mode};

/// How long a writer whose every reader has left goes on: one that finishes meanwhile is
/// nearly done, and kept for the next request.
pub const ABANDON_GRACE: Duration = Duration::from_secs(2);

struct Entry {
    repo: RepoId,
    state: String,
    path: PathBuf,
    progress: watch::Receiver<Progress>,
    readers: Arc<Readers>,
    last_used: std::time::Instant,
}

/// Why the pack cache could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No place for the process that would write the entry.
    #[error(transparent)]
    Busy(crate::serve::processes::Busy),
    /// The cache's disk has less than [`MIN_FREE`] free: the request is served without it.
    #[error("the pack cache's disk is nearly full")]
    NoRoom,
    /// The cache's files.
    #[error("pack cache: {0}")]
    Io(#[from] std::io::Error),
}

/// A new entry is started only while the cache's filesystem has this much free: on a full disk
/// requests are served straight from git (an entry that fills it would not be kept).
pub const MIN_FREE: u64 = 64 << 20;

/// Whether `dir`'s filesystem has [`MIN_FREE`] bytes free for unprivileged use.
async fn room_in(dir: PathBuf) -> bool {
    tokio::task::spawn_blocking(move || {
        rustix::fs::statvfs(&dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize) >= MIN_FREE)
            .unwrap_or(true)
    })
    .await
    .unwrap_or(true)
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A complete cached response.
    Hit,
    /// A response still being written for another client.
    Shared,
    /// A new `git upload-pack` run (now cached for the next ones).
    Miss,
}

impl Outcome {
    /// The metric label: `hit`, `shared` or `miss`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Shared => "shared",
            Self::Miss => "miss",
        }
    }
}

/// The cache.
pub struct PackCache {
    dir: PathBuf,
    max_bytes: u64,
    abandon_grace: Duration,
    write_limit: Option<u64>,
    entries: Mutex<HashMap<String, Entry>>,
}

fn key_of(repo: &RepoId, state: &str, protocol: Option<&str>, request: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [
        repo.to_string().as_bytes(),
        b"\0",
        state.as_bytes(),
        b"\0",
        protocol.unwrap_or("").as_bytes(),
        b"\0",
    ] {
        h.update(part);
    }
    h.update(request);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl PackCache {
    /// A cache in `dir` (emptied now: nothing from an earlier run is trusted) of at most `max_bytes`.
    pub fn new(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            abandon_grace: ABANDON_GRACE,
            write_limit: None,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// The same cache with another grace for writers whose readers all left (tests).
    pub fn with_abandon_grace(mut self, grace: Duration) -> Self {
        self.abandon_grace = grace;
        self
    }

    /// The same cache whose entry files take at most `bytes` each, as on a disk that fills
    /// (tests).
    pub fn with_write_limit(mut self, bytes: u64) -> Self {
        self.write_limit = Some(bytes);
        self
    }

    /// Whether caching is on (`mirror.cache.packs.maxSize` > 0).
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The response to `request` (a whole upload-pack request body) for `repo` in ref state
    /// `state`, from the cache or from a new `git upload-pack` run on `repo_path` shared with
    /// every identical request that arrives while it runs. File work happens outside the lock,
    /// through tokio's blocking pool.
    pub async fn serve(
        self: &Arc<Self>,
        repo: &RepoId,
        state: &str,
        repo_path: &Path,
        protocol: Option<&str>,
        request: Vec<u8>,
        processes: &crate::serve::processes::Processes,
    ) -> Result<(CachedStream, Outcome), ServeError> {
        let key = key_of(repo, state, protocol, &request);
        let found = {
            let mut entries = self.entries.lock();
            // Responses for ref states no longer served are of no more use.
            let mut stale = Vec::new();
            entries.retain(|_, e| {
                let keep = e.repo != *repo || e.state == state;
                if !keep {
                    stale.push(e.path.clone());
                }
                keep
            });
            remove_later(stale);
            lookup(&mut entries, &key)
        };
        if let Some(found) = found {
            return Ok(open(found).await?);
        }
        if !room_in(self.dir.clone()).await {
            return Err(ServeError::NoRoom);
        }
        // A miss: the process that writes the entry takes a place (readers take none)...
        let place = processes.acquire().await.map_err(ServeError::Busy)?;
        // ... and while this request waited for it, another may have started the same entry.
        let found = lookup(&mut self.entries.lock(), &key);
        if let Some(found) = found {
            drop(place);
            return Ok(open(found).await?);
        }
        // Make this run's file first, then claim the key (another request may have won).
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).expect("the OS random source is available");
        let suffix: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(format!("{key}-{suffix}.pack"));
        let file = EntryFile::new(
            tokio::fs::File::create(&path).await?.into_std().await,
            self.write_limit,
        );
        let reader = tokio::fs::File::open(&path).await?;
        let (tx, rx) = watch::channel(Progress::Writing(0));
        let readers = Readers::new();
        // The requester reads from the start: the writer does not see an unread entry.
        let requester = readers.join();
        let won = {
            let mut entries = self.entries.lock();
            match lookup(&mut entries, &key) {
                Some(found) => Err(found),
                None => {
                    let entry = Entry {
                        repo: repo.clone(),
                        state: state.to_owned(),
                        path: path.clone(),
                        progress: rx.clone(),
                        readers: readers.clone(),
                        last_used: std::time::Instant::now(),
                    };
                    entries.insert(key.clone(), entry);
                    Ok(())
                }
            }
        };
        if let Err(found) = won {
            remove_later(vec![path]);
            return Ok(open(found).await?);
        }
        let child =
            match upload_pack::spawn(repo_path, Mode::StatelessRpc, Exposure::Clients, protocol) {
                Ok(c) => c,
                Err(e) => {
                    self.drop_entry(&key, path);
                    return Err(ServeError::Io(e));
                }
            };
        let slot = EntrySlot {
            cache: self.clone(),
            key,
            path,
        };
        let grace = self.abandon_grace;
        tokio::spawn(async move {
            let written =
                writer::write_entry(child, request, file, &tx, &readers, grace, &slot).await;
            drop(place);
            match written {
                Ok(Written::Spilled(e)) => {
                    tracing::warn!(error = %e, "pack cache entry could not be written whole: its clients got the rest from memory; it is not kept");
                    remove_later(vec![slot.path]);
                }
                Ok(Written::Whole(size)) => {
                    let _ = tx.send(Progress::Done(size));
                    if slot.listed() {
                        slot.cache.fit(None);
                    } else {
                        // Dropped while it was written (its ref state was replaced, or the cache
                        // could not hold it): readers that have it open finish; the file goes.
                        remove_later(vec![slot.path]);
                    }
                }
                Err(WriteError::Abandoned) => {
                    tracing::info!("pack cache entry stopped: every client reading it left");
                    let _ = tx.send(Progress::Failed);
                    remove_later(vec![slot.path]);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pack cache entry failed; it is dropped");
                    let _ = tx.send(Progress::Failed);
                    slot.unlist();
                    remove_later(vec![slot.path]);
                }
            }
        });
        Ok((CachedStream::new(reader, rx, requester), Outcome::Miss))
    }

    fn drop_entry(&self, key: &str, path: PathBuf) {
        self.entries.lock().remove(key);
        remove_later(vec![path]);
    }

    /// Drops least recently used complete entries until the index — entries being written
    /// included, `growing` (key, file, size about to be written) at its new size — fits the
    /// bound. When the entries being written alone do not fit, no complete entry would help:
    /// `growing` is taken out instead, and nothing is evicted for it.
    fn fit(&self, growing: Option<(&str, &Path, u64)>) {
        let mut victims = Vec::new();
        {
            let mut entries = self.entries.lock();
            let is_growing =
                |k: &str, e: &Entry| growing.is_some_and(|(g, p, _)| g == k && e.path == p);
            let size = |k: &str, e: &Entry| match growing {
                Some((_, _, n)) if is_growing(k, e) => n,
                _ => e.progress.borrow().bytes(),
            };
            let writing: u64 = entries
                .iter()
                .filter(|(k, e)| {
                    is_growing(k, e) || matches!(*e.progress.borrow(), Progress::Writing(_))
                })
                .map(|(k, e)| size(k, e))
                .sum();
            if writing > self.max_bytes {
                if let Some((key, path, _)) = growing {
                    if entries.get(key).is_some_and(|e| e.path == path) {
                        entries.remove(key);
                        tracing::debug!("a pack cache entry outgrew the cache: it is not kept");
                    }
                }
                return;
            }
            let mut total: u64 = entries.iter().map(|(k, e)| size(k, e)).sum();
            while total > self.max_bytes {
                let victim = entries
                    .iter()
                    .filter(|(k, e)| {
                        !is_growing(k, e) && matches!(*e.progress.borrow(), Progress::Done(_))
                    })
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                let Some(k) = victim else { break };
                if let Some(e) = entries.remove(&k) {
                    total = total.saturating_sub(e.progress.borrow().bytes());
                    victims.push(e.path);
                }
            }
        }
        // Readers that have a victim open keep reading; the file goes when they close it.
        remove_later(victims);
    }

    /// Bytes held by the entries in the index, complete and being written.
    pub fn size(&self) -> u64 {
        let entries = self.entries.lock();
        entries.values().map(|e| e.progress.borrow().bytes()).sum()
    }
}

/// The index's view of one entry being written.
struct EntrySlot {
    cache: Arc<PackCache>,
    key: String,
    path: PathBuf,
}

impl EntrySlot {
    /// Whether the index lists this entry (not another one written under the same key).
    fn is_mine(&self, entries: &HashMap<String, Entry>) -> bool {
        entries.get(&self.key).is_some_and(|e| e.path == self.path)
    }

    /// Whether the index still lists this entry.
    fn listed(&self) -> bool {
        self.is_mine(&self.cache.entries.lock())
    }

    /// Takes the entry out of the index.
    fn unlist(&self) {
        let mut entries = self.cache.entries.lock();
        if self.is_mine(&entries) {
            entries.remove(&self.key);
        }
    }
}

impl Slot for EntrySlot {
    fn grew(&self, written: u64) {
        self.cache.fit(Some((&self.key, &self.path, written)));
    }

    fn spilled(&self) {
        self.unlist();
    }

    fn stop_if_unread(&self) -> bool {
        // Readers join under this lock (in `lookup`): none can join between the check and the
        // removal.
        let mut entries = self.cache.entries.lock();
        match entries.get(&self.key) {
            Some(e) if e.path == self.path => {
                if e.readers.count() > 0 {
                    return false;
                }
                entries.remove(&self.key);
                true
            }
            // Out of the index: nobody can join; stop if nobody reads.
            _ => true,
        }
    }
}

/// An entry found in the index, its new reader already counted.
type Found = (PathBuf, watch::Receiver<Progress>, stream::ReaderGuard);

/// A usable entry under `key` (touching it, counting its new reader), or `None`; a failed one
/// is removed.
fn lookup(entries: &mut HashMap<String, Entry>, key: &str) -> Option<Found> {
    let e = entries.get_mut(key)?;
    if *e.progress.borrow() == Progress::Failed {
        entries.remove(key);
        return None;
    }
    e.last_used = std::time::Instant::now();
    Some((e.path.clone(), e.progress.clone(), e.readers.join()))
}

/// Opens an entry found in the cache.
async fn open((path, progress, reader): Found) -> std::io::Result<(CachedStream, Outcome)> {
    let outcome = if matches!(*progress.borrow(), Progress::Done(_)) {
        Outcome::Hit
    } else {
        Outcome::Shared
    };
    let file = tokio::fs::File::open(&path).await?;
    Ok((CachedStream::new(file, progress, reader), outcome))
}

/// Removes files in the background (on tokio's blocking pool).
fn remove_later(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for p in paths {
            let _ = tokio::fs::remove_file(p).await;
        }
    });
}

#[cfg(test)]
mod tests;
