//! Secrets read from files: the forge API token and the webhook secret. Each is read at start
//! and again on SIGHUP (a rotated token takes effect without a restart); none is ever logged,
//! gossiped or shown (`Debug` prints `***`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

/// A secret's text (surrounding whitespace dropped).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// A secret from its text.
    pub fn new(text: &str) -> Self {
        Self(Arc::from(text.trim()))
    }
    /// The text, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// It cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// It does not hold one token.
    #[error("{path} must hold one token of at least {MIN_LEN} characters (no spaces)")]
    Shape {
        /// File.
        path: PathBuf,
    },
}

/// The shortest secret accepted.
pub const MIN_LEN: usize = 8;

/// Reads a file holding one secret.
pub fn read_secret(path: &Path) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.to_owned(),
        source,
    })?;
    let t = text.trim();
    if t.chars().count() < MIN_LEN || t.contains(char::is_whitespace) {
        return Err(SecretError::Shape {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(t))
}

/// A secret kept from its file, re-read on demand (SIGHUP).
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
    current: RwLock<Secret>,
}

impl SecretFile {
    /// Reads the file now.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        Ok(Self {
            current: RwLock::new(read_secret(path)?),
            path: path.to_owned(),
        })
    }

    /// The secret as last read.
    pub fn get(&self) -> Secret {
        self.current.read().clone()
    }

    /// Reads the file again; on error the previous secret stays (and the error is returned).
    pub fn reload(&self) -> Result<bool, SecretError> {
        let s = read_secret(&self.path)?;
        let mut cur = self.current.write();
        let changed = *cur != s;
        *cur = s;
        Ok(changed)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The node's secret files (each `None` when its key is not set).
#[derive(Debug, Default)]
pub struct Secrets {
    /// `plugin.mirroring.upstream.api.tokenFile`.
    pub api_token: Option<Arc<SecretFile>>,
    /// `mirror.webhook.secretFile`.
    pub webhook: Option<Arc<SecretFile>>,
}

impl Secrets {
    /// Reads the configured files.
    pub fn load(forge: &crate::config::ForgeConfig) -> Result<Self, SecretError> {
        Ok(Self {
            api_token: forge
                .token_file
                .as_deref()
                .map(SecretFile::load)
                .transpose()?
                .map(Arc::new),
            webhook: forge
                .webhook_secret_file
                .as_deref()
                .map(SecretFile::load)
                .transpose()?
                .map(Arc::new),
        })
    }

    /// Reads every file again (SIGHUP); logs what changed and what could not be read.
    pub fn reload(&self) {
        for (name, f) in [
            ("api token", &self.api_token),
            ("webhook secret", &self.webhook),
        ] {
            let Some(f) = f else { continue };
            match f.reload() {
                Ok(true) => tracing::info!(file = %f.path().display(), "{name} re-read: changed"),
                Ok(false) => {
                    tracing::debug!(file = %f.path().display(), "{name} re-read: unchanged")
                }
                Err(e) => tracing::warn!(error = %e, "{name} not re-read; the previous one stays"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_checked_reloaded_and_never_printed() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("token");
        std::fs::write(&p, "short").expect("write");
        assert!(matches!(read_secret(&p), Err(SecretError::Shape { .. })));
        std::fs::write(&p, "glpat-0123456789\n").expect("write");
        let f = SecretFile::load(&p).expect("load");
        assert_eq!(f.get().expose(), "glpat-0123456789");
        assert_eq!(format!("{:?}", f.get()), "Secret(***)");
        std::fs::write(&p, "glpat-abcdefghij").expect("write");
        assert!(f.reload().expect("reload"));
        assert_eq!(f.get().expose(), "glpat-abcdefghij");
        std::fs::remove_file(&p).expect("rm");
        assert!(f.reload().is_err());
        assert_eq!(
            f.get().expose(),
            "glpat-abcdefghij",
            "the previous one stays"
        );
    }
}
