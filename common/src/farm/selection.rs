//! The farm's selection of what to mirror as an admin wrote it on the admin page: replicated to
//! every member over the farm channel (`/farm/selection`), kept in each member's store; the
//! newest record wins everywhere. Without one, the properties file's `mirror.projects` and
//! `mirror.repos` hold.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{json_answer, FarmClient};
use super::{FarmError, SELECTION};

/// The most a member's selection answer may hold.
const MAX_ANSWER: usize = 16 << 20;

/// What to mirror, as written on the admin page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectionRecord {
    /// `*` alone for every project the upstream lists, else project keys.
    pub projects: Vec<String>,
    /// Single repositories (`PROJECT/repo`).
    pub repos: Vec<String>,
    /// Back to the properties file's selection (`projects` and `repos` are then empty).
    #[serde(default)]
    pub from_file: bool,
    /// When it was written (Unix ms).
    pub written_ms: i64,
    /// Who wrote it (an admin's user name, or `admin-token`).
    pub written_by: String,
    /// The member it was written on.
    pub node_id: String,
}

impl SelectionRecord {
    /// Whether this record replaces `other`: written later (ties: the greater member ID).
    pub fn newer_than(&self, other: &Self) -> bool {
        (self.written_ms, &self.node_id) > (other.written_ms, &other.node_id)
    }
}

impl FarmClient {
    /// Sends this node's selection to member `node_id` at `addr`.
    pub async fn push_selection(
        &self,
        node_id: &str,
        addr: SocketAddr,
        record: &SelectionRecord,
    ) -> Result<(), FarmError> {
        self.send(
            addr,
            self.http
                .post(self.url(node_id, addr, SELECTION))
                .timeout(Duration::from_secs(10))
                .json(record),
        )
        .await
        .map(drop)
    }

    /// The selection member `node_id` at `addr` holds (`None`: the file's).
    pub async fn pull_selection(
        &self,
        node_id: &str,
        addr: SocketAddr,
    ) -> Result<Option<SelectionRecord>, FarmError> {
        let peer = addr.to_string();
        let mut r = self
            .send(
                addr,
                self.http
                    .get(self.url(node_id, addr, SELECTION))
                    .timeout(Duration::from_secs(10)),
            )
            .await?;
        json_answer(&peer, &mut r, MAX_ANSWER).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ms: i64, node: &str) -> SelectionRecord {
        SelectionRecord {
            projects: vec!["*".into()],
            repos: Vec::new(),
            from_file: false,
            written_ms: ms,
            written_by: "alice".into(),
            node_id: node.into(),
        }
    }

    #[test]
    fn the_newest_wins_and_ties_go_to_one_member() {
        assert!(record(2, "a").newer_than(&record(1, "b")));
        assert!(!record(1, "b").newer_than(&record(2, "a")));
        assert!(record(1, "b").newer_than(&record(1, "a")));
        assert!(!record(1, "a").newer_than(&record(1, "a")));
    }
}
