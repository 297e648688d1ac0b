//! `POST /farm/lb`: a load balancer's report of itself (LB certificates only; the LB is the one
//! its certificate names, whatever the body says).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mirrorfarm_common::farm::messages::LbReport;

use crate::farm::channel::{Channel, Peer, Refusal};

/// Records the report.
pub async fn report(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Json(r): Json<LbReport>,
) -> Response {
    match peer {
        Peer::Lb(id) => {
            c.farm.lbs.record(&id, r);
            StatusCode::NO_CONTENT.into_response()
        }
        Peer::Node(_) => Refusal(
            StatusCode::FORBIDDEN,
            "only load balancers report here".into(),
        )
        .into_response(),
    }
}
