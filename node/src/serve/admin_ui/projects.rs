//! The admin page's Projects section: what the farm mirrors (every project, some, single
//! repositories; from the properties file or written here), a search over the upstream's
//! projects (a form, type-ahead with the script through `/admin/projects.json`), and the forms
//! that change it — written farm-wide (see `crate::selection`), in force without a restart.

use std::collections::BTreeSet;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::actions::admit;
use super::html::{esc, page, query_value, respond, see_other};
use super::{login, viewer};
use crate::config::Projects;
use crate::names::{ProjectKey, RepoId};
use crate::selection::{record_of, Chosen, Seen};
use crate::serve::app_state::AppState;
use crate::serve::upstream_projects::project_page;
use crate::sync::scheduler::Trigger;

/// Projects per page of search results.
const PER_PAGE: usize = 20;

/// How long the page waits for the upstream's project list (it is cached; a slow upstream
/// must not hang the page).
const LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The section's query: `?pq=&pstart=`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct ProjectQuery {
    /// Part of a project's key or name.
    pub pq: String,
    /// The first result shown.
    pub pstart: usize,
}

fn names(c: &Chosen) -> (String, String) {
    let projects = match &c.projects {
        Projects::None => "none".to_owned(),
        Projects::All => "all projects".to_owned(),
        Projects::Some(k) => k.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
    };
    let repos = if c.repos.is_empty() {
        "none".to_owned()
    } else {
        c.repos
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    (projects, repos)
}

/// The `seen` form field: which record the page showed (empty: the file's).
pub fn seen_value(seen: &Seen) -> String {
    seen.as_ref()
        .map(|(ms, node)| format!("{ms}:{node}"))
        .unwrap_or_default()
}

fn parse_seen(v: &str) -> Option<Seen> {
    if v.is_empty() {
        return Some(None);
    }
    let (ms, node) = v.split_once(':')?;
    Some(Some((ms.parse().ok()?, node.to_owned())))
}

fn button(csrf: &str, action: &str, field: &str, value: &str, label: &str) -> String {
    format!(
        "<form method=post action=\"/admin/projects\" class=inline>{csrf}\
<input type=hidden name=action value={action}><input type=hidden name={field} value=\"{v}\">\
<button type=submit>{label}</button></form>",
        v = esc(value),
        label = esc(label),
    )
}

/// The section's HTML.
pub async fn section(s: &AppState, q: &ProjectQuery, csrf: &str) -> String {
    let sel = &s.shared.selection;
    // Every form says which selection it changes: a change to one replaced meanwhile is refused.
    let csrf = &format!(
        "{csrf}<input type=hidden name=seen value=\"{}\">",
        esc(&seen_value(&sel.seen()))
    );
    let (chosen, from_file) = sel.chosen();
    let (projects, repos) = names(&chosen);
    let source = match sel.record() {
        Some(r) if !from_file => format!(
            "Written on this page by <b>{}</b> (member <code>{}</code>, {}); it wins over the \
             properties file until set back.",
            esc(&r.written_by),
            esc(&r.node_id),
            esc(&crate::status::rfc3339_of(r.written_ms))
        ),
        _ => "From the properties file (<code>mirror.projects</code>, <code>mirror.repos</code>): \
              a change written here wins over it, on every member, until set back."
            .to_owned(),
    };
    let all = if chosen.projects == Projects::All {
        button(csrf, "none", "key", "", "Stop mirroring all projects")
    } else {
        button(csrf, "all", "key", "", "Mirror all projects")
    };
    let single: String = chosen
        .repos
        .iter()
        .map(|r| {
            format!(
                "<li><code>{}</code> {}</li>",
                esc(&r.to_string()),
                button(csrf, "remove-repo", "repo", &r.to_string(), "Remove")
            )
        })
        .collect();
    let back = if from_file {
        String::new()
    } else {
        let (fp, fr) = names(sel.file());
        button(
            csrf,
            "file",
            "key",
            "",
            "Back to the properties file's selection",
        ) + &format!(
            " <span>(projects: {}; repositories: {})</span>",
            esc(&fp),
            esc(&fr)
        )
    };
    let results = results(s, q, &chosen, csrf).await;
    format!(
        "<section id=projects aria-labelledby=projects-h><h2 id=projects-h>Projects</h2>\
<p>Mirrored: projects <b id=selected-projects>{projects}</b>; single repositories <b>{repos}</b>.</p>\
<p>{source}</p><p>{all} {back}</p>\
<form method=get action=\"/admin#projects\" role=search><label for=pq>Search the upstream's projects</label>\
<input id=pq name=pq value=\"{pq}\" autocomplete=off placeholder=\"key or name\"> <button type=submit>Search</button></form>\
<div id=project-results aria-live=polite>{results}</div>\
<h3>Single repositories</h3><ul>{single}</ul>\
<form method=post action=\"/admin/projects\">{csrf}<input type=hidden name=action value=add-repo>\
<label for=add-repo>Add a repository</label><input id=add-repo name=repo placeholder=\"PROJECT/repo\"> \
<button type=submit>Add</button></form></section>",
        projects = esc(&projects),
        repos = esc(&repos),
        pq = esc(&q.pq),
    )
}

/// The search results (HTML): a page of the upstream's projects, each with its button.
async fn results(s: &AppState, q: &ProjectQuery, chosen: &Chosen, csrf: &str) -> String {
    let listing = tokio::time::timeout(LIST_WAIT, s.shared.inventory.projects()).await;
    let list = match listing {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            return format!(
                "<p class=error>Cannot list the upstream's projects: {}</p>",
                esc(&e.to_string())
            )
        }
        Err(_) => {
            return "<p class=warn>The upstream's projects are being listed: search again in a \
                    moment.</p>"
                .into()
        }
    };
    let body = project_page(&list, &q.pq, q.pstart, PER_PAGE, &chosen.projects);
    let rows: String = body["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let key = p["key"].as_str().unwrap_or_default();
            let name = p["name"].as_str().unwrap_or_default();
            let action = if chosen.projects == Projects::All {
                "<span>(all projects are mirrored)</span>".to_owned()
            } else if p["selected"] == true {
                button(csrf, "remove", "key", key, &format!("Remove {key}"))
            } else {
                button(csrf, "add", "key", key, &format!("Add {key}"))
            };
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{action}</td></tr>",
                esc(key),
                esc(name)
            )
        })
        .collect();
    let total = body["total"].as_u64().unwrap_or(0);
    let next = body["nextPageStart"].as_u64().map(|n| {
        format!(
            " <a href=\"/admin?pq={}&amp;pstart={n}#projects\" rel=next>More</a>",
            query_value(&q.pq)
        )
    });
    format!(
        "<p>{total} upstream projects match.{}</p><table><thead><tr><th scope=col>Key</th>\
<th scope=col>Name</th><th scope=col>Mirrored</th></tr></thead><tbody>{rows}</tbody></table>",
        next.unwrap_or_default()
    )
}

