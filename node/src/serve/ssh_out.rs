//! What a served SSH command sends its client: whole chunks handed to the session (russh's
//! `Handle::data`: a pack cache chunk without a copy), which cuts them into packets and writes
//! them together. russh's channel writer instead makes one message, one copy and one flush per
//! 32 KiB packet.

use bytes::Bytes;
use russh::server::Handle;
use russh::ChannelId;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most read from a process's stdout and sent as one chunk.
pub const CHUNK: usize = 256 * 1024;

/// The data side of one session channel.
pub struct ChannelOut {
    handle: Handle,
    id: ChannelId,
}

impl ChannelOut {
    /// Sends on channel `id` of the session behind `handle`.
    pub fn new(handle: Handle, id: ChannelId) -> Self {
        Self { handle, id }
    }

    /// Sends `data` (in order with everything sent on this channel before).
    pub async fn send(&self, data: impl Into<Bytes>) -> std::io::Result<()> {
        let data = data.into();
        if data.is_empty() {
            return Ok(());
        }
        self.handle.data(self.id, data).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the SSH session closed")
        })
    }

    /// Sends all of `from` until its end; returns the bytes sent. Each read becomes one chunk
    /// of just its size (a pipe gives at most 64 KiB a read; a queued chunk holds only its bytes).
    pub async fn copy_from(&self, from: &mut (impl AsyncRead + Unpin)) -> std::io::Result<u64> {
        let mut n = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let k = from.read(&mut buf).await?;
            if k == 0 {
                return Ok(n);
            }
            n += k as u64;
            self.send(Bytes::copy_from_slice(&buf[..k])).await?;
        }
    }
}
