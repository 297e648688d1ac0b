//! The farm channel: one HTTPS listener per member on its gossip address (TCP; gossip is UDP on
//! the same port), mutual TLS under the farm CA, served with the node's own HTTP stack. Joining
//! is the one route open to a client without a farm certificate; every other route needs one, and
//! objects and syncs need a node's (not a load balancer's).

pub mod git;
pub mod inventory;
pub mod join;
pub mod lb;
pub mod lfs;
pub mod selection;
pub mod sessions;
pub mod staged;
pub mod states;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use mirrorfarm_common::farm::messages::{Description, SyncNudge};
use mirrorfarm_common::farm::{
    DESCRIBE, GIT, INVENTORY, JOIN, LB_REPORT, LFS_FETCH, LFS_HAVE, LFS_OBJECTS, RELIST, SELECTION,
    SERIES, SESSIONS, STAGED, STATES, SYNC,
};
use tokio::sync::watch;

use crate::farm::{Farm, FarmSetupError};
use crate::http_listener::{self, ClientCert};
use crate::names::RepoId;
use crate::sync::scheduler::Trigger;

/// Who is asking, by its farm certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A member node (its node ID).
    Node(String),
    /// A load balancer (its ID).
    Lb(String),
}

impl Peer {
    /// Reads the name in a (verified) farm certificate.
    pub fn of(cert: &ClientCert) -> Option<Self> {
        let der = cert.0.as_ref()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let san = parsed.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => {
                if let Some(id) = mirrorfarm_common::farm::tls::node_of_name(d) {
                    Some(Self::Node(id.to_owned()))
                } else {
                    d.strip_suffix(".lbs.mirrorfarm")
                        .map(|id| Self::Lb(id.to_owned()))
                }
            }
            _ => None,
        })
    }
}

/// What the routes share.
#[derive(Clone)]
pub struct Channel {
    /// The farm.
    pub farm: Arc<Farm>,
    /// What joiners are answered with.
    pub member: Arc<join::Member>,
    /// Where this node serves.
    pub description: Description,
}

/// A farm request answered with an error: its status and message.
#[derive(Debug)]
pub struct Refusal(pub StatusCode, pub String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    Refusal(status, why.to_owned()).into_response()
}

/// The peers of the certificates seen lately, by the certificate's bytes: a farm has a handful,
/// and every member's fetch of every repository comes on a new connection (each git process
/// its own), so parsing each one's certificate was a cost per repository.
static PEERS: std::sync::LazyLock<parking_lot::Mutex<std::collections::HashMap<Vec<u8>, Peer>>> =
    std::sync::LazyLock::new(Default::default);
/// Certificates remembered at most (the map is emptied when full).
const PEERS_MAX: usize = 64;

impl Peer {
    /// [`Peer::of`], remembered for the certificate's bytes.
    fn of_remembered(cert: &ClientCert) -> Option<Self> {
        let der = cert.0.as_ref()?;
        if let Some(p) = PEERS.lock().get(AsRef::<[u8]>::as_ref(&**der)) {
            return Some(p.clone());
        }
        let p = Self::of(cert)?;
        let mut peers = PEERS.lock();
        if peers.len() >= PEERS_MAX {
            peers.clear();
        }
        peers.insert(AsRef::<[u8]>::as_ref(&**der).to_vec(), p.clone());
        Some(p)
    }
}

