//! Sessions replicated over the farm channel (`hazelcast.http.sessions=replicated`): every change
//! is sent to every other live member at once; a member this node newly sees (one that joined,
//! restarted or could not be reached) is asked for all it holds and sent all this node holds, so
//! a member that joins later or restarts gets every live session. Removals travel as records
//! marked removed; expiry follows from the replicated last use. The routes the other members call
//! are the farm channel's (`farm::channel::sessions`).

use std::sync::Arc;
use std::time::Duration;

use mirrorfarm_common::farm::messages::SessionBatch;
use tokio::sync::watch;

use crate::farm::in_step::{InStep, RESYNC};
use crate::farm::Farm;
use crate::store::now_ms;

/// How often ended sessions are forgotten.
const SWEEP: Duration = Duration::from_secs(30);

/// Keeps this node's sessions and the other members' in step until `stop` turns true.
pub async fn run(farm: Arc<Farm>, mut stop: watch::Receiver<bool>) {
    let sessions = &farm.shared.gate.sessions;
    if !sessions.replicated() {
        return;
    }
    // Members whose sessions this node has (and who have this node's).
    let mut peers = InStep::default();
    let mut sweep = tokio::time::interval(SWEEP);
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let members = farm.others();
        let newcomers = peers.newcomers(&members);
        peers.each(newcomers, |node, addr| {
            let farm = farm.clone();
            async move {
                let s = &farm.shared.gate.sessions;
                match farm.client.pull_sessions(&node, addr).await {
                    Ok(b) => {
                        s.merge(b.sessions);
                        let all = SessionBatch {
                            sessions: s.all(now_ms()),
                        };
                        farm.client.push_sessions(&node, addr, &all).await.is_ok()
                    }
                    Err(e) => {
                        tracing::debug!(node, error = %e, "cannot take a member's sessions");
                        false
                    }
                }
            }
        });
        tokio::select! {
            _ = stop.changed() => return,
            _ = sessions.changed.notified() => {
                let batch = SessionBatch { sessions: sessions.take_changed() };
                if batch.sessions.is_empty() {
                    continue;
                }
                let batch = Arc::new(batch);
                peers.each(members, |node, addr| {
                    let (farm, batch) = (farm.clone(), batch.clone());
                    async move {
                        let sent = farm.client.push_sessions(&node, addr, &batch).await;
                        if let Err(e) = &sent {
                            tracing::debug!(node, error = %e, "cannot send sessions to a member");
                        }
                        sent.is_ok()
                    }
                });
            }
            () = peers.next_failure() => {}
            _ = resync.tick() => peers.resync(),
            _ = farm.view_updated.notified() => {}
            _ = sweep.tick() => sessions.sweep(now_ms()),
        }
    }
}
