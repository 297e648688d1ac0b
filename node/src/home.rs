//! The node's home directory: its layout, and the lock that keeps a second node out.
//!
//! ```text
//! <home>/mirrorfarm.properties   configuration (read-only to the node)
//! <home>/.lock                   held (flock) while a node runs on this home
//! <home>/data/                   heed (LMDB) state store: identity, repo list, generations, sync results
//! <home>/keys/upstream_ed25519   farm key used to fetch from the upstream (+ .pub)
//! <home>/keys/ssh_host_ed25519   host key of the node's SSH server
//! <home>/ssh/known_hosts         the upstream's pinned host key
//! <home>/repos/<PROJECT>/<repo>.git   bare mirror repositories
//! <home>/cache/packs/            cached upload-pack responses (emptied at start)
//! <home>/farm/ca.key             the farm CA key (farm members only)
//! <home>/logs/node.log           log file (also written to stderr)
//! ```

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Errors about the home directory.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Another process holds the lock.
    #[error("{0}: another mirrorfarm node is already running on this home (lock held)")]
    Locked(PathBuf),
    /// A file or directory could not be created or opened.
    #[error("{path}: {source}")]
    Io {
        /// Path concerned.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Paths inside a home.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home at `root` (must exist: it holds the configuration).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
    /// The home itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The state store directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    /// Key directory.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// The upstream (farm) private key.
    pub fn upstream_key(&self) -> PathBuf {
        self.keys_dir().join("upstream_ed25519")
    }
    /// The SSH server's host key.
    pub fn host_key(&self) -> PathBuf {
        self.keys_dir().join("ssh_host_ed25519")
    }
    /// The known_hosts file pinning the upstream.
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("ssh").join("known_hosts")
    }
    /// Root of the mirror repositories.
    pub fn repos_dir(&self) -> PathBuf {
        self.root.join("repos")
    }
    /// The LFS object store (`objects/…`, kept across restarts).
    pub fn lfs_dir(&self) -> PathBuf {
        self.root.join("lfs")
    }
    /// Cache directory (emptied at start).
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// Log directory.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Creates the directories the node writes to (mode 0700 for keys).
    pub fn prepare(&self) -> Result<(), HomeError> {
        for d in [
            self.data_dir(),
            self.keys_dir(),
            self.root.join("ssh"),
            self.repos_dir(),
            self.logs_dir(),
        ] {
            std::fs::create_dir_all(&d).map_err(|source| HomeError::Io {
                path: d.clone(),
                source,
            })?;
        }
        use std::os::unix::fs::PermissionsExt;
        for d in [self.keys_dir(), self.root.join("ssh")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(|source| HomeError::Io { path: d, source })?;
        }
        Ok(())
    }

    /// Takes the home's lock; it is held until the returned guard is dropped (or the process dies).
    pub fn lock(&self) -> Result<HomeLock, HomeError> {
        let path = self.root.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| HomeError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(HomeLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(HomeError::Locked(self.root.clone())),
            Err(std::fs::TryLockError::Error(source)) => Err(HomeError::Io { path, source }),
        }
    }
}

/// Holds the home's lock while alive.
#[derive(Debug)]
pub struct HomeLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        let first = home.lock().expect("first lock");
        assert!(matches!(home.lock(), Err(HomeError::Locked(_))));
        drop(first);
        // A process another test starts at this moment holds a copy of the descriptor until its
        // exec closes it (flock locks belong to the open file, not the descriptor): wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match home.lock() {
                Ok(_) => break,
                Err(HomeError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("lock again after release: {e:?}"),
            }
        }
    }
}
