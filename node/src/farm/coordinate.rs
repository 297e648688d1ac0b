//! The farm as the sync scheduler's coordinator: a repository's leader fetches from the upstream
//! and the others from the leader's staged state over the farm channel (git's smart-HTTP client
//! with this node's farm certificate, the leader reached by the name in its certificate); a
//! trigger a client sends to any member reaches the leader; a staged state is flipped to only
//! when the farm may advertise it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mirrorfarm_common::farm::tls::node_name;
use tokio::sync::OwnedSemaphorePermit;

use crate::farm::flip::{decide, Decision};
use crate::farm::leader::remote_leader;
use crate::farm::Farm;
use crate::names::{RefName, RepoId};
use crate::state::StagedHint;
use crate::sync::coordinator::{Coordinator, Source, Verdict, Waiting};
use crate::sync::fetch::Staged;

/// Oldest git whose HTTP client takes `http.curloptResolve` (how a member's certificate name is
/// resolved to its farm address); older ones fetch from the upstream instead.
pub const MIN_GIT_FOR_MEMBERS: (u32, u32, u32) = (2, 37, 0);

/// How long after the stage timeout a staged state looks again, should no view come (it looks
/// each time the farm view is rebuilt, and the view is rebuilt at least every few hundred ms).
const AFTER_TIMEOUT: Duration = Duration::from_millis(10);

impl Farm {
    /// git's settings for fetching from member `node` at `addr`, and the URL of `repo` there.
    pub fn member_fetch(
        &self,
        node: &str,
        addr: SocketAddr,
        repo: &RepoId,
    ) -> (String, Vec<String>) {
        let name = node_name(node);
        // A namespace path's slashes are encoded: the member's route takes one project segment.
        let url = format!(
            "https://{name}:{}{}/{}/{}.git",
            addr.port(),
            mirrorfarm_common::farm::GIT,
            repo.project.as_str().replace('/', "%2F"),
            repo.repo.as_str()
        );
        let ip = match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let f = &self.cert_files;
        let config = vec![
            format!("http.sslCert={}", f.cert.display()),
            format!("http.sslKey={}", f.key.display()),
            format!("http.sslCAInfo={}", f.ca.display()),
            format!("http.sslCAPath={}", f.ca_dir.display()),
            "http.sslVerify=true".to_owned(),
            format!("http.curloptResolve={name}:{}:{ip}", addr.port()),
            // A member gone without a word ends the fetch within a minute (a live one sends
            // keep-alive packets while it counts objects).
            // (the member's upload-pack sends one every second: `uploadpack.keepAlive=1`).
            "http.lowSpeedLimit=1".to_owned(),
            "http.lowSpeedTime=60".to_owned(),
            "credential.helper=".to_owned(),
            // Members are reached directly, never through a proxy the environment
            // (`https_proxy`, …) or git's configuration names: empty, it turns proxying off.
            "http.proxy=".to_owned(),
            // v0: the refs come with the first request, which the member answers from memory
            // (v2 takes one request more: its capabilities, then `ls-refs`).
            "protocol.version=0".to_owned(),
            // Two requests on a connection made for one fetch: HTTP/2's connection set-up and
            // flow control cost both members more than they save.
            "http.version=HTTP/1.1".to_owned(),
        ];
        (url, config)
    }

    /// Whether `id` is led by another member and `what` holds of that member (as the farm view
    /// shows it) and the repository's name.
    fn remote_leader_is(
        &self,
        id: &RepoId,
        what: impl FnOnce(&crate::farm::view::MemberView, &str) -> bool,
    ) -> bool {
        let repo = id.to_string();
        let Some((leader, _)) = remote_leader(self, &repo) else {
            return false;
        };
        let view = self.view.read();
        view.as_ref()
            .and_then(|v| v.members.iter().find(|m| m.node_id == leader))
            .is_some_and(|m| what(m, &repo))
    }

    fn leader_head(&self, leader: &str, repo: &str) -> Option<RefName> {
        let view = self.view.read();
        view.as_ref()?
            .members
            .iter()
            .find(|m| m.node_id == leader)?
            .repo_states
            .get(repo)?
            .staged_head
            .clone()
    }

    /// Waits until the farm view lets this node advertise `staged` (at most about the stage
    /// timeout).
    async fn wait_for_farm(&self, repo: &str, staged: &str, generation: u64) -> Decision {
        let start = std::time::Instant::now();
        loop {
            let updated = self.view_updated.notified();
            tokio::pin!(updated);
            updated.as_mut().enable();
            let d = match self.view.read().as_ref() {
                Some(v) => decide(
                    v,
                    repo,
                    staged,
                    generation,
                    start.elapsed(),
                    self.config.stage_timeout,
                ),
                None => Decision::Flip(generation.saturating_add(1)),
            };
            if d != Decision::Wait {
                return d;
            }
            // Only a new view or the stage timeout changes the decision: no polling (hundreds of
            // staged states wait at once while a farm syncs many repositories).
            let left = self.config.stage_timeout.saturating_sub(start.elapsed());
            let _ = tokio::time::timeout(left + AFTER_TIMEOUT, updated).await;
        }
    }
}

