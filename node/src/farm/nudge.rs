//! Telling other members, over the farm channel: a trigger passed on to a repository's leader, and
//! every member's word to the others that it has staged a new state (so the followers fetch the
//! leader's state at once and every member counts the others' for the flip, instead of waiting for
//! gossip to carry the news). A member never passes such a sync on again.

use std::net::SocketAddr;

use mirrorfarm_common::farm::messages::{StagedNotice, SyncNudge};
use mirrorfarm_common::farm::FarmError;

use crate::farm::Farm;
use crate::names::RepoId;
use crate::state::StagedHint;

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

/// Asks every other member of the view to list the upstream's repositories again (fire and
/// forget; a member that misses it lists them at its next reconcile).
pub fn relist(farm: &Farm) {
    for (node, addr) in farm.others() {
        let client = farm.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.relist(&node, addr).await {
                tracing::warn!(node, error = %e, "cannot ask a member to list the upstream again");
            }
        });
    }
}

/// Tells every other member of the view that this node staged `staged` of `repo` (fire and
/// forget). When this node leads `repo`, a member too old to take the word (404) is asked to
/// sync instead, as before.
pub fn staged(farm: &Farm, repo: &RepoId, staged: &StagedHint) {
    let notice = StagedNotice {
        project: repo.project.as_str().to_owned(),
        repo: repo.repo.as_str().to_owned(),
        refs_hash: staged.refs_hash.clone(),
        head: staged.head.as_ref().map(|h| h.as_str().to_owned()),
        staged_at_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
    };
    let leading = farm.view.read().as_ref().is_some_and(|v| {
        crate::farm::leader::leader_of(
            &repo.to_string(),
            v.members.iter().map(|m| m.node_id.as_str()),
        ) == Some(farm.shared.identity.node_id.as_str())
    });
    for (node, addr) in farm.others() {
        let (client, notice, nudge) = (farm.client.clone(), notice.clone(), nudge(repo));
        let shared = farm.shared.clone();
        tokio::spawn(async move {
            let r = match client.staged(&node, addr, &notice).await {
                Ok(()) => {
                    shared.metrics.staged_word("sent");
                    Ok(())
                }
                Err(FarmError::Status { status: 404, .. }) if leading => {
                    client.sync(&node, addr, &nudge).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::debug!(node, error = %e, "cannot tell a member about a staged state");
            }
        });
    }
}
