//! Objects on their way into the store: one download per object on this node, however many ask
//! (single flight), and readers that follow it as it is written, so a client starts receiving
//! before the whole object is here. A reader is never given the object's last byte until the
//! download has been verified (size and SHA-256): a download that fails or brings other bytes
//! ends every reader's stream with an error instead of a complete, wrong object.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::lfs::oid::LfsOid;
use crate::lfs::store::{LfsStore, ObjectWriter, StoreError};

/// How much a reader reads at a time.
const READ_CHUNK: usize = 256 * 1024;

/// How a download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// This many bytes are written (not yet verified).
    Writing(u64),
    /// Verified and in the store.
    Done,
    /// Failed; nothing was kept.
    Failed(Arc<str>),
}

/// Where a download takes its bytes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The upstream's LFS server.
    Upstream,
    /// Another member.
    Member,
}

impl Source {
    /// Label for counters.
    pub fn label(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Member => "member",
        }
    }
}

/// One object being downloaded into the store.
#[derive(Debug)]
pub struct Flight {
    /// The object.
    pub oid: LfsOid,
    /// Its size.
    pub size: u64,
    /// Where its bytes come from.
    pub source: Source,
    /// Where it is being written (readers open it; the finished object is at `done`).
    tmp: PathBuf,
    /// Where it goes once verified.
    done: PathBuf,
    progress: watch::Receiver<Progress>,
}

/// What a download's source writes into.
pub struct Feeder {
    writer: ObjectWriter,
    tx: Arc<watch::Sender<Progress>>,
}

impl Feeder {
    /// Appends `chunk` (refused past the object's size).
    pub async fn feed(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.writer.write(chunk).await?;
        self.tx
            .send_replace(Progress::Writing(self.writer.written()));
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.writer.written()
    }
}

/// The downloads in progress on this node.
#[derive(Debug, Default)]
pub struct Flights {
    map: Mutex<HashMap<LfsOid, Arc<Flight>>>,
}

/// How [`Flights::start`] found the object.
pub enum Started {
    /// The store has it now.
    Stored,
    /// A download of it (this call's or an earlier one's).
    Flying(Arc<Flight>),
}

impl Flights {
    /// The download of `oid` in progress, if any.
    pub fn get(&self, oid: &LfsOid) -> Option<Arc<Flight>> {
        self.map.lock().get(oid).cloned()
    }

    /// How many downloads are in progress.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Joins the download of `oid` in progress, or starts one: `source` runs in a task of its own
    /// (it goes on if the asker goes away), feeding the bytes; it is kept only if they verify.
    pub async fn start<F, Fut, E>(
        self: &Arc<Self>,
        store: &LfsStore,
        (oid, size): (&LfsOid, u64),
        from: Source,
        source: F,
    ) -> Result<Started, StoreError>
    where
        F: FnOnce(Feeder) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Feeder, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        if let Some(f) = self.get(oid) {
            return Ok(Started::Flying(f));
        }
        if tokio::fs::metadata(store.path(oid)).await.is_ok() {
            return Ok(Started::Stored);
        }
        let writer = store.writer(oid, size).await?;
        let (tx, rx) = watch::channel(Progress::Writing(0));
        let flight = Arc::new(Flight {
            oid: oid.clone(),
            size,
            source: from,
            tmp: writer.tmp_path().to_owned(),
            done: store.path(oid),
            progress: rx,
        });
        {
            let mut map = self.map.lock();
            if let Some(f) = map.get(oid) {
                return Ok(Started::Flying(f.clone()));
            }
            // A flight leaves the map only once its object is in place: under the lock, one or
            // the other is seen (one stat of a local file, checked again only on this rare path:
            // a download that landed since the check above).
            if std::fs::metadata(&flight.done).is_ok() {
                return Ok(Started::Stored);
            }
            map.insert(oid.clone(), flight.clone());
        }
        let me = self.clone();
        let key = oid.clone();
        let tx = Arc::new(tx);
        tokio::spawn(async move {
            let feeder = Feeder {
                writer,
                tx: tx.clone(),
            };
            let end = match source(feeder).await {
                Ok(f) => match f.writer.commit().await {
                    Ok(()) => Progress::Done,
                    Err(e) => Progress::Failed(e.to_string().into()),
                },
                Err(e) => Progress::Failed(e.to_string().into()),
            };
            if let Progress::Failed(why) = &end {
                tracing::warn!(oid = %key, error = %why, "LFS object download failed; nothing kept");
            }
            // Out of the map first: whoever asks from now on finds the object stored, or (after
            // a failure) starts a new download rather than joining this one.
            me.map.lock().remove(&key);
            tx.send_replace(end);
        });
        Ok(Started::Flying(flight))
    }
}

