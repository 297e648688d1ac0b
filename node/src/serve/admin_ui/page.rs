//! `GET /admin`: the farm on one page — authorization, members, load balancers, repositories —
//! the same from whichever member answers. Plain HTML: it reads without JavaScript; actions are
//! forms carrying the session's CSRF token.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::html::{esc, page, query_value, respond};
use super::repos::{select, RepoQuery, SortKey};
use super::words::{ago, bytes, lag, took};
use super::{login, viewer, Viewer};
use crate::serve::app_state::AppState;
use crate::status::{self, StatusDoc};
use mirrorfarm_common::status::SyncResult;

/// The CSRF field of a form for `who` (none for the token: it comes with no cookie).
pub fn csrf_field(s: &crate::serve::Serving, who: &Viewer) -> String {
    match who {
        Viewer::Admin { session, .. } => format!(
            "<input type=hidden name=csrf value=\"{}\">",
            esc(&s.admin_csrf.token(session))
        ),
        _ => String::new(),
    }
}

/// `GET /admin`.
pub async fn show(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<RepoQuery>,
    Query(pq): Query<super::projects::ProjectQuery>,
) -> Response {
    let who = viewer(&s.shared, &headers);
    if !who.is_admin() {
        return login::refused(&s.shared, &who);
    }
    let doc = status::build(&s.shared, s.farm.as_deref());
    let csrf = csrf_field(&s.shared, &who);
    let header = format!(
        "<span>farm <code>{farm}</code> · answered by <code>{node}</code></span>\
<form method=post action=\"/admin/logout\">{csrf}<span>{name}</span> <button type=submit>Log out</button></form>",
        farm = esc(&doc.farm_id),
        node = esc(&doc.node_id),
        name = esc(who.name()),
    );
    // Notices are the page's own words (a link cannot make the page say anything else).
    let notice = match q.done.as_str() {
        "sync-all" => Some("A sync of every repository was requested.".to_owned()),
        "sync" => crate::names::RepoId::parse(&q.repo)
            .ok()
            .map(|id| format!("A sync of {id} was requested.")),
        other => super::projects::notice(&s, other),
    }
    .map(|n| format!("<p class=notice role=status>{}</p>", esc(&n)))
    .unwrap_or_default();
    let body = [
        notice,
        warnings(&doc),
        authorize(&doc),
        super::projects::section(&s, &pq, &csrf).await,
        members(&doc),
        plots_of(&s).await,
        load_balancers(&doc),
        repositories(&doc, &q, &csrf),
    ]
    .concat();
    respond(StatusCode::OK, page(&doc.display_name, &header, &body))
}

/// The plots of every member: this one's points, and each other member's asked over the farm
/// channel at once (one that does not answer within 2 s is shown as such).
async fn plots_of(s: &AppState) -> String {
    let mut series = vec![super::plots::MemberSeries {
        node_id: s.shared.identity.node_id.to_string(),
        points: s.shared.series.points(),
    }];
    if let Some(farm) = &s.farm {
        let asks = farm.others().into_iter().map(|(node, addr)| async move {
            let points = match farm.client.series(&node, addr).await {
                Ok(a) => a.points,
                Err(e) => {
                    tracing::debug!(node, error = %e, "a member's plot points did not come");
                    Vec::new()
                }
            };
            super::plots::MemberSeries {
                node_id: node,
                points,
            }
        });
        series.extend(futures_util::future::join_all(asks).await);
    }
    let window = s.shared.config.plot_interval.as_millis() as i64 * crate::series::POINTS as i64;
    super::plots::section(&series, crate::store::now_ms(), window)
}

fn warnings(doc: &StatusDoc) -> String {
    if doc.warnings.is_empty() && doc.refused_members.is_empty() {
        return String::new();
    }
    let mut items: Vec<String> = doc
        .warnings
        .iter()
        .map(|w| format!("<li>{}</li>", esc(w)))
        .collect();
    for r in &doc.refused_members {
        items.push(format!(
            "<li>node <code>{}</code> is refused: its {} differ</li>",
            esc(&r.node_id),
            esc(&r.differing_keys.join(", "))
        ));
    }
    format!(
        "<section id=warnings aria-labelledby=warnings-h><h2 id=warnings-h class=warn>Warnings</h2><ul>{}</ul></section>",
        items.concat()
    )
}

