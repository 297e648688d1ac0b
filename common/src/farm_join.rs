//! Joining a farm over TLS on the gossip address (TCP). The joiner proves the farm secret without
//! sending it: HMAC-SHA256(secret, label, its nonce, the SHA-256 of the certificate the member
//! presented in this very TLS session, its node ID) — bound to the session, so a man in the middle
//! (with another certificate) cannot relay it. The member answers with its own proof and, only to
//! a joiner that proved the secret and shares the farm configuration, the farm's identity: farm ID,
//! upstream key and CA key. A wrong secret or configuration gets a refusal and nothing else. A load
//! balancer joins the same way (role `lb`) and gets only the farm ID and the CA certificate, which
//! it then uses to verify members: a `describe` request over TLS checked against the farm CA tells
//! it a member's addresses, so gossip alone never routes traffic anywhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a joiner sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// The joiner's node ID.
    pub node_id: String,
    /// 32 random bytes, hex.
    pub nonce: String,
    /// HMAC proof, hex.
    pub proof: String,
    /// Digests of its farm configuration keys.
    pub config: BTreeMap<String, String>,
    /// `node` (default) or `lb`.
    #[serde(default)]
    pub role: Role,
}

/// Who asks to join.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A mirror node: gets the whole farm identity.
    #[default]
    Node,
    /// A load balancer: gets the farm ID and CA certificate only.
    Lb,
}

/// A member's answer to `{"describe":true}`: where it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Description {
    /// Node ID.
    pub node_id: String,
    /// HTTP listener as the farm reaches it.
    pub http: std::net::SocketAddr,
    /// SSH listener as the farm reaches it.
    pub ssh: std::net::SocketAddr,
}

/// What a member answers.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinAnswer {
    /// Why the joiner was refused, when it was.
    pub refused: Option<String>,
    /// The member's HMAC proof, hex.
    pub proof: Option<String>,
    /// Farm ID.
    pub farm_id: Option<String>,
    /// The farm's upstream private key (OpenSSH PEM).
    pub upstream_key: Option<String>,
    /// The farm CA's private key (PEM; nodes only).
    pub ca_key: Option<String>,
    /// The farm CA's certificate (PEM).
    pub ca_cert: Option<String>,
}

/// The farm's identity as a member hands it over.
#[derive(Clone)]
pub struct FarmIdentity {
    /// Farm ID.
    pub farm_id: String,
    /// Upstream private key (OpenSSH PEM).
    pub upstream_key: String,
    /// CA private key (PEM).
    pub ca_key: String,
}

const JOIN_LABEL: &[u8] = b"mirrorfarm-join-v1";
const WELCOME_LABEL: &[u8] = b"mirrorfarm-welcome-v1";
const MAX_LINE: u64 = 256 * 1024;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (s.len().is_multiple_of(2) && s.len() <= 256).then_some(())?;
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn mac(secret: &str, label: &[u8], nonce: &[u8], cert_fp: &[u8], node_id: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    for part in [
        label,
        b"\0",
        nonce,
        b"\0",
        cert_fp,
        b"\0",
        node_id.as_bytes(),
    ] {
        m.update(part);
    }
    m
}

/// What a member needs to answer joiners.
pub struct Member {
    /// `farm.secret`.
    pub secret: String,
    /// Our farm configuration digests.
    pub config: BTreeMap<&'static str, String>,
    /// The identity handed to joiners.
    pub identity: FarmIdentity,
    /// SHA-256 of the certificate this listener presents.
    pub cert_fp: [u8; 32],
    /// The farm CA certificate (PEM).
    pub ca_cert: String,
    /// Where this member serves (answered to `describe`).
    pub description: Description,
    /// Where its mirrors live (`<root>/<PROJECT>/<repo>.git`), for members fetching from it.
    pub repos_root: std::path::PathBuf,
}