impl Flight {
    /// How the download stands now.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits until the download ends: `Ok` once the object is in the store.
    pub async fn finished(&self) -> Result<(), Arc<str>> {
        let mut rx = self.progress.clone();
        loop {
            match rx.borrow_and_update().clone() {
                Progress::Done => return Ok(()),
                Progress::Failed(why) => return Err(why),
                Progress::Writing(_) => {}
            }
            if rx.changed().await.is_err() {
                return match rx.borrow().clone() {
                    Progress::Done => Ok(()),
                    Progress::Failed(why) => Err(why),
                    Progress::Writing(_) => Err("the download stopped".into()),
                };
            }
        }
    }

    /// Waits until the download has brought its first bytes (or ended), at most `limit`: `Err`
    /// with why when it failed first, so an asker gets a clear answer instead of a cut stream.
    pub async fn started(&self, limit: std::time::Duration) -> Result<(), Arc<str>> {
        let mut rx = self.progress.clone();
        let wait = async {
            loop {
                match rx.borrow_and_update().clone() {
                    Progress::Failed(why) => return Err(why),
                    Progress::Writing(0) if self.size > 0 => {}
                    _ => return Ok(()),
                }
                if rx.changed().await.is_err() {
                    return match rx.borrow().clone() {
                        Progress::Failed(why) => Err(why),
                        _ => Ok(()),
                    };
                }
            }
        };
        tokio::time::timeout(limit, wait)
            .await
            .unwrap_or_else(|_| Err("no byte arrived in time".into()))
    }

    /// The object's bytes as they arrive (all but the last until verified).
    pub async fn reader(
        self: &Arc<Self>,
    ) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
        let file = match tokio::fs::File::open(&self.tmp).await {
            Ok(f) => f,
            // Moved into place (or gone) between the lookup and now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tokio::fs::File::open(&self.done).await?
            }
            Err(e) => return Err(e),
        };
        let st = Follow {
            file,
            pos: 0,
            size: self.size,
            rx: self.progress.clone(),
            over: false,
        };
        Ok(futures_util::stream::unfold(st, Follow::next))
    }
}

struct Follow {
    file: tokio::fs::File,
    pos: u64,
    size: u64,
    rx: watch::Receiver<Progress>,
    over: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if self.over || self.pos >= self.size {
            return None;
        }
        loop {
            let p = self.rx.borrow_and_update().clone();
            let allowed = match p {
                Progress::Writing(n) => n.min(self.size.saturating_sub(1)),
                Progress::Done => self.size,
                Progress::Failed(why) => {
                    self.over = true;
                    let e = std::io::Error::other(format!("LFS download failed: {why}"));
                    return Some((Err(e), self));
                }
            };
            if allowed > self.pos {
                let want = ((allowed - self.pos) as usize).min(READ_CHUNK);
                // Read into spare capacity: no zeroing of a buffer the read overwrites.
                let mut buf = bytes::BytesMut::with_capacity(want);
                let read = (&mut self.file).take(want as u64).read_buf(&mut buf).await;
                return match read {
                    Ok(0) => {
                        self.over = true;
                        let e = std::io::Error::other("LFS object shorter than written");
                        Some((Err(e), self))
                    }
                    Ok(n) => {
                        self.pos += n as u64;
                        Some((Ok(buf.freeze()), self))
                    }
                    Err(e) => {
                        self.over = true;
                        Some((Err(e), self))
                    }
                };
            }
            if self.rx.changed().await.is_err() {
                // The download's task ended: its last word is final.
                if !matches!(*self.rx.borrow(), Progress::Done) {
                    self.over = true;
                    let e = std::io::Error::other("LFS download stopped");
                    return Some((Err(e), self));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "flight_tests.rs"]
mod tests;
