//! Reading a pack cache entry: a stream over its file that follows the writer while it writes,
//! and the count of such readers (the writer stops when every reader has left).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// The most read from the file at a time: one chunk of the response (each read is a trip to
/// tokio's blocking pool; a chunk is a frame or a task for every proxy on the way).
const READ_SIZE: usize = 256 * 1024;

/// How far the writer has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bytes written so far.
    Writing(u64),
    /// Complete, with this size.
    Done(u64),
    /// Failed or abandoned: never to be served.
    Failed,
}

impl Progress {
    /// Bytes in the file (0 for a failed entry).
    pub fn bytes(self) -> u64 {
        match self {
            Self::Writing(n) | Self::Done(n) => n,
            Self::Failed => 0,
        }
    }
}

/// How many streams read an entry now.
#[derive(Debug)]
pub struct Readers {
    count: watch::Sender<usize>,
}

impl Readers {
    /// No readers yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            count: watch::Sender::new(0),
        })
    }

    /// Counts one more reader until the guard is dropped.
    pub fn join(self: &Arc<Self>) -> ReaderGuard {
        self.count.send_modify(|n| *n += 1);
        ReaderGuard(self.clone())
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
pub struct ReaderGuard(Arc<Readers>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.count.send_modify(|n| *n = n.saturating_sub(1));
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
        reader: ReaderGuard,
    ) -> Self {
        let state = (file, progress, 0u64);
        let s = futures_util::stream::unfold(
            state,
            |(mut file, mut progress, mut offset)| async move {
                let mut buf = Vec::new();
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
                        let want = ((available - offset) as usize).min(READ_SIZE);
                        buf.resize(want, 0);
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
