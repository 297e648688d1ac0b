//! Reading a pack cache entry: a stream over its file that follows the writer while it writes,
//! and the count of such readers (the writer stops when every reader has left). When the file
//! cannot take more (its disk filled), the writer hands the rest of the response to each reader
//! in memory: they read the file as far as it got, then the rest from the writer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

/// The most read from the file at a time: one chunk of the response (each read is a trip to
/// tokio's blocking pool; a chunk is a frame or a task for every proxy on the way).
const READ_SIZE: usize = 256 * 1024;

/// How many chunks of the rest of a spilled response wait for one reader: the writer (and git)
/// go at the pace of the slowest reader, as when git answers a client directly.
const TAIL_CHUNKS: usize = 4;

/// How far the writer has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bytes written so far.
    Writing(u64),
    /// Complete, with this size.
    Done(u64),
    /// The file holds this many bytes and no more will come: the rest reaches the readers that
    /// had joined through their [`Tail`]s. Out of the index: nobody joins any more.
    Spilled(u64),
    /// Failed or abandoned: never to be served.
    Failed,
}

impl Progress {
    /// Bytes in the file (0 for a failed entry).
    pub fn bytes(self) -> u64 {
        match self {
            Self::Writing(n) | Self::Done(n) | Self::Spilled(n) => n,
            Self::Failed => 0,
        }
    }
}

/// The rest of a spilled response, as the writer sends it to one reader.
#[derive(Debug)]
pub enum Tail {
    /// The next bytes.
    Chunk(Bytes),
    /// The response is complete (a tail that closes without it failed).
    End,
}

/// How many streams read an entry now, and where each takes the rest if the file fills.
#[derive(Debug)]
pub struct Readers {
    count: watch::Sender<usize>,
    /// The tails of the readers of an entry being written (`None` once it is no more).
    tails: Mutex<Option<Vec<mpsc::Sender<Tail>>>>,
}

impl Readers {
    /// No readers yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            count: watch::Sender::new(0),
            tails: Mutex::new(Some(Vec::new())),
        })
    }

    /// Counts one more reader until the guard is dropped.
    pub fn join(self: &Arc<Self>) -> ReaderGuard {
        self.count.send_modify(|n| *n += 1);
        let tail = self.tails.lock().as_mut().map(|tails| {
            tails.retain(|t| !t.is_closed());
            let (tx, rx) = mpsc::channel(TAIL_CHUNKS);
            tails.push(tx);
            rx
        });
        ReaderGuard {
            readers: self.clone(),
            tail,
        }
    }

    /// The tails of every reader that joined; readers joining later get none (the entry is
    /// complete, or out of the index).
    pub fn take_tails(&self) -> Vec<mpsc::Sender<Tail>> {
        self.tails.lock().take().unwrap_or_default()
    }

    /// How many read it now.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Watches the count.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }
}

/// One reader of an entry, counted while it lives.
#[derive(Debug)]
pub struct ReaderGuard {
    readers: Arc<Readers>,
    tail: Option<mpsc::Receiver<Tail>>,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.readers.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A cached response read from its file, following the writer while it writes.
pub struct CachedStream {
    inner: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    _reader: ReaderGuard,
}

impl CachedStream {
    /// Reads `file` as far as `progress` says it is written.
    pub fn new(
        file: tokio::fs::File,
        progress: watch::Receiver<Progress>,
        mut reader: ReaderGuard,
    ) -> Self {
        let tail = reader.tail.take();
        let state = (file, progress, tail, 0u64);
        let s = futures_util::stream::unfold(
            state,
            |(mut file, mut progress, mut tail, mut offset)| async move {
                let mut buf = Vec::new();
                loop {
                    let p = *progress.borrow_and_update();
                    let available = match p {
                        Progress::Writing(n) | Progress::Done(n) | Progress::Spilled(n) => n,
                        Progress::Failed => {
                            let err = std::io::Error::other(
                                "the response failed while it was being written",
                            );
                            return Some((Err(err), (file, progress, tail, u64::MAX)));
                        }
                    };
                    if offset == u64::MAX {
                        return None;
                    }
                    if offset < available {
                        let want = ((available - offset) as usize).min(READ_SIZE);
                        buf.resize(want, 0);
                        match file.read(&mut buf[..want]).await {
                            // Bytes are published once in the file: a final size past its
                            // end means the file was cut (nothing more will come).
                            Ok(0) if matches!(p, Progress::Done(_) | Progress::Spilled(_)) => {
                                let err = std::io::Error::other(
                                    "the cached response's file was cut short",
                                );
                                return Some((Err(err), (file, progress, tail, u64::MAX)));
                            }
                            Ok(0) => {}
                            Ok(n) => {
                                offset += n as u64;
                                buf.truncate(n);
                                let chunk = Bytes::from(buf);
                                return Some((Ok(chunk), (file, progress, tail, offset)));
                            }
                            Err(e) => return Some((Err(e), (file, progress, tail, u64::MAX))),
                        }
                    }
                    if matches!(p, Progress::Done(n) if offset >= n) {
                        return None;
                    }
                    if matches!(p, Progress::Spilled(n) if offset >= n) {
                        // The file is read as far as it got: the rest comes from the writer.
                        let next = match tail.as_mut() {
                            Some(t) => t.recv().await,
                            None => None,
                        };
                        return match next {
                            Some(Tail::Chunk(chunk)) => {
                                Some((Ok(chunk), (file, progress, tail, offset)))
                            }
                            Some(Tail::End) => None,
                            None => {
                                let err = std::io::Error::other(
                                    "the response failed after its cache file filled",
                                );
                                Some((Err(err), (file, progress, tail, u64::MAX)))
                            }
                        };
                    }
                    if progress.changed().await.is_err()
                        && !matches!(*progress.borrow(), Progress::Done(_) | Progress::Spilled(_))
                    {
                        let err = std::io::Error::other("the response writer went away");
                        return Some((Err(err), (file, progress, tail, u64::MAX)));
                    }
                }
            },
        );
        Self {
            inner: Box::pin(s),
            _reader: reader,
        }
    }
}

impl Stream for CachedStream {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
