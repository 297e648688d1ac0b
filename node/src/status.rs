//! The status document (`GET /status`) and the page for people (`GET /`).

use crate::config::Access;
use crate::shared::Shared;
pub use mirrorfarm_common::status::{
    LoadBalancerBackend, LoadBalancerStatus, MemberRepoState, MemberStatus, RefusedMember,
    RepoStatus, SelectionStatus, StatusDoc, UpstreamStatus,
};

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

/// How many repositories `/status` lists (each member's states: half as many); the rest are
/// paged at `/rest/mirroring/latest/repos`. With 3 members it stays under 64 KB.
pub const LISTED: usize = 100;

/// One repository's row (`farm`: the farm's view, which names its leader).
pub fn repo_status(
    id: &crate::names::RepoId,
    e: &crate::state::RepoEntry,
    farm: &Option<crate::farm::view::FarmView>,
    now_ms: i64,
) -> RepoStatus {
    RepoStatus {
        project: id.project.as_str().to_owned(),
        repo: id.repo.as_str().to_owned(),
        state: e.state().to_owned(),
        generation: e.record.generation,
        refs_hash: e.record.refs_hash.clone(),
        staged_hash: e
            .staged
            .as_ref()
            .filter(|s| s.refs_hash != e.record.refs_hash)
            .map(|s| s.refs_hash.clone()),
        withheld: e.withheld.map(str::to_owned),
        leader: leader_of(farm, &id.to_string()),
        syncing: e.syncing,
        last_sync: rfc3339(e.record.last_sync_ms),
        last_sync_duration_ms: e.record.last_duration_ms,
        last_successful_sync: rfc3339(e.record.last_success_ms),
        last_result: e.record.last_result.clone(),
        last_message: e.record.last_message.clone(),
        lag_ms: e.lag_ms(now_ms),
        size_bytes: e.record.size_bytes,
    }
}

/// Builds the whole status document (`farm`: the node's farm, when it is in one).
pub fn build(shared: &Shared, farm: Option<&crate::farm::Farm>) -> StatusDoc {
    build_listing(shared, farm, usize::MAX)
}

