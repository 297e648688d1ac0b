//! Writing a pack cache entry: one `git upload-pack` run's response into the entry's file, its
//! progress published as it goes; stopped when every reader has left, unless it finishes within
//! a grace (then it is nearly done, and kept for the next request). When the file cannot take
//! more (its disk filled), the rest goes to the readers that have the entry in memory — at the
//! pace of the slowest — and the entry is not kept: a full disk never cuts a response short.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::stream::{Progress, Readers, Tail};

/// Why an entry was not written whole.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reading git's output or writing the file.
    #[error("pack cache entry: {0}")]
    Io(#[from] std::io::Error),
    /// git upload-pack failed.
    #[error("git upload-pack exited with {0}")]
    Git(std::process::ExitStatus),
    /// Every reader left and it did not finish within the grace.
    #[error("every reader left before it was written")]
    Abandoned,
}

/// How a response reached its readers.
#[derive(Debug)]
pub enum Written {
    /// Whole in the file, of this size: it may be kept.
    Whole(u64),
    /// The file could not take it all (this error): the readers got the rest from memory; the
    /// file holds only a start and goes.
    Spilled(std::io::Error),
}

/// The file an entry is written to: each write is in the file (readers may read it) once it
/// returns, so progress is only published for bytes a reader finds.
pub struct EntryFile {
    file: Arc<std::fs::File>,
    /// Writes past this many bytes fail as on a full disk (tests).
    limit: Option<u64>,
}

impl EntryFile {
    /// Writes go to `file`; past `limit` bytes (if given) they fail with "no space".
    pub fn new(file: std::fs::File, limit: Option<u64>) -> Self {
        Self {
            file: Arc::new(file),
            limit,
        }
    }

    /// Writes `buf[..n]` at `offset` (on tokio's blocking pool); gives the buffer back.
    async fn write_at(
        &self,
        buf: Vec<u8>,
        n: usize,
        offset: u64,
    ) -> (std::io::Result<()>, Vec<u8>) {
        let (file, limit) = (self.file.clone(), self.limit);
        let task = tokio::task::spawn_blocking(move || {
            let room = limit.map_or(n, |l| l.saturating_sub(offset).min(n as u64) as usize);
            let mut res = file.write_all_at(&buf[..room], offset);
            if res.is_ok() && room < n {
                res = Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
            }
            (res, buf)
        });
        match task.await {
            Ok(done) => done,
            Err(e) => (Err(std::io::Error::other(e)), Vec::new()),
        }
    }

    /// Flushes the file's data to disk.
    async fn sync(&self) -> std::io::Result<()> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)?
    }
}

/// What the writer asks of the cache as it goes.
pub trait Slot: Send {
    /// The entry is about to be `written` bytes: make room for it (or take it out of the index).
    fn grew(&self, written: u64);
    /// Whether the entry may stop now: no reader has it, and none can join any more.
    fn stop_if_unread(&self) -> bool;
    /// The file cannot take more: take the entry out of the index (nobody joins any more).
    fn spilled(&self);
}

/// How long one reader may take to make room for the next chunk of a spilled response before
/// it is dropped (its client gets an error; the others go on).
const TAIL_STALL: Duration = Duration::from_secs(30);

/// Sends `chunk` to every tail, waiting for room in each (at most [`TAIL_STALL`]); drops the
/// tails whose reader left or stalled.
async fn forward(tails: &mut Vec<mpsc::Sender<Tail>>, chunk: Bytes) {
    let mut open = Vec::with_capacity(tails.len());
    for t in tails.drain(..) {
        match tokio::time::timeout(TAIL_STALL, t.send(Tail::Chunk(chunk.clone()))).await {
            Ok(Ok(())) => open.push(t),
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!("a client reading a cached response stalled: it is dropped"),
        }
    }
    *tails = open;
}

