//! The join route: a joiner proves the farm secret (bound to this listener's certificate, see
//! `mirrorfarm_common::farm::proof`); this member answers with its own proof and, only to a
//! joiner that proved the secret and shares the farm configuration, the farm's identity: farm
//! ID, upstream key and CA key for a node; farm ID, CA certificate and a client certificate of its
//! own for a load balancer. A wrong secret or configuration gets a refusal and nothing else.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mirrorfarm_common::farm::messages::{JoinAnswer, JoinRequest, Role};
use mirrorfarm_common::farm::proof::{self, JOIN_LABEL, WELCOME_LABEL};
use mirrorfarm_common::farm::tls::lb_name;

use crate::farm::channel::Channel;
use crate::farm::trust::FarmCa;

/// The largest join request read.
pub const MAX_REQUEST: usize = 256 * 1024;

/// What a member answers joiners with.
pub struct Member {
    /// `farm.secret`.
    pub secret: String,
    /// Our farm configuration digests.
    pub config: BTreeMap<&'static str, String>,
    /// The farm CA (its key is handed to joining nodes; it issues load balancers' certificates).
    pub ca: FarmCa,
    /// The farm CA certificate (PEM).
    pub ca_cert: String,
    /// The upstream private key (OpenSSH PEM).
    pub upstream_key: String,
    /// SHA-256 of the certificate this listener presents.
    pub cert_fp: [u8; 32],
}

fn refused(why: String) -> Response {
    let a = JoinAnswer {
        refused: Some(why),
        ..Default::default()
    };
    (StatusCode::FORBIDDEN, Json(a)).into_response()
}

/// `POST /farm/join`.
pub async fn join(
    State(c): State<Channel>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Json(req): Json<JoinRequest>,
) -> Response {
    let m = &c.member;
    let nonce = proof::unhex(&req.nonce).filter(|n| n.len() == 32);
    let ok = nonce.as_ref().is_some_and(|n| {
        proof::verify(
            &m.secret,
            JOIN_LABEL,
            n,
            &m.cert_fp,
            &req.node_id,
            &req.proof,
        )
    });
    let Some(nonce) = nonce.filter(|_| ok) else {
        tracing::warn!(%client, node = %req.node_id.escape_debug(), "a joiner did not prove the farm secret");
        return refused("wrong farm secret".into());
    };
    // A load balancer mirrors nothing: only nodes must share the farm configuration.
    let differing: Vec<&str> = m
        .config
        .iter()
        .filter(|(k, v)| {
            req.role == Role::Node
                && crate::farm::keys::differs(k, v, req.config.get(**k).map(String::as_str))
        })
        .map(|(k, _)| *k)
        .collect();
    if !differing.is_empty() {
        let why = format!("farm configuration differs: {}", differing.join(", "));
        tracing::warn!(%client, node = %req.node_id.escape_debug(), why, "join refused");
        return refused(why);
    }
    let mut a = JoinAnswer {
        proof: Some(proof::prove(
            &m.secret,
            WELCOME_LABEL,
            &nonce,
            &m.cert_fp,
            &req.node_id,
        )),
        farm_id: Some(m.ca.farm_id.clone()),
        ca_cert: Some(m.ca_cert.clone()),
        ..Default::default()
    };
    match req.role {
        Role::Node => {
            a.upstream_key = Some(m.upstream_key.clone());
            a.ca_key = Some(m.ca.key_pem.clone());
        }
        Role::Lb => {
            // One DNS label, so the certificate names exactly `<id>.lbs.mirrorfarm`.
            let name = lb_name(&req.node_id);
            if req.node_id.contains('.')
                || rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
            {
                return refused("not a usable load balancer ID".into());
            }
            match m.ca.issue_named(&req.node_id, &name) {
                Ok((cert, key)) => {
                    a.client_cert = Some(cert);
                    a.client_key = Some(key);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot issue a load balancer certificate");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
            }
        }
    }
    tracing::info!(%client, node = %req.node_id, role = ?req.role, "a member joined the farm");
    Json(a).into_response()
}
