//! Keeping a loop woken by many events to one pass per interval: what wakes it meanwhile is
//! taken in by the next pass, together.

use std::time::Duration;

use tokio::time::Instant;

/// Spaces passes at least `gap` apart.
#[derive(Debug)]
pub struct Pace {
    gap: Duration,
    last: Option<Instant>,
}

impl Pace {
    /// Passes at least `gap` apart (the first at once).
    pub fn new(gap: Duration) -> Self {
        Self { gap, last: None }
    }

    /// Waits until a pass may start, and counts it as started.
    pub async fn pass(&mut self) {
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + self.gap).await;
        }
        self.last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn passes_are_spaced_by_the_gap_and_a_late_one_waits_for_nothing() {
        let gap = Duration::from_millis(25);
        let mut pace = Pace::new(gap);
        let t0 = Instant::now();
        pace.pass().await;
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "the first pass starts at once"
        );
        pace.pass().await;
        assert_eq!(t0.elapsed(), gap, "the second waits for the gap");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t1 = Instant::now();
        pace.pass().await;
        assert_eq!(
            t1.elapsed(),
            Duration::ZERO,
            "a pass after a quiet spell starts at once"
        );
    }
}
