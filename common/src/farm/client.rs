//! Talking to farm members. Joining runs on one TLS connection (hyper's HTTP/1.1 client on it),
//! so the proof binds to the certificate of that very session. Everything else goes through
//! [`FarmClient`] (reqwest on rustls): the farm CA as the only root, this participant's farm
//! certificate presented, and members reached by the name in their certificate, resolved to the
//! address gossip gives them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use parking_lot::RwLock;
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::farm::messages::{
    Description, FarmIdentity, JoinAnswer, JoinRequest, LbWelcome, Role, SessionBatch,
    StagedNotice, SyncNudge,
};
use crate::farm::proof::{self, JOIN_LABEL, WELCOME_LABEL};
use crate::farm::tls::{self, node_name};
use crate::farm::{
    FarmError, DESCRIBE, INVENTORY, JOIN, LB_REPORT, RELIST, SESSIONS, STAGED, SYNC,
};

/// The largest listing read from a member (a million repositories).
const MAX_INVENTORY_ANSWER: usize = 128 << 20;
/// The largest batch of sessions read from a member.
const MAX_SESSIONS_ANSWER: usize = 64 << 20;

/// The largest answer read from a member.
const MAX_ANSWER: usize = 256 * 1024;
/// Time limit of one join exchange (connect, TLS, request, answer).
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the member at `seed` (`host:port`) to let this node in; returns the farm's identity.
pub async fn join_node(
    seed: &str,
    secret: &str,
    node_id: &str,
    config: &BTreeMap<&'static str, String>,
) -> Result<FarmIdentity, FarmError> {
    let a = join(seed, secret, node_id, config, Role::Node).await?;
    match (a.farm_id, a.upstream_key, a.ca_key) {
        (Some(farm_id), Some(upstream_key), Some(ca_key)) => Ok(FarmIdentity {
            farm_id,
            upstream_key,
            ca_key,
        }),
        _ => Err(malformed(seed, "incomplete answer")),
    }
}

/// For a load balancer: proves the secret to the member at `seed`; gets the farm ID, the CA
/// certificate and a client certificate of its own.
pub async fn join_lb(seed: &str, secret: &str, lb_id: &str) -> Result<LbWelcome, FarmError> {
    let a = join(seed, secret, lb_id, &BTreeMap::new(), Role::Lb).await?;
    match (a.farm_id, a.ca_cert, a.client_cert, a.client_key) {
        (Some(farm_id), Some(ca_cert), Some(client_cert), Some(client_key)) => Ok(LbWelcome {
            farm_id,
            ca_cert,
            client_cert,
            client_key,
        }),
        _ => Err(malformed(seed, "incomplete answer")),
    }
}

fn malformed(peer: &str, why: impl Into<String>) -> FarmError {
    FarmError::Malformed {
        peer: peer.to_owned(),
        why: why.into(),
    }
}

async fn join(
    seed: &str,
    secret: &str,
    id: &str,
    config: &BTreeMap<&'static str, String>,
    role: Role,
) -> Result<JoinAnswer, FarmError> {
    tokio::time::timeout(JOIN_TIMEOUT, join_once(seed, secret, id, config, role))
        .await
        .map_err(|_| FarmError::Timeout {
            peer: seed.to_owned(),
            secs: JOIN_TIMEOUT.as_secs(),
        })?
}

