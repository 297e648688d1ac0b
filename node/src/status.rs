//! The status document (`GET /status`) and the page for people (`GET /`).

use serde::Serialize;

use crate::config::Access;
use crate::state::Shared;
use crate::store::SyncResult;

/// One repository on /status.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoStatus {
    /// Project key.
    pub project: String,
    /// Repository slug.
    pub repo: String,
    /// `SYNCHRONIZED`, `SYNCHRONIZING`, `CATCHING_UP` (not served now: behind the farm or cut off
    /// from it), `AWAITING_AUTHORIZATION`, `NOT_FOUND` or `ERROR`.
    pub state: &'static str,
    /// Generation of the served ref state (0: none yet).
    pub generation: u64,
    /// Hash of the served ref map.
    pub refs_hash: String,
    /// Hash of the newest staged state (in a farm; equal to `refsHash` once advertised).
    pub staged_hash: Option<String>,
    /// In a farm: the node ID of the member that fetches it from the upstream.
    pub leader: Option<String>,
    /// Why the node does not serve it now, when it does not.
    pub withheld: Option<&'static str>,
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
}

/// The upstream as /status shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamStatus {
    /// The configured URL.
    pub url: String,
    /// Whether the last attempts reached it.
    pub reachable: bool,
    /// The latest successful sync of any repository (RFC 3339).
    pub last_successful_sync: Option<String>,
}

/// The whole document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDoc {
    /// Node state.
    pub state: &'static str,
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
    /// Mirrorfarm version.
    pub version: &'static str,
    /// `anonymous` or `authenticated`.
    pub access: &'static str,
    /// Why git requests get 401, when they do.
    pub access_message: Option<&'static str>,
    /// Every mirrored repository has a complete state to serve (what a load balancer checks).
    pub ready: bool,
    /// Repositories in a servable state.
    pub synced_repos: usize,
    /// Repositories mirrored.
    pub total_repos: usize,
    /// Upstream reachability.
    pub upstream: UpstreamStatus,
    /// Per repository.
    pub repos: Vec<RepoStatus>,
    /// Live farm members agreeing on the farm configuration, this node included (1 without a farm).
    pub member_count: usize,
    /// Those members (empty without a farm).
    pub members: Vec<crate::farm::view::MemberView>,
    /// Live nodes refused because their farm configuration differs, with the keys that differ.
    pub refused_members: Vec<RefusedMember>,
    /// Live gossip peers not verified as members over the farm's TLS (node IDs): not counted.
    pub unverified_nodes: Vec<String>,
    /// Warnings, e.g. a member's clock more than 2 s off.
    pub warnings: Vec<String>,
}

/// A node refused from the farm.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedMember {
    /// Its node ID.
    pub node_id: String,
    /// The configuration keys on which it differs from this node.
    pub differing_keys: Vec<String>,
}

fn rfc3339(ms: Option<i64>) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms?) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn leader_of(farm: &Option<crate::farm::view::FarmView>, repo: &str) -> Option<String> {
    let members = &farm.as_ref()?.members;
    crate::farm::leader::leader_of(repo, members.iter().map(|m| m.node_id.as_str()))
        .map(str::to_owned)
}

