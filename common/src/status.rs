//! A node's status document (`GET /status`), typed once: the node writes it, the load balancer's
//! health checks and the demo read it. Readers ignore fields they do not know (a newer node) and
//! take defaults for fields that are missing (an older one), so a rolling upgrade of a farm keeps
//! every node in rotation.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The result of the last sync attempt of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncResult {
    /// Refs now equal upstream's.
    Ok,
    /// The upstream refused the farm key.
    Unauthorized,
    /// The upstream could not be reached.
    Unreachable,
    /// The upstream's host key changed.
    HostKeyChanged,
    /// The repository does not exist upstream.
    NotFound,
    /// Anything else (and any result a newer node names that this one does not know).
    #[serde(other)]
    Failed,
}

/// One repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RepoStatus {
    /// How long its last sync took (ms).
    pub last_sync_duration_ms: Option<u64>,
    /// Project key.
    pub project: String,
    /// Repository slug.
    pub repo: String,
    /// `SYNCHRONIZED`, `SYNCHRONIZING`, `CATCHING_UP` (not served now: behind the farm or cut off
    /// from it), `AWAITING_AUTHORIZATION`, `NOT_FOUND` or `ERROR`.
    pub state: String,
    /// Generation of the served ref state (0: none yet).
    pub generation: u64,
    /// Hash of the served ref map.
    pub refs_hash: String,
    /// Hash of the newest staged state, while it differs from the served one (in a farm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged_hash: Option<String>,
    /// In a farm: the node ID of the member that fetches it from the upstream.
    pub leader: Option<String>,
    /// Why the node does not serve it now, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
    /// A sync is running now.
    pub syncing: bool,
    /// End of the last sync attempt (RFC 3339).
    pub last_sync: Option<String>,
    /// End of the last successful sync (RFC 3339).
    pub last_successful_sync: Option<String>,
    /// Result of the last attempt.
    pub last_result: Option<SyncResult>,
    /// Message of the last attempt.
    pub last_message: String,
    /// How far (ms) the served state is behind the upstream as far as this node knows: 0 when
    /// the last attempt confirmed it; the time since a newer state was staged here and not yet
    /// served; after failed attempts, the time since the upstream last confirmed it.
    pub lag_ms: Option<u64>,
    /// Bytes the repository takes on this node's disk (counted after each change).
    pub size_bytes: Option<u64>,
}

/// The upstream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UpstreamStatus {
    /// The configured URL.
    pub url: String,
    /// Whether the last attempts reached it.
    pub reachable: bool,
    /// The latest successful sync of any repository (RFC 3339).
    pub last_successful_sync: Option<String>,
}

/// A farm member as the answering node sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MemberStatus {
    /// Node ID.
    pub node_id: String,
    /// HTTP address.
    pub address: Option<SocketAddr>,
    /// State word.
    pub state: String,
    /// Version.
    pub version: String,
    /// Its clock minus ours, in ms (as last published; within about a second).
    pub clock_skew_ms: Option<i64>,
    /// Whether this is the node answering.
    pub this_node: bool,
    /// How long ago (ms) the answering node last heard this member's gossip heartbeat (0 for
    /// itself).
    pub last_gossip_ms: Option<u64>,
    /// Its state of each repository (`PROJECT/repo`); in `/status`, of the first 50 by name.
    pub repo_states: BTreeMap<String, MemberRepoState>,
    /// How many repository states it has in all.
    pub repo_states_total: usize,
}

/// A member's state of one repository, as its gossip says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MemberRepoState {
    /// Generation served (0: none).
    pub generation: u64,
    /// Hash of the ref map served.
    pub refs_hash: Option<String>,
    /// Hash of the newest state staged, while it differs from the served one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged_hash: Option<String>,
}

/// A node refused from the farm.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RefusedMember {
    /// Its node ID.
    pub node_id: String,
    /// The configuration keys on which it differs from this node.
    pub differing_keys: Vec<String>,
}

/// The readiness document (`GET /rest/mirroring/latest/ready`): what a load balancer's health
/// check needs, the same few bytes however many repositories the node mirrors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReadyDoc {
    /// Node ID.
    pub node_id: String,
    /// Node state word (as `/status` `state`).
    pub state: String,
    /// Whether it serves every mirrored repository (as `/status` `ready`).
    pub ready: bool,
    /// Its `setup.baseUrl`.
    pub base_url: String,
    /// Repositories it serves.
    pub synced_repos: usize,
    /// Repositories it mirrors.
    pub total_repos: usize,
}

