//! The admin page's actions: forms posted by an admin (with the session's CSRF token) or by a
//! script with the admin token. Each answers with a 303 back to the page and a notice.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::html::{esc, page, query_value, respond, see_other};
use super::{login, viewer, Viewer};
use crate::names::RepoId;
use crate::serve::app_state::AppState;
use crate::serve::Serving;
use crate::sync::scheduler::Trigger;

/// Lets an action through: an admin whose form carries the session's CSRF token, or the token.
/// The refusal otherwise.
pub fn admit(s: &Serving, headers: &HeaderMap, csrf: &str) -> Result<Viewer, Box<Response>> {
    let who = viewer(s, headers);
    match &who {
        Viewer::Token => Ok(who),
        Viewer::Admin { session, .. } if s.admin_csrf.check(session, csrf) => Ok(who),
        Viewer::Admin { user, .. } => {
            tracing::warn!(user = %user, "admin action refused: missing or wrong CSRF token");
            Err(Box::new(respond(
                StatusCode::FORBIDDEN,
                page(
                    "mirrorfarm admin",
                    "",
                    "<section><h2>Refused</h2><p class=error role=alert>This form was stale or sent \
                     from another site (its CSRF token did not match your session). \
                     <a href=\"/admin\">Back to the admin page</a>.</p></section>",
                ),
            )))
        }
        _ => Err(Box::new(login::refused(s, &who))),
    }
}

/// The sync form's fields (both empty: every repository).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct SyncForm {
    csrf: String,
    project: String,
    repo: String,
}

/// `POST /admin/sync`: syncs one repository (its leader fetches), or every one.
pub async fn sync(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<SyncForm>,
) -> Response {
    let who = match admit(&s.shared, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let (notice, done) = if f.project.is_empty() && f.repo.is_empty() {
        s.sync.trigger(Trigger::All);
        (
            "a sync of every repository".to_owned(),
            "done=sync-all".to_owned(),
        )
    } else {
        let id = match RepoId::parse(&format!("{}/{}", f.project, f.repo)) {
            Ok(id) if s.shared.repos.read().contains_key(&id) => id,
            _ => {
                return respond(
                    StatusCode::NOT_FOUND,
                    page(
                        "mirrorfarm admin",
                        "",
                        &format!(
                            "<section><h2>Not mirrored</h2><p class=error role=alert>{}/{} is not \
                             mirrored here. <a href=\"/admin\">Back</a>.</p></section>",
                            esc(&f.project),
                            esc(&f.repo)
                        ),
                    ),
                )
            }
        };
        s.sync.trigger(Trigger::Requested(id.clone()));
        let done = format!("done=sync&repo={}", query_value(&id.to_string()));
        (format!("a sync of {id}"), done)
    };
    tracing::info!(by = %who.name(), what = %notice, "admin action");
    see_other(&format!("/admin?{done}#repositories"))
}