async fn join_once(
    seed: &str,
    secret: &str,
    id: &str,
    config: &BTreeMap<&'static str, String>,
    role: Role,
) -> Result<JoinAnswer, FarmError> {
    let peer = || seed.to_owned();
    let tcp = TcpStream::connect(seed)
        .await
        .map_err(|source| FarmError::Connect {
            peer: peer(),
            source,
        })?;
    let name =
        ServerName::try_from("member.mirrorfarm").map_err(|e| malformed(seed, e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls::joiner_client()?))
        .connect(name, tcp)
        .await
        .map_err(|source| FarmError::Tls {
            peer: peer(),
            source,
        })?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| malformed(seed, "no certificate"))?;
    let fp: [u8; 32] = Sha256::digest(cert.as_ref()).into();
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).map_err(|e| malformed(seed, format!("no randomness: {e}")))?;
    let req = JoinRequest {
        node_id: id.to_owned(),
        nonce: proof::hex(&nonce),
        proof: proof::prove(secret, JOIN_LABEL, &nonce, &fp, id),
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        role,
    };
    let body = serde_json::to_vec(&req).map_err(|e| malformed(seed, e.to_string()))?;
    let http = |source| FarmError::Http {
        peer: peer(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::post(JOIN)
        .header(hyper::header::HOST, "member.mirrorfarm")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| malformed(seed, e.to_string()))?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| malformed(seed, e.to_string()))?
        .to_bytes();
    driver.abort();
    let a: JoinAnswer = serde_json::from_slice(&bytes).map_err(|_| {
        if status.is_success() {
            malformed(seed, "not a join answer")
        } else {
            FarmError::Status {
                peer: peer(),
                status: status.as_u16(),
            }
        }
    })?;
    if let Some(why) = a.refused {
        return Err(FarmError::Refused {
            peer: peer(),
            why: format!("refused this node: {why}"),
        });
    }
    let theirs = a.proof.as_deref().unwrap_or_default();
    if !proof::verify(secret, WELCOME_LABEL, &nonce, &fp, id, theirs) {
        return Err(FarmError::Refused {
            peer: peer(),
            why: "does not know the farm secret; nothing taken from it".into(),
        });
    }
    Ok(a)
}

/// Member names → the addresses gossip gives them (the port comes from the URL).
#[derive(Clone, Default)]
struct MemberNames(Arc<RwLock<HashMap<String, IpAddr>>>);

impl reqwest::dns::Resolve for MemberNames {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let ip = self.0.read().get(name.as_str()).copied();
        Box::pin(async move {
            match ip {
                Some(ip) => {
                    let addrs: reqwest::dns::Addrs =
                        Box::new(std::iter::once(SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                None => Err("not a known farm member".into()),
            }
        })
    }
}

/// Requests to farm members over mutual TLS: the farm CA is the only root and each member must
/// present a certificate naming it.
#[derive(Clone)]
pub struct FarmClient {
    pub(crate) http: reqwest::Client,
    names: MemberNames,
    tls: Arc<rustls::ClientConfig>,
}

impl FarmClient {
    /// A client presenting `cert_pem`/`key_pem` and trusting the farm CA `ca_pem`.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, FarmError> {
        let tls = tls::member_client(ca_pem, cert_pem, key_pem)?;
        let names = MemberNames::default();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .dns_resolver(Arc::new(names.clone()))
            .no_proxy()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| FarmError::Certificate(e.to_string()))?;
        Ok(Self {
            http,
            names,
            tls: Arc::new(tls),
        })
    }

    /// The URL of `path` on member `node_id` at `addr` (its farm address).
    pub fn url(&self, node_id: &str, addr: SocketAddr, path: &str) -> String {
        let name = node_name(node_id);
        self.names.0.write().insert(name.clone(), addr.ip());
        format!("https://{name}:{}{path}", addr.port())
    }

    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, FarmError> {
        let peer = addr.to_string();
        let r = req.send().await.map_err(|source| FarmError::Request {
            peer: peer.clone(),
            source,
        })?;
        if !r.status().is_success() {
            return Err(FarmError::Status {
                peer,
                status: r.status().as_u16(),
            });
        }
        Ok(r)
    }

    /// Asks member `node_id` at `addr` where it serves; the answer must name it. This is how a
    /// peer is verified, so it runs on a connection of its own to exactly `addr` (never a pooled
    /// one to another address under the same name).
    pub async fn describe(
        &self,
        node_id: &str,
        addr: SocketAddr,
    ) -> Result<Description, FarmError> {
        let peer = addr.to_string();
        let request = |source| FarmError::Request {
            peer: peer.clone(),
            source,
        };
        let name = node_name(node_id);
        let once = reqwest::Client::builder()
            .use_preconfigured_tls((*self.tls).clone())
            .resolve(&name, addr)
            .no_proxy()
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(request)?;
        let url = format!("https://{name}:{}{DESCRIBE}", addr.port());
        let r = once.get(url).send().await.map_err(request)?;
        if r.remote_addr() != Some(addr) {
            return Err(malformed(&peer, "answered from another address"));
        }
        if !r.status().is_success() {
            return Err(FarmError::Status {
                peer,
                status: r.status().as_u16(),
            });
        }
        let bytes = r.bytes().await.map_err(request)?;
        if bytes.len() > MAX_ANSWER {
            return Err(malformed(&peer, "answer too large"));
        }
        let d: Description =
            serde_json::from_slice(&bytes).map_err(|e| malformed(&peer, e.to_string()))?;
        if d.node_id != node_id {
            return Err(malformed(
                &peer,
                format!("member says it is {:?}, not {node_id:?}", d.node_id),
            ));
        }
        Ok(d)
    }

