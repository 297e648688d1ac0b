//! Telling another member to sync a repository now: a trigger passed on to the repository's
//! leader, and a leader's word to its followers that it has staged a new state (so they fetch
//! it at once instead of waiting for gossip to carry the news). Marked as passed on, so a
//! member never passes it on again.

use std::net::SocketAddr;

use crate::names::RepoId;

/// Marks a trigger one member passed on to another (never passed on again).
pub const FORWARDED: &str = "x-mirrorfarm-forwarded";

/// Asks the member at `addr` (its HTTP listener) to sync `repo` now.
pub async fn trigger(addr: SocketAddr, repo: &RepoId) -> std::io::Result<()> {
    let body = serde_json::json!({ "project": repo.project.as_str(), "repo": repo.repo.as_str() })
        .to_string();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!(
            "POST /rest/mirroring/latest/sync HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{FORWARDED}: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        if &head[9..12] != b"202" {
            return Err(std::io::Error::other(format!(
                "member answered {}",
                String::from_utf8_lossy(&head)
            )));
        }
        Ok(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), work)
        .await
        .map_err(|_| std::io::Error::other("member did not answer"))?
}

/// Tells every other member of the view to sync `repo` (fire and forget).
pub fn followers(shared: &crate::state::Shared, repo: &RepoId) {
    let view = shared
        .farm
        .read()
        .expect("farm view lock is never poisoned");
    let Some(view) = view.as_ref() else {
        return;
    };
    for m in view.members.iter().filter(|m| !m.this_node) {
        let (Some(addr), repo, node) = (m.address, repo.clone(), m.node_id.clone()) else {
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = trigger(addr, &repo).await {
                tracing::debug!(node, error = %e, "cannot tell a member about a staged state");
            }
        });
    }
}