/// The name the member that lists the upstream for the farm is chosen by (the rendezvous hash
/// of a repository's name chooses its leader; no repository is named so).
pub const INVENTORY_LEADER: &str = "#inventory";

impl Coordinator for Farm {
    fn listing(&self, fresh: bool) -> crate::sync::coordinator::Listing<'_> {
        Box::pin(async move {
            let (node, addr) = remote_leader(self, INVENTORY_LEADER)?;
            match self.client.inventory(&node, addr, fresh).await {
                Ok(inv)
                    if inv.selection
                        != crate::selection::seen_text(&self.shared.selection.seen()) =>
                {
                    // It listed another selection than this member's (one of the two has not
                    // taken the admin page's newest yet): list here.
                    tracing::info!(node, "the member that lists the upstream has another selection than this one: listing here");
                    None
                }
                Ok(inv) => Some(crate::forge::inventory::Wanted {
                    complete: !inv.incomplete,
                    selection: inv.selection,
                    repos: inv
                        .repos
                        .into_iter()
                        .filter_map(|r| Some((RepoId::parse(&r.id).ok()?, r.fingerprint)))
                        .collect(),
                }),
                Err(e) => {
                    tracing::warn!(node, error = %e, "cannot take the farm's listing from the member that lists the upstream; listing here");
                    None
                }
            }
        })
    }

    fn source(&self, id: &RepoId) -> Source {
        let repo = id.to_string();
        let Some((node, addr)) = remote_leader(self, &repo) else {
            return Source::Upstream;
        };
        if self.shared.git < MIN_GIT_FOR_MEMBERS {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!("git is older than 2.37: this node fetches from the upstream, not from each repository's leader");
            }
            return Source::Upstream;
        }
        let (url, git_config) = self.member_fetch(&node, addr, id);
        Source::Member {
            url,
            git_config,
            head_hint: self.leader_head(&node, &repo),
        }
    }

    fn led_elsewhere(&self, id: &RepoId) -> bool {
        // Followed only while the leader's states show it: one the leader dropped (gone
        // upstream, say) is synced here again, and learns so. While the leader's states are still
        // being asked for (it or this node just joined), it is followed: following fetches from
        // it as soon as they come, and a periodic sync of every repository here is not needed.
        self.remote_leader_is(id, |m, repo| {
            !m.states_current
                || m.repo_states
                    .get(repo)
                    .is_some_and(|s| s.refs_hash.is_some())
        })
    }

    fn awaits_leader(&self, id: &RepoId) -> bool {
        // Only when this node would fetch it from the leader (see `source`), and the leader's
        // states as held here are complete: while they are still being asked for, nothing is
        // known, and the sync goes ahead (a refusal is retried).
        if self.shared.git < MIN_GIT_FOR_MEMBERS {
            return false;
        }
        self.remote_leader_is(id, |m, repo| {
            m.states_current
                && m.repo_states
                    .get(repo)
                    .is_none_or(|s| s.staged_hash.is_none() && s.refs_hash.is_none())
        })
    }

    fn requested(&self, id: &RepoId) -> bool {
        let Some((node, addr)) = remote_leader(self, &id.to_string()) else {
            return false;
        };
        crate::farm::nudge::member(self, node, addr, id);
        true
    }

    fn staged<'a>(
        &'a self,
        id: &'a RepoId,
        staged: &'a Staged,
        permit: OwnedSemaphorePermit,
    ) -> Waiting<'a> {
        Box::pin(async move {
            let hint = StagedHint {
                refs_hash: staged.hash.clone(),
                head: staged.head.clone(),
            };
            let known = self.shared.repos.write().get_mut(id).map(|e| {
                e.staged = Some(hint.clone());
                if staged.hash != e.record.refs_hash {
                    e.behind_since_ms.get_or_insert_with(crate::store::now_ms);
                }
                (e.record.refs_hash.clone(), e.record.generation)
            });
            let Some((served, generation)) = known else {
                return (Verdict::Flip(None), Some(permit));
            };
            self.shared.repo_changed(id);
            if staged.hash == served {
                return (Verdict::Flip(None), Some(permit));
            }
            // Every member counts it for the flip now; when this node leads the repository, its
            // followers fetch it now.
            crate::farm::nudge::staged(self, id, &hint);
            // Other syncs run while this one waits for the farm.
            drop(permit);
            let verdict = match self
                .wait_for_farm(&id.to_string(), &staged.hash, generation)
                .await
            {
                Decision::Flip(g) => Verdict::Flip(Some(g)),
                _ => Verdict::Again { served },
            };
            (verdict, None)
        })
    }
}
