//! The queue of a reconcile's syncs. A reconcile of thousands of repositories does not start
//! thousands of tasks at once: they wait here and start a few at a time, leaving one place of
//! `mirror.sync.concurrency` free, so that a triggered sync (a push's webhook, a client's
//! request, a follower catching up) waits behind the syncs running, not behind the whole
//! reconcile.

use std::collections::{HashSet, VecDeque};

use crate::names::RepoId;

/// Repositories waiting for a periodic sync, oldest first.
#[derive(Debug, Default)]
pub struct Queue {
    order: VecDeque<RepoId>,
    queued: HashSet<RepoId>,
}

impl Queue {
    /// Queues `id` (once).
    pub fn push(&mut self, id: RepoId) {
        if self.queued.insert(id.clone()) {
            self.order.push_back(id);
        }
    }

    /// Queues `id` ahead of the periodic syncs (a repository this node has just come to lead).
    pub fn push_front(&mut self, id: RepoId) {
        // A later copy in `order` is skipped by `pop` once this one is taken.
        self.queued.insert(id.clone());
        self.order.push_front(id);
    }

    /// Takes `id` out (it starts now, or is no longer mirrored).
    pub fn remove(&mut self, id: &RepoId) {
        // Left in `order`: `pop` skips what is no longer queued.
        self.queued.remove(id);
    }

    /// The next repository to sync.
    pub fn pop(&mut self) -> Option<RepoId> {
        while let Some(id) = self.order.pop_front() {
            if self.queued.remove(&id) {
                return Some(id);
            }
        }
        None
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

/// How many syncs a reconcile may run at once: all places but one (at least one).
pub fn background_limit(concurrency: usize) -> usize {
    concurrency.saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_once_in_order_and_removable() {
        let id = |r: &str| RepoId::parse(&format!("P/{r}")).expect("id");
        let mut q = Queue::default();
        for r in ["a", "b", "a", "c"] {
            q.push(id(r));
        }
        assert_eq!(q.len(), 3);
        q.remove(&id("b"));
        assert_eq!(q.pop(), Some(id("a")));
        assert_eq!(q.pop(), Some(id("c")));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
        assert_eq!((background_limit(1), background_limit(4)), (1, 3));
        // A takeover goes first, once, even when it was queued already.
        for r in ["a", "b"] {
            q.push(id(r));
        }
        q.push_front(id("b"));
        q.push_front(id("t"));
        assert_eq!(q.len(), 3);
        let order: Vec<RepoId> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [id("t"), id("b"), id("a")]);
    }
}