/// Lets through only clients that presented a farm certificate.
async fn require_certificate(mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ClientCert>()
        .and_then(Peer::of_remembered);
    match peer {
        Some(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None => refuse(
            StatusCode::FORBIDDEN,
            "a farm client certificate is required for this route",
        ),
    }
}

/// Lets through only member nodes.
pub fn require_node(peer: &Peer) -> Result<&str, Refusal> {
    match peer {
        Peer::Node(id) => Ok(id),
        Peer::Lb(_) => Err(Refusal(
            StatusCode::FORBIDDEN,
            "only member nodes may use this route".into(),
        )),
    }
}

async fn describe(State(c): State<Channel>) -> Json<Description> {
    Json(c.description.clone())
}

async fn sync(
    State(c): State<Channel>,
    Extension(peer): Extension<Peer>,
    Json(n): Json<SyncNudge>,
) -> Response {
    let (node, id) = match node_and_repo(&c, &peer, &n.project, &n.repo) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    tracing::debug!(repo = %id, from = node, "sync passed on by a member");
    c.farm.sync.trigger(Trigger::Repo(id));
    StatusCode::ACCEPTED.into_response()
}

async fn relist(State(c): State<Channel>, Extension(peer): Extension<Peer>) -> Response {
    match require_node(&peer) {
        Ok(node) => {
            tracing::debug!(from = node, "re-list asked by a member");
            c.farm.sync.trigger(Trigger::All);
            StatusCode::ACCEPTED.into_response()
        }
        Err(r) => r.into_response(),
    }
}

/// The member node asking (its ID) and the repository it names, if the caller is a node and the
/// repository one this node mirrors.
fn node_and_repo(
    c: &Channel,
    peer: &Peer,
    project: &str,
    repo: &str,
) -> Result<(String, RepoId), Refusal> {
    let node = require_node(peer)?.to_owned();
    Ok((node, mirrored(c, project, repo)?))
}

/// The repository a member names, if it is one this node mirrors.
pub(crate) fn mirrored(c: &Channel, project: &str, repo: &str) -> Result<RepoId, Refusal> {
    let id = match RepoId::parse(&format!("{project}/{repo}")) {
        Ok(id) => id,
        _ => {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "bad repository name".into(),
            ))
        }
    };
    if !c.farm.shared.repos.read().contains_key(&id) {
        return Err(Refusal(StatusCode::NOT_FOUND, "not mirrored here".into()));
    }
    Ok(id)
}

/// The channel's routes.
pub fn router(c: Channel) -> Router {
    let members = Router::new()
        .route(DESCRIBE, get(describe))
        .route(SYNC, post(sync))
        .route(RELIST, post(relist))
        .route(SELECTION, get(selection::get).post(selection::offer))
        .route(SERIES, get(selection::series))
        .route(
            LB_REPORT,
            post(lb::report).layer(DefaultBodyLimit::max(4 << 20)),
        )
        .route(INVENTORY, get(inventory::inventory))
        .route(STAGED, post(staged::staged))
        .route(STATES, get(states::states))
        .route(
            LFS_HAVE,
            post(lfs::have).layer(DefaultBodyLimit::max(2 << 20)),
        )
        .route(LFS_FETCH, post(lfs::fetch))
        .route(&format!("{LFS_OBJECTS}/{{oid}}"), get(lfs::object))
        .route(
            SESSIONS,
            get(sessions::list)
                .post(sessions::merge)
                .layer(DefaultBodyLimit::max(64 << 20)),
        )
        .route(
            &format!("{GIT}/{{project}}/{{repo}}/info/refs"),
            get(git::info_refs),
        )
        .route(
            &format!("{GIT}/{{project}}/{{repo}}/git-upload-pack"),
            post(git::upload_pack),
        )
        .layer(axum::middleware::from_fn(require_certificate));
    Router::new()
        .route(
            JOIN,
            post(join::join).layer(DefaultBodyLimit::max(join::MAX_REQUEST)),
        )
        .merge(members)
        .with_state(c)
}

/// Serves the channel on the farm address until `shutdown` turns true.
pub async fn serve(
    c: Channel,
    tls: rustls::ServerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, FarmSetupError> {
    let addr = c.farm.config.gossip_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| FarmSetupError::Bind { addr, source })?;
    let opts = http_listener::Options {
        header_timeout: std::time::Duration::from_secs(10),
        grace: std::time::Duration::from_secs(5),
        tls: Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
    };
    Ok(tokio::spawn(http_listener::run(
        listener,
        router(c),
        opts,
        shutdown,
    )))
}
