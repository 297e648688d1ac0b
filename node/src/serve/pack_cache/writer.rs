//! Writing a pack cache entry: one `git upload-pack` run's response into the entry's file, its
//! progress published as it goes; stopped when every reader has left, unless it finishes within
//! a grace (then it is nearly done, and kept for the next request).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::stream::Progress;

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

/// What the writer asks of the cache as it goes.
pub trait Slot: Send {
    /// The entry is about to be `written` bytes: make room for it (or take it out of the index).
    fn grew(&self, written: u64);
    /// Whether the entry may stop now: no reader has it, and none can join any more.
    fn stop_if_unread(&self) -> bool;
}

/// Writes `child`'s answer to `request` into `file`, publishing progress on `tx`; `readers`
/// counts the streams reading it. When it drops to zero the writer goes on for `grace`, then
/// stops (if `slot` agrees: nobody joined meanwhile).
pub async fn write_entry(
    mut child: tokio::process::Child,
    request: Vec<u8>,
    mut file: tokio::fs::File,
    tx: &watch::Sender<Progress>,
    mut readers: watch::Receiver<usize>,
    grace: Duration,
    slot: &impl Slot,
) -> Result<u64, WriteError> {
    let mut stdin = child.stdin.take().expect("upload-pack stdin is piped");
    let mut stdout = child.stdout.take().expect("upload-pack stdout is piped");
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(crate::upload_pack::log_stderr(stderr, "pack cache".into()));
    }
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&request).await;
    });
    let unread_until = |n: usize| (n == 0).then(|| tokio::time::Instant::now() + grace);
    let mut stop_at = unread_until(*readers.borrow_and_update());
    let mut watching = true;
    let mut buf = vec![0u8; 256 * 1024];
    let mut written = 0u64;
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
                file.write_all(&buf[..n]).await?;
                written += n as u64;
                // Room first, then readers see the bytes: the index never counts more than its
                // bound.
                slot.grew(written);
                let _ = tx.send(Progress::Writing(written));
            }
            changed = readers.changed(), if watching => match changed {
                Ok(()) => stop_at = unread_until(*readers.borrow_and_update()),
                // Nothing can count readers any more: there are none.
                Err(_) => {
                    watching = false;
                    stop_at = stop_at.or_else(|| unread_until(0));
                }
            },
            () = idle => {
                // A reader that joined as the grace ran out keeps it going.
                if *readers.borrow_and_update() == 0 && slot.stop_if_unread() {
                    feed.abort();
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Err(WriteError::Abandoned);
                }
                stop_at = None;
            }
        }
    }
    file.flush().await?;
    file.sync_data().await?;
    let _ = feed.await;
    let status = child.wait().await?;
    if !status.success() {
        return Err(WriteError::Git(status));
    }
    Ok(written)
}
