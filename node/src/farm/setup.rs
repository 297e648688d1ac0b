//! Becoming a member at start: a node with `farm.secret` keeps its farm CA in its home; the first
//! node of a farm (no seeds) creates it; any other node joins through a seed (proving the secret
//! over the seed's farm channel) and takes on the farm's identity — farm ID and upstream key — so
//! the upstream authorizes one key per farm. Then it issues itself a farm certificate.

use std::time::{Duration, Instant};

use mirrorfarm_common::farm::client;
use mirrorfarm_common::farm::messages::FarmIdentity;

use crate::config::{Config, FarmConfig};
use crate::farm::trust::FarmCa;
use crate::farm::{keys, CertFiles, FarmSetupError};
use crate::home::Home;
use crate::identity::write_atomic;
use crate::store::Store;

/// How long a new node keeps trying its seeds before giving up.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);

/// Makes this node a member (loading, creating or joining); returns the farm CA.
pub async fn ensure_member(
    home: &Home,
    store: &Store,
    config: &Config,
    farm: &FarmConfig,
    node_id: &str,
) -> Result<FarmCa, FarmSetupError> {
    // The store and the files are read and written on the blocking pool.
    let (h, s, first) = (home.clone(), store.clone(), farm.seeds.is_empty());
    let local = blocking(move || {
        let farm_id = s
            .meta_get("farm_id")?
            .ok_or_else(|| FarmSetupError::Task("the store holds no farm ID".into()))?;
        if let Some(ca) = FarmCa::load(h.root(), &farm_id)? {
            return Ok(Some(ca));
        }
        if !first {
            return Ok(None);
        }
        let ca = FarmCa::create(&farm_id)?;
        ca.save(h.root())?;
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
            match client::join_node(seed, &farm.secret, node_id, &digests).await {
                Ok(identity) => {
                    let (h, s) = (home.clone(), store.clone());
                    return blocking(move || adopt(&h, &s, identity)).await;
                }
                Err(e) if e.is_refusal() => return Err(e.into()),
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(FarmSetupError::NoSeed {
        secs: JOIN_PATIENCE.as_secs(),
        last,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FarmSetupError> + Send + 'static,
) -> Result<T, FarmSetupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FarmSetupError::Task(e.to_string()))?
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FarmSetupError + '_ {
    move |source| FarmSetupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn adopt(home: &Home, store: &Store, id: FarmIdentity) -> Result<FarmCa, FarmSetupError> {
    let key = russh::keys::decode_secret_key(&id.upstream_key, None)
        .map_err(|e| FarmSetupError::UpstreamKey(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| FarmSetupError::UpstreamKey(e.to_string()))?;
    let key_path = home.upstream_key();
    write_atomic(&key_path, id.upstream_key.as_bytes(), 0o600).map_err(io(&key_path))?;
    let pub_path = key_path.with_extension("pub");
    write_atomic(&pub_path, format!("{public}\n").as_bytes(), 0o644).map_err(io(&pub_path))?;
    store.meta_put("farm_id", &id.farm_id)?;
    let ca = FarmCa {
        farm_id: id.farm_id.clone(),
        key_pem: id.ca_key,
    };
    ca.save(home.root())?;
    tracing::info!(farm_id = %id.farm_id, "joined the farm: farm identity and upstream key taken on");
    Ok(ca)
}

/// This node's farm credentials, in PEM: the CA certificate, its own certificate and key.
pub struct Credentials {
    /// The farm CA certificate.
    pub ca_pem: String,
    /// This node's certificate (naming `<node ID>.nodes.mirrorfarm`).
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
    /// Where they are kept for git.
    pub files: CertFiles,
    /// The upstream key (handed to joining nodes).
    pub upstream_key: String,
}

/// Issues this node a farm certificate and writes what git presents and trusts when it fetches
/// from another member (`<home>/farm/ca.pem`, `trust/ca.pem`, `node.pem`, `node.key` 0600).
pub async fn credentials(
    home: &Home,
    ca: &FarmCa,
    node_id: &str,
) -> Result<Credentials, FarmSetupError> {
    let (home, ca, node_id) = (home.clone(), ca.clone(), node_id.to_owned());
    blocking(move || {
        let (cert_pem, key_pem) = ca.issue(&node_id)?;
        let ca_pem = ca.cert_pem()?;
        let dir = home.root().join("farm");
        let files = CertFiles {
            ca: dir.join("ca.pem"),
            ca_dir: dir.join("trust"),
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
        };
        std::fs::create_dir_all(&files.ca_dir).map_err(io(&files.ca_dir))?;
        let in_dir = files.ca_dir.join("ca.pem");
        for (path, bytes, mode) in [
            (&files.ca, &ca_pem, 0o644),
            (&in_dir, &ca_pem, 0o644),
            (&files.cert, &cert_pem, 0o644),
            (&files.key, &key_pem, 0o600),
        ] {
            write_atomic(path, bytes.as_bytes(), mode).map_err(io(path))?;
        }
        let key_path = home.upstream_key();
        let upstream_key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        Ok(Credentials {
            ca_pem,
            cert_pem,
            key_pem,
            files,
            upstream_key,
        })
    })
    .await
}
