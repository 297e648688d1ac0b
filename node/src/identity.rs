//! The node's identity: node ID and farm ID (in the store), the farm's upstream key and the SSH
//! host key (files under `<home>/keys`, created on first start and kept).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

use crate::home::Home;
use crate::store::{Store, StoreError};

/// Identity errors.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key file could not be written or read.
    #[error("{path}: {message}")]
    Key {
        /// Key file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Who this node is and which farm it belongs to.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Unique per node (per home).
    pub node_id: String,
    /// Unique per farm; the upstream authorizes the farm.
    pub farm_id: String,
    /// The farm's upstream public key, OpenSSH one-line format.
    pub public_key: String,
}

/// A random ID shaped like a UUID (8-4-4-4-12 hex digits).
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("the OS random source is available");
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Identity {
    /// Loads the identity, creating what is missing (first start).
    pub fn load_or_create(home: &Home, store: &Store) -> Result<Self, IdentityError> {
        let node_id = get_or_init(store, "node_id")?;
        let farm_id = get_or_init(store, "farm_id")?;
        let key = ensure_key(&home.upstream_key(), &format!("mirrorfarm-{farm_id}"))?;
        ensure_key(&home.host_key(), &format!("mirrorfarm-host-{node_id}"))?;
        let public_key = key
            .public_key()
            .to_openssh()
            .map_err(|e| key_err(&home.upstream_key(), e))?;
        Ok(Self {
            node_id,
            farm_id,
            public_key,
        })
    }
}

fn get_or_init(store: &Store, key: &str) -> Result<String, StoreError> {
    if let Some(v) = store.meta_get(key)? {
        return Ok(v);
    }
    let v = random_id();
    store.meta_put(key, &v)?;
    Ok(v)
}

fn key_err(path: &Path, e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Loads the Ed25519 key at `path`, or creates it (0600, with a `.pub` beside it).
pub fn ensure_key(path: &Path, comment: &str) -> Result<PrivateKey, IdentityError> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(|e| key_err(path, e));
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).expect("the OS random source is available");
    let pair = KeypairData::from(Ed25519Keypair::from_seed(&seed));
    let key = PrivateKey::new(pair, comment).map_err(|e| key_err(path, e))?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_err(path, e))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| key_err(path, e))?;
    write_atomic(path, text.as_bytes(), 0o600).map_err(|e| key_err(path, e))?;
    let pub_path = path.with_extension("pub");
    write_atomic(&pub_path, format!("{public}\n").as_bytes(), 0o644)
        .map_err(|e| key_err(&pub_path, e))?;
    Ok(key)
}

/// Writes a file through a temporary name and a rename, so readers never see half of it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        home.prepare().expect("prepare");
        let store = Store::open(&home.data_dir()).expect("store");
        let a = Identity::load_or_create(&home, &store).expect("create");
        let b = Identity::load_or_create(&home, &store).expect("load");
        assert_eq!(a.node_id, b.node_id);
        assert_eq!(a.public_key, b.public_key);
        assert!(a.public_key.starts_with("ssh-ed25519 "), "{}", a.public_key);
        let mode = std::fs::metadata(home.upstream_key())
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
