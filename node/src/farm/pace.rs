//! When the membership loop's next pass runs after this node's own changes (a state staged,
//! flipped or recorded here). What such a pass publishes leaves with the next gossip round
//! anyway, so own changes wake a pass at most every [`LOCAL_PACE`], and a pass woken by anything
//! else takes them along. News from other members (their words, their states, gossip) still
//! wakes a pass at once: flips and followers' fetches wait for it. What else a pass does for own
//! changes does not hold a push up: a follower asks for the leader's newer state while its
//! previous sync still runs ([`crate::farm::follow`]), and a repository served again after it
//! was withheld wakes whoever waits to see it served.

use tokio::time::{Duration, Instant};

/// The least time between the last pass and one woken by this node's own changes. Gossip
/// carries them every 200 ms ([`mirrorfarm_common::gossip::GOSSIP_INTERVAL`]); while a farm syncs
/// many repositories, own changes came ~35 times a second per member, each a pass of its own
/// (of ~90 passes a second; ~55 with this pace).
pub const LOCAL_PACE: Duration = Duration::from_millis(50);

/// The pacing of passes woken by own changes.
#[derive(Debug)]
pub struct LocalPace {
    last_pass: Instant,
    due: Option<Instant>,
}

impl LocalPace {
    /// No pass has run yet: the first own change passes at once.
    pub fn new(now: Instant) -> Self {
        Self {
            last_pass: now.checked_sub(LOCAL_PACE).unwrap_or(now),
            due: None,
        }
    }

    /// An own change came at `now`: true when a pass should run now; otherwise the pass is due
    /// at [`LocalPace::due`].
    pub fn changed(&mut self, now: Instant) -> bool {
        let due = self.last_pass + LOCAL_PACE;
        if now >= due {
            return true;
        }
        self.due.get_or_insert(due);
        false
    }

    /// When a pass is owed to own changes, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// A pass ran at `now` (it took every change so far along).
    pub fn passed(&mut self, now: Instant) {
        self.last_pass = now;
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_changes_wait_for_the_pace_and_any_pass_takes_them_along() {
        let t0 = Instant::now();
        let mut p = LocalPace::new(t0);
        assert!(p.changed(t0), "the first own change passes at once");
        p.passed(t0);
        let soon = t0 + Duration::from_millis(10);
        assert!(!p.changed(soon));
        assert_eq!(p.due(), Some(t0 + LOCAL_PACE));
        // A second change before then is owed the same pass.
        assert!(!p.changed(soon + Duration::from_millis(5)));
        assert_eq!(p.due(), Some(t0 + LOCAL_PACE));
        // A pass woken by other news takes them along: nothing is owed any more.
        let other = t0 + Duration::from_millis(20);
        p.passed(other);
        assert_eq!(p.due(), None);
        assert!(!p.changed(other + Duration::from_millis(1)));
        assert_eq!(p.due(), Some(other + LOCAL_PACE));
        // Once the pace has passed, an own change passes at once.
        p.passed(other + LOCAL_PACE);
        assert!(p.changed(other + LOCAL_PACE * 2));
        assert_eq!(p.due(), None);
    }
}