/// Answers join requests on `listener` (TLS with `acceptor`) until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    member: Arc<Member>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "farm listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, member) = (acceptor.clone(), member.clone());
        tokio::spawn(async move {
            match handle(stream, &acceptor, &member).await {
                Ok(Some(joined)) => {
                    tracing::info!(node = %joined, client = %peer, "a node joined the farm")
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(client = %peer, error = %e, "farm request refused"),
            }
        });
    }
}

/// One connection: TLS, then one request line (both within 10 s), then its answer.
async fn handle(
    stream: TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    m: &Member,
) -> Result<Option<String>, String> {
    let first = async {
        let tls = acceptor.accept(stream).await.map_err(|e| e.to_string())?;
        // A client certificate is only ever present after it verified against the farm CA.
        let verified = tls.get_ref().1.peer_certificates().is_some();
        let (r, w) = tokio::io::split(tls);
        let mut reader = BufReader::new(r);
        let mut line = String::new();
        (&mut reader)
            .take(MAX_LINE)
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((verified, reader, w, line))
    };
    let (verified, reader, w, line) = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .map_err(|_| "timed out".to_string())??;
    if let Ok(UploadPackRequest { upload_pack }) = serde_json::from_str::<UploadPackRequest>(&line)
    {
        if !verified {
            return Err("object transfer without a farm certificate".into());
        }
        serve_upload_pack(&m.repos_root, &upload_pack, reader, w).await?;
        return Ok(None);
    }
    answer(&line, w, m).await
}

/// A member asking for a repository's objects: `{"uploadPack":"PROJECT/repo"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadPackRequest {
    /// `PROJECT/repo`.
    pub upload_pack: String,
}

