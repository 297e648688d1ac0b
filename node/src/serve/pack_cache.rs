//! The pack cache: identical upload-pack requests against the same ref state — a CI fleet cloning
//! one commit — are answered from one `git upload-pack` run whose response is written to disk and
//! streamed to every client asking for it, while it is being written and afterwards (as Gitaly's
//! pack-objects cache does). Entries are keyed by the repository, its ref state and the whole
//! request; bounded in size (least recently used go first); an entry is only ever served complete
//! or while its one writer is still writing it — a failed or interrupted one is dropped, and the
//! cache directory is emptied at start (so a file left by a killed writer is never read).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::names::RepoId;
use crate::upload_pack::{self, Exposure, Mode};

/// How far the writer has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Bytes written so far.
    Writing(u64),
    /// Complete, with this size.
    Done(u64),
    /// Failed: never to be served.
    Failed,
}

struct Entry {
    repo: RepoId,
    state: String,
    path: PathBuf,
    progress: watch::Receiver<Progress>,
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
/// requests are served straight from git (an entry failing half-written would break them).
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
            entries: Mutex::new(HashMap::new()),
        })
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
        let file = tokio::fs::File::create(&path).await?;
        let reader = tokio::fs::File::open(&path).await?;
        let (tx, rx) = watch::channel(Progress::Writing(0));
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
        let cache = self.clone();
        tokio::spawn(async move {
            let written = write_entry(child, request, file, &tx).await;
            drop(place);
            match written {
                Ok(size) => {
                    let _ = tx.send(Progress::Done(size));
                    let kept = cache.entries.lock().contains_key(&key);
                    if kept {
                        cache.evict();
                    } else {
                        // Dropped while it was written (its ref state was replaced): readers that
                        // have it open finish; the file goes.
                        remove_later(vec![path]);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pack cache entry failed; it is dropped");
                    let _ = tx.send(Progress::Failed);
                    cache.drop_entry(&key, path);
                }
            }
        });
        Ok((CachedStream::new(reader, rx), Outcome::Miss))
    }

    fn drop_entry(&self, key: &str, path: PathBuf) {
        self.entries.lock().remove(key);
        remove_later(vec![path]);
    }

    /// Drops least recently used complete entries until the cache fits its bound.
    fn evict(&self) {
        let mut victims = Vec::new();
        {
            let mut entries = self.entries.lock();
            let size = |e: &Entry| match *e.progress.borrow() {
                Progress::Done(n) | Progress::Writing(n) => n,
                Progress::Failed => 0,
            };
            let mut total: u64 = entries.values().map(size).sum();
            while total > self.max_bytes {
                let victim = entries
                    .iter()
                    .filter(|(_, e)| matches!(*e.progress.borrow(), Progress::Done(_)))
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                let Some(k) = victim else { break };
                if let Some(e) = entries.remove(&k) {
                    total = total.saturating_sub(size(&e));
                    victims.push(e.path);
                }
            }
        }
        // Readers that have a victim open keep reading; the file goes when they close it.
        remove_later(victims);
    }

    /// Bytes held by complete entries.
    pub fn size(&self) -> u64 {
        let entries = self.entries.lock();
        entries
            .values()
            .map(|e| match *e.progress.borrow() {
                Progress::Done(n) => n,
                _ => 0,
            })
            .sum()
    }
}

/// A usable entry under `key` (touching it), or `None`; a failed one is removed.
fn lookup(
    entries: &mut HashMap<String, Entry>,
    key: &str,
) -> Option<(PathBuf, watch::Receiver<Progress>)> {
    let e = entries.get_mut(key)?;
    if *e.progress.borrow() == Progress::Failed {
        entries.remove(key);
        return None;
    }
    e.last_used = std::time::Instant::now();
    Some((e.path.clone(), e.progress.clone()))
}

/// Opens an entry found in the cache.
async fn open(
    (path, progress): (PathBuf, watch::Receiver<Progress>),
) -> std::io::Result<(CachedStream, Outcome)> {
    let outcome = if matches!(*progress.borrow(), Progress::Done(_)) {
        Outcome::Hit
    } else {
        Outcome::Shared
    };
    let file = tokio::fs::File::open(&path).await?;
    Ok((CachedStream::new(file, progress), outcome))
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

/// Runs the writer: request in, response out to the file, progress published as it goes.
async fn write_entry(
    mut child: tokio::process::Child,
    request: Vec<u8>,
    mut file: tokio::fs::File,
    tx: &watch::Sender<Progress>,
) -> std::io::Result<u64> {
    let mut stdin = child.stdin.take().expect("upload-pack stdin is piped");
    let mut stdout = child.stdout.take().expect("upload-pack stdout is piped");
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(crate::upload_pack::log_stderr(stderr, "pack cache".into()));
    }
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&request).await;
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).await?;
        written += n as u64;
        let _ = tx.send(Progress::Writing(written));
    }
    file.flush().await?;
    file.sync_data().await?;
    let _ = feed.await;
    let status = child.wait().await?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "git upload-pack exited with {status}"
        )));
    }
    Ok(written)
}

/// A cached response read from its file, following the writer while it writes.
pub struct CachedStream {
    inner: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
}

impl CachedStream {
    fn new(file: tokio::fs::File, progress: watch::Receiver<Progress>) -> Self {
        let state = (file, progress, 0u64);
        let s = futures_util::stream::unfold(
            state,
            |(mut file, mut progress, mut offset)| async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let p = *progress.borrow_and_update();
                    let available = match p {
                        Progress::Writing(n) | Progress::Done(n) => n,
                        Progress::Failed => {
                            let err = std::io::Error::other(
                                "the response failed while it was being written",
                            );
                            return Some((Err(err), (file, progress, u64::MAX)));
                        }
                    };
                    if offset == u64::MAX {
                        return None;
                    }
                    if offset < available {
                        let want = ((available - offset) as usize).min(buf.len());
                        match file.read(&mut buf[..want]).await {
                            Ok(0) => {}
                            Ok(n) => {
                                offset += n as u64;
                                buf.truncate(n);
                                return Some((Ok(Bytes::from(buf)), (file, progress, offset)));
                            }
                            Err(e) => return Some((Err(e), (file, progress, u64::MAX))),
                        }
                    }
                    if matches!(p, Progress::Done(n) if offset >= n) {
                        return None;
                    }
                    if progress.changed().await.is_err()
                        && !matches!(*progress.borrow(), Progress::Done(_))
                    {
                        let err = std::io::Error::other("the response writer went away");
                        return Some((Err(err), (file, progress, u64::MAX)));
                    }
                }
            },
        );
        Self { inner: Box::pin(s) }
    }
}

impl Stream for CachedStream {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
