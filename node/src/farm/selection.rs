//! The admin page's selection carried over the farm channel: a change is sent to every other
//! live member at once; a member this node newly sees (joined, restarted, unreachable before) is
//! asked for its record and sent this node's, so the newest reaches every member. The routes the
//! other members call are `farm::channel::selection`'s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::farm::in_step::{InStep, RESYNC};
use crate::farm::Farm;
use crate::sync::scheduler::Trigger;

/// Takes `record` from another member (written to the store on the blocking pool); lists the
/// upstream again when it is news.
pub async fn take(farm: &Farm, record: mirrorfarm_common::farm::selection::SelectionRecord) {
    let by = record.written_by.clone();
    let selection = farm.shared.selection.clone();
    let taken = tokio::task::spawn_blocking(move || selection.offer(record)).await;
    let Ok(taken) = taken else {
        tracing::error!("taking a member's selection failed");
        return;
    };
    match taken {
        Ok(true) => {
            tracing::info!(by = %by, "the farm's selection changed: listing the upstream again");
            farm.sync.trigger(Trigger::All);
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "a member's selection was not taken"),
    }
}

/// Keeps this node's selection and the other members' in step until `stop` turns true.
pub async fn run(farm: Arc<Farm>, mut stop: watch::Receiver<bool>) {
    let selection = &farm.shared.selection;
    let mut peers = InStep::default();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let members = farm.others();
        let newcomers = peers.newcomers(&members);
        peers.each(newcomers, |node, addr| {
            let farm = farm.clone();
            async move {
                match farm.client.pull_selection(&node, addr).await {
                    // A member of an older version has no selection route: nothing to keep in
                    // step with (its own listing follows its file).
                    Err(mirrorfarm_common::farm::FarmError::Status { status: 404, .. }) => true,
                    Ok(theirs) => {
                        if let Some(r) = theirs {
                            take(&farm, r).await;
                        }
                        match farm.shared.selection.record() {
                            Some(mine) => {
                                farm.client.push_selection(&node, addr, &mine).await.is_ok()
                            }
                            None => true,
                        }
                    }
                    Err(e) => {
                        tracing::debug!(node, error = %e, "cannot take a member's selection");
                        false
                    }
                }
            }
        });
        let changed = selection.changed.notified();
        tokio::select! {
            _ = stop.changed() => return,
            () = changed => {
                // Records written here are sent on; one taken from a member came to every
                // member from where it was written (or comes when they are next seen).
                let Some(mine) = selection.record() else { continue };
                if mine.node_id != farm.shared.identity.node_id.as_str() {
                    continue;
                }
                let mine = Arc::new(mine);
                peers.each(members, |node, addr| {
                    let (farm, mine) = (farm.clone(), mine.clone());
                    async move {
                        let sent = farm.client.push_selection(&node, addr, &mine).await;
                        if let Err(e) = &sent {
                            tracing::debug!(node, error = %e, "cannot send the selection to a member");
                        }
                        sent.is_ok()
                    }
                });
            }
            () = peers.next_failure() => {}
            _ = resync.tick() => peers.resync(),
            _ = farm.view_updated.notified() => {}
        }
    }
}

/// Sends `record` to every other member and waits (at most a few seconds) for them to take it:
/// the member that lists for the farm lists with it.
pub async fn push_now(farm: &Farm, record: &mirrorfarm_common::farm::selection::SelectionRecord) {
    let sends = farm.others().into_iter().map(|(node, addr)| async move {
        if let Err(e) = farm.client.push_selection(&node, addr, record).await {
            tracing::warn!(node, error = %e, "cannot send the selection to a member (it gets it when next seen)");
        }
    });
    let all = futures_util::future::join_all(sends);
    if tokio::time::timeout(Duration::from_secs(5), all)
        .await
        .is_err()
    {
        tracing::warn!("members were slow to take the new selection");
    }
}
