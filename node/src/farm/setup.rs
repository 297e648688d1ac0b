//! Becoming a member at start: a node with `farm.secret` keeps its farm CA in its home; the first
//! node of a farm (no seeds) creates it; any other node joins through a seed (proving the secret,
//! see [`crate::farm::join`]) and takes on the farm's identity — farm ID and upstream key — so the
//! upstream authorizes one key per farm. Then it answers joiners itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, FarmConfig};
use crate::farm::keys;
use crate::farm::trust::FarmCa;
use crate::home::Home;
use crate::identity::write_atomic;
use crate::store::Store;
use mirrorfarm_common::farm_join::{self as join, FarmIdentity, JoinError, Member};

/// How long a new node keeps trying its seeds before giving up.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);

/// Makes this node a member (loading, creating or joining); returns the farm CA.
pub async fn ensure_member(
    home: &Home,
    store: &Store,
    config: &Config,
    farm: &FarmConfig,
    node_id: &str,
) -> Result<FarmCa, String> {
    // The store and the files are read and written on the blocking pool.
    let (h, s, first) = (home.clone(), store.clone(), farm.seeds.is_empty());
    let local = blocking(move || {
        let farm_id = s
            .meta_get("farm_id")
            .map_err(|e| e.to_string())?
            .ok_or("no farm ID")?;
        if let Some(ca) = FarmCa::load(h.root(), &farm_id).map_err(|e| e.to_string())? {
            return Ok(Some(ca));
        }
        if !first {
            return Ok(None);
        }
        let ca = FarmCa::create(&farm_id).map_err(|e| e.to_string())?;
        ca.save(h.root()).map_err(|e| e.to_string())?;
        tracing::info!(farm_id, "created the farm (first node): farm CA made");
        Ok(Some(ca))
    })
    .await?;
    if let Some(ca) = local {
        return Ok(ca);
    }
    let digests = keys::config_digests(config);
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < JOIN_PATIENCE {
        for seed in &farm.seeds {
            match join::join(seed, &farm.secret, node_id, &digests).await {
                Ok(identity) => {
                    let (h, s) = (home.clone(), store.clone());
                    return blocking(move || adopt(&h, &s, identity)).await;
                }
                Err(JoinError::Refused(why)) => return Err(why),
                Err(JoinError::Unreachable(why)) => last = why,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "no seed let this node join within {JOIN_PATIENCE:?}: {last}"
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("farm setup task failed: {e}"))?
}

fn adopt(home: &Home, store: &Store, id: FarmIdentity) -> Result<FarmCa, String> {
    let key = russh::keys::decode_secret_key(&id.upstream_key, None)
        .map_err(|e| format!("farm upstream key: {e}"))?;
    let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    write_atomic(&home.upstream_key(), id.upstream_key.as_bytes(), 0o600)
        .map_err(|e| e.to_string())?;
    write_atomic(
        &home.upstream_key().with_extension("pub"),
        format!("{public}\n").as_bytes(),
        0o644,
    )
    .map_err(|e| e.to_string())?;
    store
        .meta_put("farm_id", &id.farm_id)
        .map_err(|e| e.to_string())?;
    let ca = FarmCa {
        farm_id: id.farm_id.clone(),
        key_pem: id.ca_key,
    };
    ca.save(home.root()).map_err(|e| e.to_string())?;
    tracing::info!(farm_id = %id.farm_id, "joined the farm: farm identity and upstream key taken on");
    Ok(ca)
}

/// Answers joiners on TCP at the gossip address, with a certificate from the farm CA.
pub async fn serve_joins(
    home: &Home,
    config: &Config,
    farm: &FarmConfig,
    ca: &FarmCa,
    node_id: &str,
    served: (std::net::SocketAddr, std::net::SocketAddr),
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let (cert_pem, key_pem) = ca.issue(node_id).map_err(|e| e.to_string())?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert_fp: [u8; 32] = Sha256::digest(cert.as_ref()).into();
    let ca_pem = ca.cert_pem().map_err(|e| e.to_string())?;
    // What `mirrorfarm farm-connect` (git's transport to other members) presents and trusts.
    let dir = home.root().join("farm");
    let files = [
        ("ca.pem", ca_pem.clone(), 0o644),
        ("node.pem", cert_pem.clone(), 0o644),
        ("node.key", key_pem.clone(), 0o600),
    ];
    let key_path = home.upstream_key();
    let upstream_key = blocking(move || {
        for (name, bytes, mode) in files {
            write_atomic(&dir.join(name), bytes.as_bytes(), mode).map_err(|e| e.to_string())?;
        }
        std::fs::read_to_string(key_path).map_err(|e| e.to_string())
    })
    .await?;
    let roots = join::ca_roots(&ca_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Joiners have no certificate yet; members fetching objects must present one from the farm CA.
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| e.to_string())?;
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(clients)
        .with_single_cert(vec![cert], key)
        .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(farm.gossip_addr)
        .await
        .map_err(|e| format!("cannot listen on {} (farm, TCP): {e}", farm.gossip_addr))?;
    let member = Arc::new(Member {
        secret: farm.secret.clone(),
        config: keys::config_digests(config),
        identity: FarmIdentity {
            farm_id: ca.farm_id.clone(),
            upstream_key,
            ca_key: ca.key_pem.clone(),
        },
        cert_fp,
        ca_cert: ca_pem.clone(),
        repos_root: home.repos_dir(),
        description: join::Description {
            node_id: node_id.to_owned(),
            http: std::net::SocketAddr::new(farm.gossip_addr.ip(), served.0.port()),
            ssh: std::net::SocketAddr::new(farm.gossip_addr.ip(), served.1.port()),
        },
    });
    tokio::spawn(join::serve(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        member,
        shutdown,
    ));
    Ok(())
}
