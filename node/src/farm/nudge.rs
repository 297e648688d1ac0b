//! Telling another member to sync a repository now, over the farm channel: a trigger passed on to
//! the repository's leader, and a leader's word to its followers that it has staged a new state
//! (so they fetch it at once instead of waiting for gossip to carry the news). A member never
//! passes such a sync on again.

use std::net::SocketAddr;

use mirrorfarm_common::farm::messages::SyncNudge;

use crate::farm::Farm;
use crate::names::RepoId;

fn nudge(repo: &RepoId) -> SyncNudge {
    SyncNudge {
        project: repo.project.as_str().to_owned(),
        repo: repo.repo.as_str().to_owned(),
    }
}

/// Asks member `node` at `addr` (its farm address) to sync `repo` now (in the background).
pub fn member(farm: &Farm, node: String, addr: SocketAddr, repo: &RepoId) {
    let (client, nudge) = (farm.client.clone(), nudge(repo));
    tokio::spawn(async move {
        if let Err(e) = client.sync(&node, addr, &nudge).await {
            tracing::warn!(node, error = %e, "cannot pass a sync on to a member");
        }
    });
}

/// Tells every other member of the view to sync `repo` (fire and forget).
pub fn followers(farm: &Farm, repo: &RepoId) {
    for (node, addr) in farm.others() {
        let (client, nudge) = (farm.client.clone(), nudge(repo));
        tokio::spawn(async move {
            if let Err(e) = client.sync(&node, addr, &nudge).await {
                tracing::debug!(node, error = %e, "cannot tell a member about a staged state");
            }
        });
    }
}
