//! The last hour of this member, a point a minute (`mirror.admin.plotInterval`), kept in memory
//! for the admin page's plots:
//! how far behind the upstream it may be (the age of its oldest repository's last successful
//! sync) and how many git requests it served in that minute.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use mirrorfarm_common::farm::series::SeriesPoint;
use parking_lot::Mutex;

/// Points kept: an hour of minutes by default.
pub const POINTS: usize = 60;

/// The series.
#[derive(Default)]
pub struct Series {
    points: Mutex<VecDeque<SeriesPoint>>,
    /// The node's count of requests served at the last point.
    last_total: AtomicU64,
}

impl Series {
    /// Takes a point at `now_ms` with this sync lag and the node's count of requests served so
    /// far (`total`); the oldest goes past [`POINTS`].
    pub fn sample(&self, now_ms: i64, lag_seconds: u64, total: u64) {
        let requests = total.saturating_sub(self.last_total.swap(total, Ordering::Relaxed));
        let mut p = self.points.lock();
        p.push_back(SeriesPoint {
            at_ms: now_ms,
            lag_seconds,
            requests,
        });
        while p.len() > POINTS {
            p.pop_front();
        }
    }

    /// The points, oldest first.
    pub fn points(&self) -> Vec<SeriesPoint> {
        self.points.lock().iter().cloned().collect()
    }
}

/// The sync lag of `shared` now: seconds since its oldest repository's last successful sync
/// (0 with none; a repository never synced counts from the node's start).
pub fn lag_seconds(shared: &crate::shared::Shared, now_ms: i64, started_ms: i64) -> u64 {
    let oldest = shared
        .repos
        .read()
        .values()
        .map(|e| e.record.last_success_ms.unwrap_or(started_ms))
        .min();
    oldest.map_or(0, |t| ((now_ms - t).max(0) / 1000) as u64)
}

/// Takes a point every `mirror.admin.plotInterval` until `stop` turns true.
pub async fn run(
    shared: std::sync::Arc<crate::shared::Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let started = crate::store::now_ms();
    let every = shared.config.plot_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                let now = crate::store::now_ms();
                let lag = lag_seconds(&shared, now, started);
                shared.series.sample(now, lag, shared.metrics.served_total());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_of_points_with_the_requests_of_each_minute() {
        let s = Series::default();
        s.sample(1_000, 5, 3);
        s.sample(2_000, 7, 3);
        let p = s.points();
        assert_eq!((p[0].requests, p[0].lag_seconds), (3, 5));
        assert_eq!((p[1].requests, p[1].at_ms), (0, 2_000));
        for i in 0..100 {
            s.sample(3_000 + i, 0, 3);
        }
        let p = s.points();
        assert_eq!(p.len(), POINTS);
        assert_eq!(p[0].at_ms, 3_000 + 100 - POINTS as i64);
    }
}