/// `GET /admin/projects.json?pq=&pstart=`: the search for the type-ahead (admins only).
pub async fn json(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ProjectQuery>,
) -> Response {
    let who = viewer(&s.shared, &headers);
    if !who.is_admin() {
        return login::refused(&s.shared, &who);
    }
    let (chosen, _) = s.shared.selection.chosen();
    let mut r = match tokio::time::timeout(LIST_WAIT, s.shared.inventory.projects()).await {
        Ok(Ok(list)) => Json(project_page(
            &list,
            &q.pq,
            q.pstart,
            PER_PAGE,
            &chosen.projects,
        ))
        .into_response(),
        Ok(Err(e)) => (
            StatusCode::BAD_GATEWAY,
            format!("cannot list the upstream's projects: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the upstream's projects are being listed\n",
        )
            .into_response(),
    };
    super::html::secure(&mut r);
    r
}

/// The form's fields.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ProjectForm {
    csrf: String,
    seen: String,
    action: String,
    key: String,
    repo: String,
}

fn bad(message: &str) -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        page(
            "mirrorfarm admin",
            "",
            &format!(
                "<section><h2>Not changed</h2><p class=error role=alert>{}. \
                 <a href=\"/admin#projects\">Back</a>.</p></section>",
                esc(message)
            ),
        ),
    )
}

