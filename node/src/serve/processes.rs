//! The bound on `git upload-pack` processes serving clients (`mirror.serve.maxProcesses`): a
//! request that needs one waits for a place at most `mirror.serve.queueTimeout`, then is refused
//! (HTTP 503 + `Retry-After`, an SSH error) — never an unbounded pile of git processes. Answers
//! from memory and from the pack cache (a reader of a file being written, or of one complete) take
//! no place; the one process that writes a pack cache entry does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A place for one upload-pack process, given back when dropped.
pub type Permit = OwnedSemaphorePermit;

/// At most this many requests wait for a place at once; more are refused at once.
const MAX_WAITING: usize = 4096;

/// Why a request got no place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Busy {
    /// The wait lasted `mirror.serve.queueTimeout`.
    #[error("all {max} git processes of this node stayed busy for {waited} s; try again shortly")]
    Timeout {
        /// `mirror.serve.maxProcesses`.
        max: usize,
        /// Seconds waited.
        waited: u64,
    },
    /// Too many requests wait already.
    #[error("all {max} git processes of this node are busy and {MAX_WAITING} requests wait already; try again shortly")]
    QueueFull {
        /// `mirror.serve.maxProcesses`.
        max: usize,
    },
}

/// The places.
pub struct Processes {
    sem: Arc<Semaphore>,
    max: usize,
    waiting: AtomicUsize,
    timeout: Duration,
}

impl Processes {
    /// `max` places; a request waits at most `timeout` for one.
    pub fn new(max: usize, timeout: Duration) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(max)),
            max,
            waiting: AtomicUsize::new(0),
            timeout,
        }
    }

    /// Places taken now.
    pub fn running(&self) -> usize {
        self.max - self.sem.available_permits()
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A place, waiting for one if need be.
    pub async fn acquire(&self) -> Result<Permit, Busy> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy::QueueFull { max: self.max });
        }
        let got = tokio::time::timeout(self.timeout, self.sem.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Busy::Timeout {
                max: self.max,
                waited: self.timeout.as_secs(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_then_refuses() {
        let p = Processes::new(1, Duration::from_millis(50));
        let first = p.acquire().await.expect("a place");
        assert_eq!(p.running(), 1);
        assert!(matches!(
            p.acquire().await,
            Err(Busy::Timeout { max: 1, .. })
        ));
        drop(first);
        assert!(p.acquire().await.is_ok());
        assert_eq!(p.waiting(), 0);
    }
}
