//! Which members something replicated (sessions, the admin page's selection) is in step with: a
//! member newly seen — joined, restarted, or one a send failed to reach — is brought in step
//! (both ways) by the caller; a failed send marks its member to be brought in step again at the
//! next resync tick.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

/// How soon a member a send failed to reach is brought in step again.
pub const RESYNC: Duration = Duration::from_secs(2);

/// The members in step, and those a send failed to reach.
pub struct InStep {
    in_step: HashSet<String>,
    stale: HashSet<String>,
    failed_tx: mpsc::UnboundedSender<String>,
    failed_rx: mpsc::UnboundedReceiver<String>,
}

impl Default for InStep {
    fn default() -> Self {
        let (failed_tx, failed_rx) = mpsc::unbounded_channel();
        Self {
            in_step: HashSet::new(),
            stale: HashSet::new(),
            failed_tx,
            failed_rx,
        }
    }
}

impl InStep {
    /// The live `members` not in step yet (counted in step from now on); members gone are
    /// forgotten.
    pub fn newcomers(&mut self, members: &[(String, SocketAddr)]) -> Vec<(String, SocketAddr)> {
        let live: HashSet<&String> = members.iter().map(|(n, _)| n).collect();
        self.in_step.retain(|n| live.contains(n));
        members
            .iter()
            .filter(|(n, _)| self.in_step.insert(n.clone()))
            .cloned()
            .collect()
    }

    /// Runs `send` for each of `members` on a task of its own; a member it fails for (`false`)
    /// is brought in step again at the next resync.
    pub fn each<F, Fut>(&self, members: Vec<(String, SocketAddr)>, send: F)
    where
        F: Fn(String, SocketAddr) -> Fut,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        for (node, addr) in members {
            let failed = self.failed_tx.clone();
            let sent = send(node.clone(), addr);
            tokio::spawn(async move {
                if !sent.await {
                    let _ = failed.send(node);
                }
            });
        }
    }

    /// Takes the next failure report (for `select!`).
    pub async fn next_failure(&mut self) {
        if let Some(node) = self.failed_rx.recv().await {
            self.stale.insert(node);
        }
    }

    /// Members a send failed to reach are no longer in step (brought in step when next seen).
    pub fn resync(&mut self) {
        for node in self.stale.drain() {
            self.in_step.remove(&node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(names: &[&str]) -> Vec<(String, SocketAddr)> {
        names
            .iter()
            .map(|n| (n.to_string(), SocketAddr::from(([127, 0, 0, 1], 1))))
            .collect()
    }

    #[tokio::test]
    async fn newcomers_once_until_gone_or_failed() {
        let mut s = InStep::default();
        assert_eq!(s.newcomers(&m(&["a", "b"])).len(), 2);
        assert!(s.newcomers(&m(&["a", "b"])).is_empty());
        // b left and came back: a newcomer again.
        assert!(s.newcomers(&m(&["a"])).is_empty());
        assert_eq!(s.newcomers(&m(&["a", "b"]))[0].0, "b");
        // A send to a failed: in step again after the resync.
        s.failed_tx.send("a".into()).expect("send");
        s.next_failure().await;
        assert!(s.newcomers(&m(&["a", "b"])).is_empty());
        s.resync();
        assert_eq!(s.newcomers(&m(&["a", "b"]))[0].0, "a");
    }
}