/// What `action` makes of `chosen` (`None`: back to the file's).
fn apply(f: &ProjectForm, mut chosen: Chosen) -> Result<Option<Chosen>, String> {
    let all = chosen.projects == Projects::All;
    match f.action.as_str() {
        "file" => return Ok(None),
        "all" => chosen.projects = Projects::All,
        "none" => chosen.projects = Projects::None,
        "add" | "remove" if all => {
            return Err(
                "every project is mirrored: stop mirroring all projects first, then choose".into(),
            )
        }
        action @ ("add" | "remove") => {
            let key = ProjectKey::parse(f.key.trim())
                .map_err(|_| format!("{:?} is not a project key", f.key))?;
            let mut keys = match std::mem::replace(&mut chosen.projects, Projects::None) {
                Projects::Some(k) => k,
                _ => BTreeSet::new(),
            };
            if action == "add" {
                keys.insert(key);
            } else {
                keys.remove(&key);
            }
            chosen.projects = if keys.is_empty() {
                Projects::None
            } else {
                Projects::Some(keys)
            };
        }
        action @ ("add-repo" | "remove-repo") => {
            let id = RepoId::parse(f.repo.trim())
                .map_err(|_| format!("{:?} is not a repository (PROJECT/repo)", f.repo))?;
            if action == "add-repo" {
                chosen.repos.insert(id);
            } else {
                chosen.repos.remove(&id);
            }
        }
        other => return Err(format!("unknown action {other:?}")),
    }
    Ok(Some(chosen))
}

/// `POST /admin/projects`: `action` = `add`/`remove` (`key`), `all`, `none`, `add-repo`/
/// `remove-repo` (`repo`), `file` (back to the properties file's selection); `seen`: the
/// selection the page showed (a change to one replaced meanwhile is refused).
pub async fn change(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ProjectForm>,
) -> Response {
    let who = match admit(&s.shared, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let Some(seen) = parse_seen(&f.seen) else {
        return bad("the form's `seen` field is malformed");
    };
    let sel = s.shared.selection.clone();
    let node_id = s.shared.identity.node_id.to_string();
    let by = who.name().to_owned();
    let action = f.action.clone();
    let updated = tokio::task::spawn_blocking(move || {
        sel.update(&seen, |chosen, current| {
            // Newer than the record in force even when its member's clock ran ahead of ours.
            let now =
                crate::store::now_ms().max(current.map_or(0, |r| r.written_ms.saturating_add(1)));
            Ok(match apply(&f, chosen.clone())? {
                Some(c) => record_of(&c, &by, &node_id, now),
                None => {
                    let mut r = record_of(
                        &Chosen {
                            projects: Projects::None,
                            repos: BTreeSet::new(),
                        },
                        &by,
                        &node_id,
                        now,
                    );
                    r.from_file = true;
                    r
                }
            })
        })
    })
    .await;
    let record = match updated {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return bad(&e.to_string()),
        Err(_) => return bad("the selection could not be written (see the node's log)"),
    };
    tracing::info!(by = %who.name(), action = %action, projects = ?record.projects, repos = ?record.repos, from_file = record.from_file, "admin changed the selection");
    // The other members have it first (the one that lists for the farm among them), then this
    // node lists again.
    if let Some(farm) = &s.farm {
        crate::farm::selection::push_now(farm, &record).await;
    }
    s.sync.trigger(Trigger::All);
    let done = if record.from_file {
        "file"
    } else {
        "selection"
    };
    see_other(&format!("/admin?done={done}#projects"))
}

/// The notice after a change of the selection (`done`), as it stands now.
pub fn notice(s: &AppState, done: &str) -> Option<String> {
    match done {
        "file" => Some("The properties file's selection is in force again.".into()),
        "selection" => {
            let (p, r) = names(&s.shared.selection.chosen().0);
            Some(format!(
                "Now mirrored: projects {p}; single repositories {r}."
            ))
        }
        _ => None,
    }
}
