//! A member's last hour for the admin page's plots (`GET /farm/series`, nodes only).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{json_answer, FarmClient};
use super::{FarmError, SERIES};

/// One minute of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    /// When (Unix ms).
    pub at_ms: i64,
    /// Seconds since its oldest repository's last successful sync.
    pub lag_seconds: u64,
    /// Git requests it served in the minute before.
    pub requests: u64,
}

/// A member's points, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesAnswer {
    /// The points.
    pub points: Vec<SeriesPoint>,
}

impl FarmClient {
    /// Member `node_id`'s last hour (a short bound: a page waits on it).
    pub async fn series(&self, node_id: &str, addr: SocketAddr) -> Result<SeriesAnswer, FarmError> {
        let peer = addr.to_string();
        let mut r = self
            .send(
                addr,
                self.http
                    .get(self.url(node_id, addr, SERIES))
                    .timeout(Duration::from_secs(2)),
            )
            .await?;
        json_answer(&peer, &mut r, 1 << 20).await
    }
}