/// Writes `child`'s answer to `request` into `file`, publishing progress on `tx`; `readers`
/// counts the streams reading it. When it drops to zero the writer goes on for `grace`, then
/// stops (if `slot` agrees: nobody joined meanwhile).
pub async fn write_entry(
    mut child: tokio::process::Child,
    request: Vec<u8>,
    file: EntryFile,
    tx: &watch::Sender<Progress>,
    readers: &Readers,
    grace: Duration,
    slot: &impl Slot,
) -> Result<Written, WriteError> {
    let mut stdin = child.stdin.take().expect("upload-pack stdin is piped");
    let mut stdout = child.stdout.take().expect("upload-pack stdout is piped");
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(crate::upload_pack::log_stderr(stderr, "pack cache".into()));
    }
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&request).await;
    });
    let mut count = readers.watch();
    let unread_until = |n: usize| (n == 0).then(|| tokio::time::Instant::now() + grace);
    let mut stop_at = unread_until(*count.borrow_and_update());
    let mut watching = true;
    let mut buf = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    // Once the file is full: the readers' tails, and why.
    let mut spill: Option<(Vec<mpsc::Sender<Tail>>, std::io::Error)> = None;
    loop {
        let idle = async {
            match stop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = stdout.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    break;
                }
                if let Some((tails, _)) = spill.as_mut() {
                    forward(tails, Bytes::copy_from_slice(&buf[..n])).await;
                    if tails.is_empty() {
                        return Err(stop(child, feed).await);
                    }
                    continue;
                }
                let (res, back) = file.write_at(std::mem::take(&mut buf), n, written).await;
                buf = back;
                match res {
                    Ok(()) => {
                        written += n as u64;
                        // Room, then readers see the bytes, with nothing in between: the index
                        // never counts more than its bound.
                        slot.grew(written);
                        let _ = tx.send(Progress::Writing(written));
                    }
                    Err(e) => {
                        if buf.len() < n {
                            return Err(e.into());
                        }
                        slot.spilled();
                        let mut tails = readers.take_tails();
                        let _ = tx.send(Progress::Spilled(written));
                        forward(&mut tails, Bytes::copy_from_slice(&buf[..n])).await;
                        if tails.is_empty() {
                            return Err(stop(child, feed).await);
                        }
                        spill = Some((tails, e));
                    }
                }
            }
            changed = count.changed(), if watching => match changed {
                Ok(()) => stop_at = unread_until(*count.borrow_and_update()),
                // Nothing can count readers any more: there are none.
                Err(_) => {
                    watching = false;
                    stop_at = stop_at.or_else(|| unread_until(0));
                }
            },
            () = idle => {
                // A reader that joined as the grace ran out keeps it going.
                if *count.borrow_and_update() == 0 && slot.stop_if_unread() {
                    return Err(stop(child, feed).await);
                }
                stop_at = None;
            }
        }
    }
    if spill.is_none() {
        if let Err(e) = file.sync().await {
            // Every byte is in the file (readers read it from the page cache) but the disk did
            // not take it: the entry is not kept, its readers finish.
            slot.spilled();
            let tails = readers.take_tails();
            let _ = tx.send(Progress::Spilled(written));
            spill = Some((tails, e));
        }
    }
    let _ = feed.await;
    let status = child.wait().await?;
    if !status.success() {
        return Err(WriteError::Git(status));
    }
    match spill {
        None => {
            // Complete: readers read it all from the file.
            drop(readers.take_tails());
            Ok(Written::Whole(written))
        }
        Some((tails, e)) => {
            for t in tails {
                let _ = t.send(Tail::End).await;
            }
            Ok(Written::Spilled(e))
        }
    }
}

/// Stops git: nobody reads its answer.
async fn stop(mut child: tokio::process::Child, feed: tokio::task::JoinHandle<()>) -> WriteError {
    feed.abort();
    let _ = child.start_kill();
    let _ = child.wait().await;
    WriteError::Abandoned
}