fn authorize(doc: &StatusDoc) -> String {
    let waiting = doc.state == "AWAITING_AUTHORIZATION";
    let last_error = doc
        .repos
        .iter()
        .find(|r| r.last_result == Some(SyncResult::Unauthorized))
        .map(|r| format!("<p>Last error: <code>{}</code></p>", esc(&r.last_message)))
        .unwrap_or_default();
    let state = if waiting {
        format!("<p class=bad>AWAITING_AUTHORIZATION: the upstream does not accept this key yet.</p>{last_error}")
    } else {
        format!(
            "<p>State: <b>{}</b> — the upstream accepts the farm's key.</p>",
            esc(&doc.state)
        )
    };
    format!(
        "<section id=authorize aria-labelledby=authorize-h><h2 id=authorize-h>Authorize</h2>\
<p>Farm <code>{farm}</code>. Grant this key read access on the upstream <code>{up}</code>:</p>\
<pre id=farm-key>{key}</pre><button type=button data-copy=farm-key hidden>Copy the key</button>{state}</section>",
        farm = esc(&doc.farm_id),
        up = esc(&doc.upstream.url),
        key = esc(&doc.public_key),
    )
}

fn members(doc: &StatusDoc) -> String {
    let mut rows = String::new();
    for m in &doc.members {
        let leads = doc
            .repos
            .iter()
            .filter(|r| r.leader.as_deref() == Some(m.node_id.as_str()))
            .count();
        let skew = m
            .clock_skew_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "—".into());
        let heard = match (m.this_node, m.last_gossip_ms) {
            (true, _) => "—".to_owned(),
            (false, Some(ms)) => format!("{} ago", took(ms)),
            (false, None) => "not yet".to_owned(),
        };
        rows.push_str(&format!(
            "<tr><td><code>{id}</code>{this}</td><td>{addr}</td><td>{ver}</td><td>{state}</td><td>{skew}</td><td>{heard}</td><td>{leads}</td></tr>",
            id = esc(&m.node_id),
            this = if m.this_node { " (this member)" } else { "" },
            addr = m.address.map(|a| a.to_string()).unwrap_or_default(),
            ver = esc(&m.version),
            state = esc(&m.state),
        ));
    }
    if doc.members.is_empty() {
        rows = format!(
            "<tr><td><code>{}</code> (this node; no farm)</td><td></td><td>{}</td><td>{}</td><td>—</td><td>—</td><td>{}</td></tr>",
            esc(&doc.node_id),
            esc(&doc.version),
            esc(&doc.state),
            doc.total_repos
        );
    }
    format!(
        "<section id=members aria-labelledby=members-h><h2 id=members-h>Members ({n})</h2><table>\
<thead><tr><th scope=col>Node</th><th scope=col>Address</th><th scope=col>Version</th><th scope=col>State</th>\
<th scope=col>Clock skew</th><th scope=col>Last gossip</th><th scope=col>Leads (repositories)</th></tr></thead><tbody>{rows}</tbody></table></section>",
        n = doc.member_count,
    )
}

fn load_balancers(doc: &StatusDoc) -> String {
    if doc.load_balancers.is_empty() {
        return "<section id=load-balancers aria-labelledby=lb-h><h2 id=lb-h>Load balancer</h2>\
<p>No load balancer has reported to this farm.</p></section>"
            .into();
    }
    let mut out = String::new();
    for lb in &doc.load_balancers {
        let days = lb.certificate_days_left;
        let class = if days < 30 { "bad" } else { "good" };
        let backends: String = lb
            .backends
            .iter()
            .map(|b| {
                format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}{}</td></tr>",
                    esc(&b.label),
                    esc(&b.node_id),
                    if b.healthy {
                        "in rotation"
                    } else {
                        "out of rotation"
                    },
                    esc(&b.state),
                    b.error
                        .as_deref()
                        .map(|e| format!(": {}", esc(e)))
                        .unwrap_or_default()
                )
            })
            .collect();
        out.push_str(&format!(
            "<h3>{host}:{port}</h3><p>Certificate <code>{subject}</code>, expires {expires} \
(<span class={class}>{days} days</span>); reported {ago} s ago; version {ver}.</p>\
<table><thead><tr><th scope=col>Backend</th><th scope=col>Node</th><th scope=col>Rotation</th><th scope=col>Health</th></tr></thead>\
<tbody>{backends}</tbody></table>",
            host = esc(&lb.hostname),
            port = lb.https_port,
            subject = esc(&lb.certificate_subject),
            expires = esc(&lb.certificate_expires),
            ago = lb.reported_seconds_ago,
            ver = esc(&lb.version),
        ));
    }
    format!("<section id=load-balancers aria-labelledby=lb-h><h2 id=lb-h>Load balancer</h2>{out}</section>")
}

