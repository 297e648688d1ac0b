//! When this node last heard each member's gossip heartbeat: the "last gossip" age the admin
//! page and `/status` show (a member whose heartbeat stops is about to leave the view).

use std::collections::HashMap;
use std::time::Instant;

use chitchat::Heartbeat;

/// The last heartbeat heard from each node, and when it changed.
#[derive(Debug, Default)]
pub struct Heartbeats {
    seen: HashMap<String, (Heartbeat, Instant)>,
}

impl Heartbeats {
    /// Gossip shows `beat` for `node` at `now`: a new value is a heartbeat heard now.
    pub fn saw(&mut self, node: &str, beat: Heartbeat, now: Instant) {
        match self.seen.get_mut(node) {
            Some((b, _)) if *b == beat => {}
            Some(e) => *e = (beat, now),
            None => {
                self.seen.insert(node.to_owned(), (beat, now));
            }
        }
    }

    /// How long ago (ms) `node`'s heartbeat last changed, as of `now`.
    pub fn age_ms(&self, node: &str, now: Instant) -> Option<u64> {
        self.seen
            .get(node)
            .map(|(_, at)| now.saturating_duration_since(*at).as_millis() as u64)
    }

    /// Forgets nodes `keep` says no.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.seen.retain(|n, _| keep(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_heartbeat_counts_when_it_changes() {
        let t0 = Instant::now();
        let mut h = Heartbeats::default();
        let beat = |n: u64| -> Heartbeat { serde_json::from_str(&n.to_string()).expect("beat") };
        h.saw("a", beat(1), t0);
        assert_eq!(h.age_ms("a", t0 + Duration::from_millis(700)), Some(700));
        // The same value again is not news; a new one is.
        h.saw("a", beat(1), t0 + Duration::from_millis(500));
        assert_eq!(h.age_ms("a", t0 + Duration::from_millis(700)), Some(700));
        h.saw("a", beat(2), t0 + Duration::from_millis(600));
        assert_eq!(h.age_ms("a", t0 + Duration::from_millis(700)), Some(100));
        assert_eq!(h.age_ms("b", t0), None);
        h.retain(|n| n != "a");
        assert_eq!(h.age_ms("a", t0), None);
    }
}
