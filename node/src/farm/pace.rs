//! How often the membership loop may pass over what changed. While a farm syncs many
//! repositories, changes wake the loop hundreds of times a second, and a pass costs about the same
//! for one change as for the many that arrive while it waits (it takes them all). A few passes in
//! a row go at once — a single change's way through the farm (stage, words, flip) is not delayed
//! — and past those, passes are spaced to one per `gap` on average.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A sliding window of the last passes.
#[derive(Debug)]
pub struct Pace {
    gap: Duration,
    burst: usize,
    recent: VecDeque<Instant>,
}

impl Pace {
    /// At most `burst` passes within `burst × gap`.
    pub fn new(gap: Duration, burst: usize) -> Self {
        Self {
            gap,
            burst: burst.max(1),
            recent: VecDeque::new(),
        }
    }

    /// How long to wait before a pass wanted at `now`.
    pub fn wait(&self, now: Instant) -> Duration {
        if self.recent.len() < self.burst {
            return Duration::ZERO;
        }
        let window = self.gap * self.burst as u32;
        self.recent.front().map_or(Duration::ZERO, |first| {
            (*first + window).saturating_duration_since(now)
        })
    }

    /// Counts a pass made at `at`.
    pub fn passed(&mut self, at: Instant) {
        self.recent.push_back(at);
        while self.recent.len() > self.burst {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_and_more_are_spaced() {
        let gap = Duration::from_millis(25);
        let mut pace = Pace::new(gap, 4);
        let t0 = Instant::now();
        for i in 0..4 {
            let at = t0 + Duration::from_millis(i);
            assert_eq!(pace.wait(at), Duration::ZERO, "pass {i} of the burst");
            pace.passed(at);
        }
        // The fifth within the window waits until the first leaves it (t0 + 100 ms).
        let at = t0 + Duration::from_millis(10);
        assert_eq!(pace.wait(at), Duration::from_millis(90));
        pace.passed(t0 + Duration::from_millis(100));
        // Sustained, one pass per gap on average: the next may go when the second left.
        assert_eq!(
            pace.wait(t0 + Duration::from_millis(100)),
            Duration::from_millis(1)
        );
        // After a quiet while, a burst goes at once again.
        assert_eq!(pace.wait(t0 + Duration::from_secs(1)), Duration::ZERO);
    }
}