fn repositories(doc: &StatusDoc, q: &RepoQuery, csrf: &str) -> String {
    let sel = select(&doc.repos, q);
    let mut rows = String::new();
    for r in &sel.rows {
        let id = format!("{}/{}", r.project, r.repo);
        let at_generation = doc
            .members
            .iter()
            .filter(|m| {
                m.repo_states
                    .get(&id)
                    .is_some_and(|s| s.generation == r.generation)
            })
            .count();
        let members = if doc.members.is_empty() {
            String::new()
        } else {
            format!("{at_generation}/{}", doc.members.len())
        };
        let message = if r.last_message.is_empty() {
            String::new()
        } else {
            format!(
                "<details><summary>{}</summary><pre>{}</pre></details>",
                esc(&r.last_message.chars().take(60).collect::<String>()),
                esc(&r.last_message)
            )
        };
        let last = format!(
            "{}{}",
            ago(r.last_sync.as_deref()),
            r.last_sync_duration_ms
                .map(|ms| format!(", took {}", took(ms)))
                .unwrap_or_default()
        );
        rows.push_str(&format!(
            "<tr><td><code>{idh}</code></td><td>{state}{syncing}</td><td>{generation}</td><td>{members}</td>\
<td><code>{leader}</code></td><td>{last}</td><td>{confirmed}</td><td>{lag}</td><td>{size}</td><td>{message}</td>\
<td><form method=post action=\"/admin/sync\" class=inline>{csrf}<input type=hidden name=project value=\"{p}\">\
<input type=hidden name=repo value=\"{rp}\"><button type=submit aria-label=\"Sync {idh} now\">Sync now</button></form></td></tr>",
            idh = esc(&id),
            state = esc(&r.state),
            syncing = if r.syncing { " (syncing)" } else { "" },
            generation = r.generation,
            leader = esc(r.leader.as_deref().unwrap_or("")),
            confirmed = ago(r.last_successful_sync.as_deref()),
            lag = lag(r),
            size = r.size_bytes.map(bytes).unwrap_or_default(),
            p = esc(&r.project),
            rp = esc(&r.repo),
        ));
    }
    let sorts: String = SortKey::ALL
        .iter()
        .map(|k| {
            format!(
                "<option value={v}{sel}>{v}</option>",
                v = k.as_str(),
                sel = if *k == q.sort { " selected" } else { "" }
            )
        })
        .collect();
    let mut states: Vec<&str> = doc.repos.iter().map(|r| r.state.as_str()).collect();
    states.sort_unstable();
    states.dedup();
    let states: String = states
        .iter()
        .map(|st| {
            format!(
                "<option{sel}>{st}</option>",
                st = esc(st),
                sel = if *st == q.state { " selected" } else { "" }
            )
        })
        .collect();
    let link = |page: usize| {
        format!(
            "/admin?q={}&amp;state={}&amp;sort={}&amp;page={page}#repositories",
            query_value(&q.q),
            query_value(&q.state),
            q.sort.as_str()
        )
    };
    let mut nav = String::new();
    if sel.page > 1 {
        nav.push_str(&format!(
            "<a href=\"{}\" rel=prev>Previous</a>",
            link(sel.page - 1)
        ));
    }
    nav.push_str(&format!("<span>page {} of {}</span>", sel.page, sel.pages));
    if sel.page < sel.pages {
        nav.push_str(&format!(
            "<a href=\"{}\" rel=next>Next</a>",
            link(sel.page + 1)
        ));
    }
    format!(
        "<section id=repositories aria-labelledby=repos-h><h2 id=repos-h>Repositories ({synced}/{total} servable here)</h2>\
<form method=get action=\"/admin#repositories\" role=search>\
<label for=q>Filter</label><input id=q name=q value=\"{qv}\" placeholder=\"PROJECT/repo\">\
<label for=state>State</label><select id=state name=state><option value=\"\">any</option>{states}</select>\
<label for=sort>Sort</label><select id=sort name=sort>{sorts}</select> <button type=submit>Show</button></form>\
<form method=post action=\"/admin/sync\">{csrf}<p><button type=submit>Sync every repository now</button></p></form>\
<p>{matching} matching.</p><nav class=pages aria-label=\"Repository pages\">{nav}</nav>\
<table><thead><tr><th scope=col>Repository</th><th scope=col>State</th><th scope=col>Generation</th>\
<th scope=col>Members at it</th><th scope=col>Leader</th><th scope=col>Last sync</th><th scope=col>Confirmed by the upstream</th><th scope=col>Lag behind the upstream</th><th scope=col>Size</th>\
<th scope=col>Last message</th><th scope=col>Actions</th></tr></thead><tbody>{rows}</tbody></table></section>",
        synced = doc.synced_repos,
        total = doc.total_repos,
        qv = esc(&q.q),
        matching = sel.matching,
    )
}