/// Builds the status document listing the first `listed` repositories (by name) and each
/// member's first `listed` repository states; counts cover all of them.
pub fn build_listing(
    shared: &Shared,
    farm: Option<&crate::farm::Farm>,
    listed: usize,
) -> StatusDoc {
    let summary = shared.summary();
    let lb_reports = farm.map(|f| f.lbs.current()).unwrap_or_default();
    let farm = farm.and_then(|f| f.view.read().clone());
    let now_ms = crate::store::now_ms();
    // Read in place: the first `listed` entries, not a copy of every one.
    let repos: Vec<RepoStatus> = shared
        .repos
        .read()
        .iter()
        .take(listed)
        .map(|(id, e)| repo_status(id, e, &farm, now_ms))
        .collect();
    let repos_next = (summary.total > listed)
        .then(|| format!("/rest/mirroring/latest/repos?start={listed}&limit={listed}"));
    let (unreachable, last_ok) = (summary.unreachable, summary.last_success);
    let anonymous = shared.config.access == Access::Anonymous;
    let offline = shared.gate.decisions.as_ref().and_then(|d| d.offline());
    let mut warnings = farm
        .as_ref()
        .map(|f| f.warnings.clone())
        .unwrap_or_default();
    if let Some(o) = &offline {
        warnings.push(format!(
            "authentication is running on cached grants since {}: {}",
            rfc3339(
                o.since
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as i64)
            )
            .unwrap_or_default(),
            o.error
        ));
    }
    let now_unix = crate::store::now_ms() / 1000;
    warnings.extend(crate::farm::lbs::warnings(
        &shared.config.base_url,
        &lb_reports,
        now_unix,
    ));
    if shared.config.auth.auth_url_in_clear() {
        warnings.push(
            "plugin.mirroring.upstream.auth.url is http://: credentials cross the network in clear"
                .into(),
        );
    }
    StatusDoc {
        state: summary.state().to_owned(),
        node_id: shared.identity.node_id.clone(),
        farm_id: shared.identity.farm_id.clone(),
        display_name: shared.config.display_name.clone(),
        base_url: shared.config.base_url.clone(),
        public_key: shared.identity.public_key.clone(),
        version: mirrorfarm_common::version::version(),
        access: if anonymous {
            "anonymous"
        } else {
            "authenticated"
        }
        .to_owned(),
        access_message: (!anonymous).then(|| access_message(shared)),
        auth_offline: offline.is_some(),
        live_sessions: shared.gate.sessions.live_count(crate::store::now_ms()),
        stale_seconds: shared.stale_seconds(&summary, crate::store::now_ms()),
        ready: shared.ready(&summary),
        synced_repos: summary.servable,
        total_repos: summary.total,
        upstream: UpstreamStatus {
            url: shared.config.upstream.to_string(),
            reachable: !unreachable,
            last_successful_sync: rfc3339(last_ok),
        },
        repos,
        repos_next,
        lfs: shared.lfs.status(),
        member_count: farm.as_ref().map(|f| f.members.len()).unwrap_or(1),
        members: farm
            .as_ref()
            .map(|f| {
                f.members
                    .iter()
                    .map(|m| member_status(m, listed.div_ceil(2)))
                    .collect()
            })
            .unwrap_or_default(),
        refused_members: farm
            .as_ref()
            .map(|f| {
                f.refused
                    .iter()
                    .map(|(n, k)| RefusedMember {
                        node_id: n.clone(),
                        differing_keys: k.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        unverified_nodes: farm
            .as_ref()
            .map(|f| f.unverified.clone())
            .unwrap_or_default(),
        warnings,
        selection: selection_status(shared),
        load_balancers: lb_reports
            .into_iter()
            .map(|(id, ago, r)| load_balancer(id, ago, r, now_unix))
            .collect(),
    }
}

fn load_balancer(
    id: String,
    ago: u64,
    r: mirrorfarm_common::farm::messages::LbReport,
    now_unix: i64,
) -> LoadBalancerStatus {
    LoadBalancerStatus {
        id,
        hostname: r.hostname,
        https_port: r.https_port,
        certificate_expires: rfc3339(Some(r.certificate.not_after.saturating_mul(1000)))
            .unwrap_or_default(),
        certificate_days_left: (r.certificate.not_after - now_unix) / 86_400,
        certificate_subject: r.certificate.subject,
        certificate_sha256: r.certificate.sha256,
        backends: r
            .backends
            .into_iter()
            .map(|b| LoadBalancerBackend {
                label: b.label,
                node_id: b.node_id,
                healthy: b.healthy,
                state: b.state,
                error: b.error,
            })
            .collect(),
        reported_seconds_ago: ago,
        version: r.version,
    }
}

fn access_message(shared: &Shared) -> String {
    let offline = shared.gate.decisions.as_ref().and_then(|d| d.offline());
    let mut m = String::from(
        "git over HTTP needs credentials the upstream accepts (checked with its smart-HTTP endpoint, \
         cached) or a session; git over SSH serves the keys of plugin.ssh.authorizedKeysFile / \
         plugin.ssh.authorizedKeysCommand",
    );
    if offline.is_some() {
        m.push_str(
            ". The upstream cannot be asked about credentials now: authentication is running on \
             cached grants (new users get 503)",
        );
    }
    m
}

/// What anyone may see of `doc` (a node in authenticated mode, to a caller who is not an admin):
/// state, readiness, names, the farm ID and public key, counts — not the repositories, the
/// upstream's URL, the members' addresses or git's messages.
pub fn public(doc: StatusDoc) -> StatusDoc {
    StatusDoc {
        state: doc.state,
        node_id: doc.node_id,
        farm_id: doc.farm_id,
        display_name: doc.display_name,
        base_url: doc.base_url,
        public_key: doc.public_key,
        version: doc.version,
        access: doc.access,
        access_message: doc.access_message,
        auth_offline: doc.auth_offline,
        live_sessions: doc.live_sessions,
        stale_seconds: doc.stale_seconds,
        ready: doc.ready,
        synced_repos: doc.synced_repos,
        total_repos: doc.total_repos,
        upstream: UpstreamStatus {
            reachable: doc.upstream.reachable,
            ..Default::default()
        },
        member_count: doc.member_count,
        ..Default::default()
    }
}

/// A time in Unix ms as RFC 3339.
pub fn rfc3339_of(ms: i64) -> String {
    rfc3339(Some(ms)).unwrap_or_default()
}

/// What the farm mirrors, and from where.
fn selection_status(shared: &Shared) -> SelectionStatus {
    let (chosen, from_file) = shared.selection.chosen();
    let record = shared.selection.record().filter(|_| !from_file);
    let page = crate::selection::record_of(&chosen, "", "", 0);
    SelectionStatus {
        source: if from_file { "file" } else { "page" }.into(),
        projects: page.projects,
        repos: page.repos,
        written_by: record.as_ref().map(|r| r.written_by.clone()),
        written_at: record.as_ref().map(|r| rfc3339_of(r.written_ms)),
        written_on: record.map(|r| r.node_id),
    }
}

fn member_status(m: &crate::farm::view::MemberView, listed: usize) -> MemberStatus {
    MemberStatus {
        node_id: m.node_id.clone(),
        address: m.address,
        state: m.state.clone(),
        version: m.version.clone(),
        clock_skew_ms: m.clock_skew_ms,
        this_node: m.this_node,
        last_gossip_ms: m.last_gossip_ms,
        repo_states_total: m.repo_states.len(),
        repo_states: m
            .repo_states
            .iter()
            .take(listed)
            .map(|(repo, s)| {
                let st = MemberRepoState {
                    generation: s.generation,
                    refs_hash: s.refs_hash.clone(),
                    staged_hash: s
                        .staged_hash
                        .clone()
                        .filter(|h| Some(h) != s.refs_hash.as_ref()),
                };
                (repo.clone(), st)
            })
            .collect(),
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
            esc(&r.state),
            esc(r.last_sync.as_deref().unwrap_or("never")),
            esc(&r.last_message)
        ));
    }
    let access = doc
        .access_message
        .as_deref()
        .map(|m| format!("<p class=warn>{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{name} · mirrorfarm</title>\
<style>body{{font-family:sans-serif;margin:2em}}pre{{background:#eee;padding:1em;white-space:pre-wrap;word-break:break-all}}\
td,th{{padding:.2em .8em;text-align:left}}.warn{{color:#a40}}</style></head><body>\
<h1>{name}</h1><p>Mirror node <code>{node}</code> of farm <code>{farm}</code> · state <b>{state}</b> · {synced}/{total} repositories synchronized</p>{access}\
<h2>Authorize this farm</h2><p>Grant this key read access on the upstream{up}:</p><pre>{key}</pre>\
<h2>Repositories</h2><table><tr><th>Repository</th><th>State</th><th>Last sync</th><th>Message</th></tr>\n{rows}</table>{more}\
<p>Clone from <code>{base}/scm/PROJECT/repo.git</code>. Machine-readable status: <a href=\"/status\">/status</a>.</p></body></html>\n",
        name = esc(&doc.display_name),
        node = esc(&doc.node_id),
        farm = esc(&doc.farm_id),
        state = esc(&doc.state),
        synced = doc.synced_repos,
        total = doc.total_repos,
        up = if doc.upstream.url.is_empty() {
            String::new()
        } else {
            format!(" <code>{}</code>", esc(&doc.upstream.url))
        },
        key = esc(&doc.public_key),
        base = esc(&doc.base_url),
        more = doc
            .repos_next
            .as_deref()
            .map(|next| format!(
                "<p>The first {} of {} repositories; every one, a page at a time: <a href=\"{n}\">{n}</a></p>",
                doc.repos.len(),
                doc.total_repos,
                n = esc(next)
            ))
            .unwrap_or_default(),
    )
}