    /// Passes a sync of one repository on to member `node_id` at `addr`.
    pub async fn sync(
        &self,
        node_id: &str,
        addr: SocketAddr,
        nudge: &SyncNudge,
    ) -> Result<(), FarmError> {
        self.send(
            addr,
            self.http.post(self.url(node_id, addr, SYNC)).json(nudge),
        )
        .await
        .map(drop)
    }

    /// The repositories to mirror as member `node_id` at `addr` lists them (`fresh`: a listing
    /// taken after this request, not one from before).
    pub async fn inventory(
        &self,
        node_id: &str,
        addr: SocketAddr,
        fresh: bool,
    ) -> Result<crate::farm::messages::Inventory, FarmError> {
        let url = format!("{}?fresh={fresh}", self.url(node_id, addr, INVENTORY));
        let mut r = self
            .send(addr, self.http.get(url).timeout(Duration::from_secs(300)))
            .await?;
        json_answer(&addr.to_string(), &mut r, MAX_INVENTORY_ANSWER).await
    }

    /// Tells member `node_id` at `addr` what this load balancer is and sees.
    pub async fn lb_report(
        &self,
        node_id: &str,
        addr: SocketAddr,
        report: &crate::farm::messages::LbReport,
    ) -> Result<(), FarmError> {
        self.send(
            addr,
            self.http
                .post(self.url(node_id, addr, LB_REPORT))
                .json(report)
                .timeout(Duration::from_secs(10)),
        )
        .await
        .map(drop)
    }

    /// Asks member `node_id` at `addr` to list the upstream's repositories again now.
    pub async fn relist(&self, node_id: &str, addr: SocketAddr) -> Result<(), FarmError> {
        self.send(addr, self.http.post(self.url(node_id, addr, RELIST)))
            .await
            .map(drop)
    }

    /// Tells member `node_id` at `addr` what this node staged.
    pub async fn staged(
        &self,
        node_id: &str,
        addr: SocketAddr,
        notice: &StagedNotice,
    ) -> Result<(), FarmError> {
        self.send(
            addr,
            self.http.post(self.url(node_id, addr, STAGED)).json(notice),
        )
        .await
        .map(drop)
    }

    /// Sends changed sessions to member `node_id` at `addr`.
    pub async fn push_sessions(
        &self,
        node_id: &str,
        addr: SocketAddr,
        batch: &SessionBatch,
    ) -> Result<(), FarmError> {
        self.send(
            addr,
            self.http
                .post(self.url(node_id, addr, SESSIONS))
                .timeout(Duration::from_secs(30))
                .json(batch),
        )
        .await
        .map(drop)
    }

    /// Every session member `node_id` at `addr` holds.
    pub async fn pull_sessions(
        &self,
        node_id: &str,
        addr: SocketAddr,
    ) -> Result<SessionBatch, FarmError> {
        let peer = addr.to_string();
        let mut r = self
            .send(
                addr,
                self.http
                    .get(self.url(node_id, addr, SESSIONS))
                    .timeout(Duration::from_secs(30)),
            )
            .await?;
        json_answer(&peer, &mut r, MAX_SESSIONS_ANSWER).await
    }
}

/// A member's JSON answer, read to its end within `max` bytes.
pub(crate) async fn json_answer<T: serde::de::DeserializeOwned>(
    peer: &str,
    r: &mut reqwest::Response,
    max: usize,
) -> Result<T, FarmError> {
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|source| FarmError::Request {
        peer: peer.to_owned(),
        source,
    })? {
        body.extend_from_slice(&chunk);
        if body.len() > max {
            return Err(malformed(peer, "answer too large"));
        }
    }
    serde_json::from_slice(&body).map_err(|e| malformed(peer, e.to_string()))
}