/// The whole document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusDoc {
    /// Node state: `STARTING`, `AWAITING_AUTHORIZATION`, `SYNCHRONIZING`, `SYNCHRONIZED`,
    /// `CATCHING_UP` or `ERROR`.
    pub state: String,
    /// This node.
    pub node_id: String,
    /// The farm.
    pub farm_id: String,
    /// `setup.displayName`.
    pub display_name: String,
    /// `setup.baseUrl`.
    pub base_url: String,
    /// The farm key the upstream must authorize.
    pub public_key: String,
    /// mirrorfarm version.
    pub version: String,
    /// `anonymous` or `authenticated`.
    pub access: String,
    /// How access works now, in a sentence (e.g. that authentication runs on cached grants).
    pub access_message: Option<String>,
    /// Authentication is running on cached grants: the upstream cannot be asked about credentials.
    pub auth_offline: bool,
    /// Live sessions on this node.
    pub live_sessions: usize,
    /// With state `STALE`: seconds since the served state was last confirmed by the upstream.
    pub stale_seconds: Option<u64>,
    /// Every mirrored repository has a complete state to serve (what a load balancer checks).
    pub ready: bool,
    /// Repositories in a servable state.
    pub synced_repos: usize,
    /// Repositories mirrored.
    pub total_repos: usize,
    /// Upstream reachability.
    pub upstream: UpstreamStatus,
    /// Per repository; in `/status`, the first 100 by name.
    pub repos: Vec<RepoStatus>,
    /// When `repos` stops short: the paged resource listing the rest
    /// (`/rest/mirroring/latest/repos?start=100&limit=100`).
    pub repos_next: Option<String>,
    /// Live farm members agreeing on the farm configuration, this node included (1 without a farm).
    pub member_count: usize,
    /// Those members (empty without a farm).
    pub members: Vec<MemberStatus>,
    /// Live nodes refused because their farm configuration differs, with the keys that differ.
    pub refused_members: Vec<RefusedMember>,
    /// Live gossip peers not verified as members over the farm's TLS (node IDs): not counted.
    pub unverified_nodes: Vec<String>,
    /// Warnings, e.g. a member's clock more than 2 s off.
    pub warnings: Vec<String>,
    /// Git LFS on this node.
    pub lfs: LfsStatus,
    /// The load balancers in front of the farm, as they reported to this member.
    pub load_balancers: Vec<LoadBalancerStatus>,
    /// What the farm mirrors, and whether the properties file or the admin page says so.
    pub selection: SelectionStatus,
}

/// What the farm mirrors and where that comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SelectionStatus {
    /// `file` (the properties file's `mirror.projects` and `mirror.repos`) or `page` (written on
    /// the admin page, farm-wide).
    pub source: String,
    /// `*` for every project, else project keys.
    pub projects: Vec<String>,
    /// Single repositories (`PROJECT/repo`).
    pub repos: Vec<String>,
    /// Who wrote it on the page.
    pub written_by: Option<String>,
    /// When (RFC 3339).
    pub written_at: Option<String>,
    /// The member it was written on.
    pub written_on: Option<String>,
}

/// A load balancer, as it reported itself to a member over the farm channel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerStatus {
    /// Its ID.
    pub id: String,
    /// `lb.hostname`.
    pub hostname: String,
    /// Its HTTPS port.
    pub https_port: u16,
    /// Its certificate's subject.
    pub certificate_subject: String,
    /// When its certificate expires (RFC 3339).
    pub certificate_expires: String,
    /// Days until then.
    pub certificate_days_left: i64,
    /// Its certificate's SHA-256 fingerprint.
    pub certificate_sha256: String,
    /// Its backends: label, node ID, in rotation, state.
    pub backends: Vec<LoadBalancerBackend>,
    /// Seconds since it reported.
    pub reported_seconds_ago: u64,
    /// Its mirrorfarm version.
    pub version: String,
}

/// One backend of a load balancer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerBackend {
    /// Its label.
    pub label: String,
    /// Its node ID.
    pub node_id: String,
    /// In rotation.
    pub healthy: bool,
    /// Its state word at the LB's last check.
    pub state: String,
    /// The last check's error.
    pub error: Option<String>,
}

/// Objects served to clients, by where this node got them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LfsHits {
    /// From this node's store.
    pub local: u64,
    /// Taken from another member for the client.
    pub member: u64,
    /// Downloaded from the upstream for the client.
    pub upstream: u64,
}

/// Git LFS on a node: its store and where objects came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LfsStatus {
    /// Objects held.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// `mirror.lfs.maxSize`, if set.
    pub max_bytes: Option<u64>,
    /// Objects served to clients, by source.
    pub hits: LfsHits,
    /// Objects this node took from other members.
    pub member_downloads: u64,
    /// Objects this node downloaded from the upstream.
    pub upstream_downloads: u64,
    /// Objects fetched by prefetch before anyone asked.
    pub prefetched: u64,
    /// Objects evicted to stay within `maxBytes`.
    pub evicted: u64,
    /// Downloads under way now.
    pub downloading: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_and_newer_documents_read() {
        let older: StatusDoc =
            serde_json::from_str(r#"{"nodeId":"n","state":"SYNCHRONIZED","ready":true}"#)
                .expect("older document");
        assert!(older.ready && older.node_id == "n" && older.repos.is_empty());
        let newer: StatusDoc = serde_json::from_str(
            r#"{"nodeId":"n","ready":false,"somethingNew":1,"repos":[{"project":"P","repo":"r","lastResult":"NEW_KIND"}]}"#,
        )
        .expect("newer document");
        assert_eq!(newer.repos[0].last_result, Some(SyncResult::Failed));
        // Not a document at all is an error (the check fails), not a default.
        for junk in ["42", "\"ready\"", "{", "null"] {
            assert!(serde_json::from_str::<StatusDoc>(junk).is_err(), "{junk}");
        }
    }
}

/// A page of repositories (`GET /rest/mirroring/latest/repos?start=&limit=`), in Bitbucket's
/// paged shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RepoPage {
    /// Rows on this page.
    pub size: usize,
    /// The page size asked for (after the bound).
    pub limit: usize,
    /// Index of the first row.
    pub start: usize,
    /// Whether no row follows.
    pub is_last_page: bool,
    /// `start` of the next page, when there is one.
    pub next_page_start: Option<usize>,
    /// Repositories in all.
    pub total: usize,
    /// The rows, by name.
    pub values: Vec<RepoStatus>,
}
