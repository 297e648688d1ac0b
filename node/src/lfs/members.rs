//! LFS objects and the other members: who leads a repository (and downloads its objects from the
//! upstream), which objects the others hold for a repository, a download asked of the leader, and
//! a download fed by another member's stream.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use mirrorfarm_common::farm::messages::LfsFetch;
use mirrorfarm_common::farm::FarmError;

use crate::lfs::batch::Action;
use crate::lfs::flight::Feeder;
use crate::lfs::oid::LfsOid;
use crate::lfs::service::{Lfs, LfsError};
use crate::lfs::upstream::IDLE;
use crate::names::RepoId;

/// The farm as the LFS service sees it for one repository.
pub(crate) struct Peers {
    /// The repository's leader, when it is another member.
    pub leader: Option<(String, SocketAddr)>,
    /// The other members that do not lead it.
    pub others: Vec<(String, SocketAddr)>,
}

impl Lfs {
    pub(crate) fn peers(&self, repo: &RepoId) -> Peers {
        let Some(farm) = self.farm() else {
            return Peers {
                leader: None,
                others: Vec::new(),
            };
        };
        let others = farm.others();
        let leader_id = farm.view.read().as_ref().and_then(|v| {
            crate::farm::leader::leader_of(
                &repo.to_string(),
                v.members.iter().map(|m| m.node_id.as_str()),
            )
            .map(str::to_owned)
        });
        let (leader, others): (Vec<_>, Vec<_>) = others
            .into_iter()
            .partition(|(id, _)| Some(id) == leader_id.as_ref());
        Peers {
            leader: leader.into_iter().next(),
            others,
        }
    }

    /// Which of `oids` another member holds for `repo` (or is downloading from the upstream);
    /// those become known for `repo` here too. Members that do not answer count as holding none.
    pub async fn farm_has(&self, repo: &RepoId, oids: &[LfsOid]) -> BTreeSet<LfsOid> {
        let Some(farm) = self.farm() else {
            return BTreeSet::new();
        };
        let asked: Vec<String> = oids.iter().map(ToString::to_string).collect();
        let names = (repo.project.as_str(), repo.repo.as_str());
        let calls = farm.others().into_iter().map(|(node, addr)| {
            let (client, asked) = (farm.client.clone(), asked.clone());
            async move {
                client
                    .lfs_have(&node, addr, names, &asked)
                    .await
                    .unwrap_or_default()
            }
        });
        let have: BTreeSet<LfsOid> = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .filter_map(|o| LfsOid::parse(&o))
            .filter(|o| oids.contains(o))
            .collect();
        for oid in &have {
            self.known.insert(repo, oid).await;
        }
        have
    }

    /// Asks the object's download of the repository's leader (which downloads it from the
    /// upstream once for the farm), or does it here when this node leads, stands alone or the
    /// leader cannot be asked. Returns once a download is under way somewhere.
    pub async fn kickoff(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
        action: Action,
    ) -> Result<(), LfsError> {
        self.known.insert(repo, oid).await;
        if self.holds(oid).await {
            return Ok(());
        }
        if let (Some(farm), Some((node, addr))) = (self.farm(), self.peers(repo).leader) {
            let ask = LfsFetch {
                project: repo.project.as_str().to_owned(),
                repo: repo.repo.as_str().to_owned(),
                oid: oid.to_string(),
                size,
                href: Some(action.href.clone()),
                header: action.header.clone(),
            };
            match farm.client.lfs_fetch(&node, addr, &ask).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(node, error = %e, "the leader cannot download an LFS object; downloading here")
                }
            }
        }
        self.download(repo, oid, size, Some(action)).await.map(drop)
    }

    /// Feeds `oid` from another member: the leader first, then the others, each as it holds it;
    /// then the leader asked to download it. This node downloads it from the upstream itself
    /// only when it leads the repository, stands alone, or the leader cannot be reached.
    pub(crate) async fn feed_from_farm(
        self: &Arc<Self>,
        repo: &RepoId,
        oid: &LfsOid,
        size: u64,
        mut feeder: Feeder,
    ) -> Result<Feeder, String> {
        let peers = self.peers(repo);
        let mut asks: Vec<(&(String, SocketAddr), bool)> = Vec::new();
        asks.extend(peers.leader.iter().map(|p| (p, false)));
        asks.extend(peers.others.iter().map(|p| (p, false)));
        asks.extend(peers.leader.iter().map(|p| (p, true)));
        let names = (repo.project.as_str(), repo.repo.as_str());
        let mut leader_reached = peers.leader.is_none();
        if let Some(farm) = self.farm() {
            for ((node, addr), fetch) in asks {
                let r = farm
                    .client
                    .lfs_object(node, *addr, names, (oid.as_str(), size), fetch)
                    .await;
                let is_leader = peers.leader.as_ref().is_some_and(|(l, _)| l == node);
                let r = match r {
                    Ok(r) => r,
                    Err(FarmError::Status { .. }) => {
                        leader_reached |= is_leader;
                        continue;
                    }
                    Err(_) => continue,
                };
                let mut body = r.bytes_stream();
                loop {
                    match tokio::time::timeout(IDLE, body.next()).await {
                        Err(_) => return Err(format!("member {node} stalled sending {oid}")),
                        Ok(None) => {
                            self.stats.member_download();
                            self.known.insert(repo, oid).await;
                            return Ok(feeder);
                        }
                        Ok(Some(Err(e))) => return Err(format!("member {node}: {e}")),
                        Ok(Some(Ok(chunk))) => {
                            feeder.feed(&chunk).await.map_err(|e| e.to_string())?
                        }
                    }
                }
            }
        }
        if leader_reached && peers.leader.is_some() {
            return Err(format!("no member could provide LFS object {oid}"));
        }
        let action = self.farm_action(repo, oid, size).await?;
        self.feed_from_upstream(&action, feeder).await
    }
}