/// Builds the status document.
pub fn build(shared: &Shared) -> StatusDoc {
    let snapshot = shared.snapshot();
    let farm = shared
        .farm
        .read()
        .expect("farm view lock is never poisoned")
        .clone();
    let repos: Vec<RepoStatus> = snapshot
        .iter()
        .map(|(id, e)| RepoStatus {
            project: id.project.as_str().to_owned(),
            repo: id.repo.as_str().to_owned(),
            state: e.state(),
            generation: e.record.generation,
            refs_hash: e.record.refs_hash.clone(),
            staged_hash: e.staged.as_ref().map(|s| s.refs_hash.clone()),
            withheld: e.withheld,
            leader: leader_of(&farm, &id.to_string()),
            syncing: e.syncing,
            last_sync: rfc3339(e.record.last_sync_ms),
            last_successful_sync: rfc3339(e.record.last_success_ms),
            last_result: e.record.last_result.clone(),
            last_message: e.record.last_message.clone(),
        })
        .collect();
    let unreachable = snapshot
        .values()
        .filter_map(|e| e.record.last_result.as_ref())
        .any(|r| *r == SyncResult::Unreachable);
    let last_ok = snapshot
        .values()
        .filter_map(|e| e.record.last_success_ms)
        .max();
    let anonymous = shared.config.access == Access::Anonymous;
    StatusDoc {
        state: shared.node_state(),
        node_id: shared.identity.node_id.clone(),
        farm_id: shared.identity.farm_id.clone(),
        display_name: shared.config.display_name.clone(),
        base_url: shared.config.base_url.clone(),
        public_key: shared.identity.public_key.clone(),
        version: env!("CARGO_PKG_VERSION"),
        access: if anonymous { "anonymous" } else { "authenticated" },
        access_message: (!anonymous).then_some(
            "git requests are answered 401: mirror.access is not `anonymous` and authenticated access is not available yet",
        ),
        ready: shared.listed.load(std::sync::atomic::Ordering::Acquire)
            && snapshot
                .values()
                .filter(|e| e.record.last_result != Some(SyncResult::NotFound))
                .all(|e| e.servable() && e.withheld.is_none()),
        synced_repos: snapshot.values().filter(|e| e.servable()).count(),
        total_repos: snapshot.len(),
        upstream: UpstreamStatus {
            url: shared.config.upstream.to_string(),
            reachable: !unreachable,
            last_successful_sync: rfc3339(last_ok),
        },
        repos,
        member_count: farm.as_ref().map(|f| f.members.len()).unwrap_or(1),
        members: farm.as_ref().map(|f| f.members.clone()).unwrap_or_default(),
        refused_members: farm
            .as_ref()
            .map(|f| {
                f.refused
                    .iter()
                    .map(|(n, k)| RefusedMember { node_id: n.clone(), differing_keys: k.clone() })
                    .collect()
            })
            .unwrap_or_default(),
        unverified_nodes: farm
            .as_ref()
            .map(|f| f.unverified.clone())
            .unwrap_or_default(),
        warnings: farm.map(|f| f.warnings).unwrap_or_default(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML page for people.
pub fn html(doc: &StatusDoc) -> String {
    let mut rows = String::new();
    for r in &doc.repos {
        rows.push_str(&format!(
            "<tr><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&r.project),
            esc(&r.repo),
            r.state,
            esc(r.last_sync.as_deref().unwrap_or("never")),
            esc(&r.last_message)
        ));
    }
    let access = doc
        .access_message
        .map(|m| format!("<p class=warn>{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{name} · mirrorfarm</title>\
<style>body{{font-family:sans-serif;margin:2em}}pre{{background:#eee;padding:1em;white-space:pre-wrap;word-break:break-all}}\
td,th{{padding:.2em .8em;text-align:left}}.warn{{color:#a40}}</style></head><body>\
<h1>{name}</h1><p>Mirror node <code>{node}</code> of farm <code>{farm}</code> · state <b>{state}</b> · {synced}/{total} repositories synchronized</p>{access}\
<h2>Authorize this farm</h2><p>Grant this key read access on the upstream <code>{up}</code>:</p><pre>{key}</pre>\
<h2>Repositories</h2><table><tr><th>Repository</th><th>State</th><th>Last sync</th><th>Message</th></tr>\n{rows}</table>\
<p>Clone from <code>{base}/scm/PROJECT/repo.git</code>. Machine-readable status: <a href=\"/status\">/status</a>.</p></body></html>\n",
        name = esc(&doc.display_name),
        node = esc(&doc.node_id),
        farm = esc(&doc.farm_id),
        state = doc.state,
        synced = doc.synced_repos,
        total = doc.total_repos,
        up = esc(&doc.upstream.url),
        key = esc(&doc.public_key),
        base = esc(&doc.base_url),
    )
}
