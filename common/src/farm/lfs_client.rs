//! Git LFS between members: which objects a member has, a download asked of a repository's
//! leader, and an object streamed from a member (held or on its way there).

use std::net::SocketAddr;
use std::time::Duration;

use crate::farm::client::{json_answer, FarmClient};
use crate::farm::messages::{LfsFetch, LfsHave, LfsHaveAnswer};
use crate::farm::{FarmError, LFS_FETCH, LFS_HAVE, LFS_OBJECTS};

/// The largest "have" answer read.
const MAX_HAVE_ANSWER: usize = 4 << 20;
/// How long an object request may wait for its answer's head (a leader may first ask the
/// upstream's batch API).
const OBJECT_HEAD: Duration = Duration::from_secs(120);
/// An object stream's total bound: large objects take long; stalls are the reader's to notice.
const OBJECT_TOTAL: Duration = Duration::from_secs(24 * 3600);

impl FarmClient {
    /// Which of `oids` member `node_id` at `addr` holds for `project/repo` (or is downloading).
    pub async fn lfs_have(
        &self,
        node_id: &str,
        addr: SocketAddr,
        (project, repo): (&str, &str),
        oids: &[String],
    ) -> Result<Vec<String>, FarmError> {
        let peer = addr.to_string();
        let body = LfsHave {
            project: project.to_owned(),
            repo: repo.to_owned(),
            oids: oids.to_vec(),
        };
        let mut r = self
            .send(
                addr,
                self.http
                    .post(self.url(node_id, addr, LFS_HAVE))
                    .json(&body),
            )
            .await?;
        let a: LfsHaveAnswer = json_answer(&peer, &mut r, MAX_HAVE_ANSWER).await?;
        Ok(a.have)
    }

    /// Asks member `node_id` (a repository's leader) to download an object from the upstream.
    pub async fn lfs_fetch(
        &self,
        node_id: &str,
        addr: SocketAddr,
        fetch: &LfsFetch,
    ) -> Result<(), FarmError> {
        self.send(
            addr,
            self.http
                .post(self.url(node_id, addr, LFS_FETCH))
                .timeout(OBJECT_HEAD)
                .json(fetch),
        )
        .await
        .map(drop)
    }

    /// Object `oid` of `project/repo` from member `node_id`, streaming (`fetch`: the member may
    /// download it from the upstream first). 404 when it has none.
    pub async fn lfs_object(
        &self,
        node_id: &str,
        addr: SocketAddr,
        (project, repo): (&str, &str),
        (oid, size): (&str, u64),
        fetch: bool,
    ) -> Result<reqwest::Response, FarmError> {
        let url = self.url(node_id, addr, &format!("{LFS_OBJECTS}/{oid}"));
        let req = self
            .http
            .get(url)
            .query(&[
                ("project", project),
                ("repo", repo),
                ("size", &size.to_string()),
                ("fetch", if fetch { "true" } else { "false" }),
            ])
            .timeout(OBJECT_TOTAL);
        tokio::time::timeout(OBJECT_HEAD, self.send(addr, req))
            .await
            .map_err(|_| FarmError::Malformed {
                peer: addr.to_string(),
                why: "no answer in time".into(),
            })?
    }
}