fn repo_ok(repo: &str) -> bool {
    let segs: Vec<&str> = repo.split('/').collect();
    segs.len() == 2
        && segs.iter().all(|s| {
            !s.is_empty()
                && s.len() <= 128
                && !s.starts_with('.')
                && !s.contains("..")
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
}

/// Runs `git upload-pack` on the mirror of `repo` with the connection as its input and output,
/// advertising the staged state (`refs/mirrorfarm/staging/…`, `refs/mirrorfarm/staging-head`) too.
async fn serve_upload_pack<R, W>(
    root: &std::path::Path,
    repo: &str,
    mut reader: R,
    mut w: W,
) -> Result<(), String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin,
{
    if !repo_ok(repo) {
        return Err(format!("bad repository name {repo:?}"));
    }
    let path = root.join(format!("{repo}.git"));
    if !tokio::fs::metadata(path.join("HEAD"))
        .await
        .is_ok_and(|m| m.is_file())
    {
        return Err(format!("{repo} is not mirrored here"));
    }
    // Members fetch the state this one staged (hidden from clients until the farm flips).
    let mut child = tokio::process::Command::new("git")
        .args([
            "-c",
            "uploadpack.hideRefs=!refs/mirrorfarm/staging",
            "-c",
            "uploadpack.hideRefs=!refs/mirrorfarm/staging-head",
            "upload-pack",
            "--strict",
        ])
        .arg(&path)
        .env("LC_ALL", "C")
        .env_remove("GIT_PROTOCOL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut reader, &mut stdin).await;
        let _ = stdin.shutdown().await;
    });
    let _ = tokio::io::copy(&mut stdout, &mut w).await;
    let _ = w.shutdown().await;
    let _ = child.wait().await;
    Ok(())
}

async fn answer<W: tokio::io::AsyncWrite + Unpin>(
    line: &str,
    mut w: W,
    m: &Member,
) -> Result<Option<String>, String> {
    if line.trim() == r#"{"describe":true}"# {
        let mut out = serde_json::to_string(&m.description).map_err(|e| e.to_string())?;
        out.push('\n');
        w.write_all(out.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        w.shutdown().await.map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let req: JoinRequest =
        serde_json::from_str(line).map_err(|_| "malformed join request".to_string())?;
    let refuse = |why: String| JoinAnswer {
        refused: Some(why),
        proof: None,
        farm_id: None,
        upstream_key: None,
        ca_key: None,
        ca_cert: None,
    };
    let nonce = unhex(&req.nonce).filter(|n| n.len() == 32);
    let proof = unhex(&req.proof);
    let ok = match (&nonce, &proof) {
        (Some(n), Some(p)) => mac(&m.secret, JOIN_LABEL, n, &m.cert_fp, &req.node_id)
            .verify_slice(p)
            .is_ok(),
        _ => false,
    };
    let (reply, result) = if !ok {
        (
            refuse("wrong farm secret".into()),
            Err(format!(
                "node {:?} did not prove the farm secret",
                req.node_id
            )),
        )
    } else {
        // A load balancer mirrors nothing: only nodes must share the farm configuration.
        let differing: Vec<&str> = m
            .config
            .iter()
            .filter(|(k, v)| req.role == Role::Node && req.config.get(**k) != Some(*v))
            .map(|(k, _)| *k)
            .collect();
        if !differing.is_empty() {
            let why = format!("farm configuration differs: {}", differing.join(", "));
            (
                refuse(why.clone()),
                Err(format!("node {}: {why}", req.node_id)),
            )
        } else {
            let nonce = nonce.expect("checked above");
            let proof = mac(&m.secret, WELCOME_LABEL, &nonce, &m.cert_fp, &req.node_id)
                .finalize()
                .into_bytes();
            let node = req.role == Role::Node;
            let welcome = JoinAnswer {
                refused: None,
                proof: Some(hex(&proof)),
                farm_id: Some(m.identity.farm_id.clone()),
                upstream_key: node.then(|| m.identity.upstream_key.clone()),
                ca_key: node.then(|| m.identity.ca_key.clone()),
                ca_cert: Some(m.ca_cert.clone()),
            };
            (welcome, Ok(Some(req.node_id.clone())))
        }
    };
    let mut out = serde_json::to_string(&reply).map_err(|e| e.to_string())?;
    out.push('\n');
    w.write_all(out.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    w.shutdown().await.map_err(|e| e.to_string())?;
    result
}

/// Accepts the member's certificate whatever it is (the joiner has no CA yet), still checking the
/// handshake signatures, so the certificate is really the member's: the HMAC proofs bind to it.
#[derive(Debug)]
struct BindOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for BindOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why joining through a seed failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The seed answered no, or could not prove the secret: trying again will not help.
    #[error("{0}")]
    Refused(String),
    /// The seed could not be reached or spoke nonsense: another seed, or later, may do.
    #[error("{0}")]
    Unreachable(String),
}

/// Asks the member at `seed` (host:port) to let this node in.
pub async fn join(
    seed: &str,
    secret: &str,
    node_id: &str,
    config: &BTreeMap<&'static str, String>,
) -> Result<FarmIdentity, JoinError> {
    let a = join_inner(seed, secret, node_id, config, Role::Node).await?;
    match (a.farm_id, a.upstream_key, a.ca_key) {
        (Some(farm_id), Some(upstream_key), Some(ca_key)) => Ok(FarmIdentity {
            farm_id,
            upstream_key,
            ca_key,
        }),
        _ => Err(JoinError::Unreachable(format!("{seed}: incomplete answer"))),
    }
}

/// For a load balancer: proves the secret to the member at `seed` and gets the farm ID and CA
/// certificate (PEM).
pub async fn join_as_lb(
    seed: &str,
    secret: &str,
    lb_id: &str,
) -> Result<(String, String), JoinError> {
    let a = join_inner(seed, secret, lb_id, &BTreeMap::new(), Role::Lb).await?;
    match (a.farm_id, a.ca_cert) {
        (Some(f), Some(c)) => Ok((f, c)),
        _ => Err(JoinError::Unreachable(format!("{seed}: incomplete answer"))),
    }
}

async fn join_inner(
    seed: &str,
    secret: &str,
    node_id: &str,
    config: &BTreeMap<&'static str, String>,
    role: Role,
) -> Result<JoinAnswer, JoinError> {
    use JoinError::Unreachable as U;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| U(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(BindOnly(provider)))
        .with_no_client_auth();
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(seed))
        .await
        .map_err(|_| U(format!("{seed}: no answer")))?
        .map_err(|e| U(format!("{seed}: {e}")))?;
    let name = ServerName::try_from("member.mirrorfarm").map_err(|e| U(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| U(format!("{seed}: TLS: {e}")))?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| U(format!("{seed}: no certificate")))?;
    let fp: [u8; 32] = Sha256::digest(cert.as_ref()).into();
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).expect("the OS random source is available");
    let proof = mac(secret, JOIN_LABEL, &nonce, &fp, node_id)
        .finalize()
        .into_bytes();
    let req = JoinRequest {
        node_id: node_id.to_owned(),
        nonce: hex(&nonce),
        proof: hex(&proof),
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        role,
    };
    let (r, mut w) = tokio::io::split(stream);
    let mut line = serde_json::to_string(&req).map_err(|e| U(e.to_string()))?;
    line.push('\n');
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| U(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(r.take(MAX_LINE))
        .read_line(&mut answer)
        .await
        .map_err(|e| U(e.to_string()))?;
    let a: JoinAnswer =
        serde_json::from_str(&answer).map_err(|_| U(format!("{seed}: malformed answer")))?;
    if let Some(why) = a.refused {
        return Err(JoinError::Refused(format!(
            "{seed} refused this node: {why}"
        )));
    }
    let their = a
        .proof
        .as_deref()
        .and_then(unhex)
        .ok_or_else(|| JoinError::Refused(format!("{seed}: no proof of the farm secret")))?;
    mac(secret, WELCOME_LABEL, &nonce, &fp, node_id)
        .verify_slice(&their)
        .map_err(|_| {
            JoinError::Refused(format!(
                "{seed} does not know the farm secret; nothing taken from it"
            ))
        })?;
    Ok(a)
}

/// Asks the member at `gossip_addr` where it serves, trusting only a certificate from the farm CA
/// (`ca_pem`) that names `node_id`.
pub async fn describe(
    gossip_addr: std::net::SocketAddr,
    ca_pem: &str,
    node_id: &str,
) -> Result<Description, String> {
    let roots = ca_roots(ca_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name =
        ServerName::try_from(format!("{node_id}.nodes.mirrorfarm")).map_err(|e| e.to_string())?;
    let work = async {
        let tcp = TcpStream::connect(gossip_addr)
            .await
            .map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("not a verified member: {e}"))?;
        let (r, mut w) = tokio::io::split(stream);
        w.write_all(b"{\"describe\":true}\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(r.take(MAX_LINE))
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let d: Description =
            serde_json::from_str(&line).map_err(|_| "malformed description".to_string())?;
        if d.node_id != node_id {
            return Err(format!(
                "member says it is {:?}, not {node_id:?}",
                d.node_id
            ));
        }
        Ok(d)
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| "no answer".to_string())?
}

/// Opens an object transfer for `repo` from the member `node_id` at `peer`: TLS with this node's
/// farm certificate, the member's verified against the farm CA; then the stream speaks git's
/// upload-pack protocol (v0) with the member's mirror.
pub async fn open_upload_pack(
    peer: std::net::SocketAddr,
    node_id: &str,
    repo: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let roots = ca_roots(ca_pem)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| e.to_string())?;
    let name =
        ServerName::try_from(format!("{node_id}.nodes.mirrorfarm")).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(peer))
        .await
        .map_err(|_| format!("{peer}: no answer"))?
        .map_err(|e| format!("{peer}: {e}"))?;
    // A member that vanished from the network (no reset, no FIN) ends the session within
    // about half a minute; a silent but live member (counting objects) keeps it.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(15))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    socket2::SockRef::from(&tcp)
        .set_tcp_keepalive(&keepalive)
        .map_err(|e| format!("{peer}: keepalive: {e}"))?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{peer} is not the verified member {node_id}: {e}"))?;
    let mut line = serde_json::to_string(&UploadPackRequest {
        upload_pack: repo.to_owned(),
    })
    .map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// The farm CA certificate(s) in `ca_pem` as a root store.
pub fn ca_roots(ca_pem: &str) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no farm CA certificate".into());
    }
    Ok(roots)
}
