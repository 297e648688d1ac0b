//! One bare mirror repository on disk: creation with the node's settings, recovery after a crash,
//! reading ref maps, and flipping the visible refs to a new state in one atomic step.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::gitcmd::{self, GitError};
use crate::names::RefName;
use crate::packed_refs::{self, RefMap};

mod refs;
pub use refs::RefSets;

/// Hidden namespace: not advertised to clients (`uploadpack.hideRefs`).
pub const HIDDEN: &str = "refs/mirrorfarm/";
/// Where the upstream's refs land during a fetch.
pub const STAGING: &str = "refs/mirrorfarm/staging/";
/// Where the upstream's HEAD lands during a fetch.
pub const STAGING_HEAD: &str = "refs/mirrorfarm/staging-head";
/// Where the previous visible state is kept (so a stateless fetch negotiated against it still works).
pub const PREVIOUS: &str = "refs/mirrorfarm/previous/";
/// Where the state before the previous one is kept (in a farm, a member may still advertise it
/// for a moment while this one is two flips on).
pub const OLDER: &str = "refs/mirrorfarm/older/";

const CONFIG: &str = "[core]
\trepositoryformatversion = 0
\tfilemode = true
\tbare = true
\tlogAllRefUpdates = false
\tfsync = objects,derived-metadata,reference
[gc]
\tauto = 0
\tautoDetach = false
[uploadpack]
\thideRefs = refs/mirrorfarm
\tallowTipSHA1InWant = true
\tallowFilter = true
[repack]
\twriteBitmaps = true
[pack]
\twriteBitmapHashCache = true
[receive]
\tdenyCurrentBranch = refuse
";

/// Errors about a mirror repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// Path concerned.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// git listed a ref whose name is not UTF-8.
    #[error("{path}: git listed a ref name that is not UTF-8")]
    NonUtf8Ref {
        /// The repository.
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

const LOCAL: Duration = Duration::from_secs(600);

/// Runs `f` (file work on the repository at `path`) on the blocking pool: one trip for several
/// file operations rather than one each.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> Result<T, RepoError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io(path)(std::io::Error::other(e)))?
}

/// The HEAD `git init` writes.
const INIT_HEAD: &str = "ref: refs/heads/master\n";

/// Writes a bare repository with the node's settings at `path`, through a temporary directory.
fn create_layout(path: &Path) -> Result<(), RepoError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = path.with_extension("git.creating");
    match std::fs::remove_dir_all(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    // What git needs to take a directory for a repository (with HEAD); it makes the rest of
    // what `git init` makes (objects/pack, refs/heads, …) when it first writes there. A
    // directory less is a system call less per repository, and one less to read when its size
    // is counted.
    for d in [tmp.clone(), tmp.join("objects"), tmp.join("refs")] {
        std::fs::create_dir(&d).map_err(io(&d))?;
    }
    // What `git init` names before the first sync chooses the upstream's branch.
    std::fs::write(tmp.join("HEAD"), INIT_HEAD).map_err(io(&tmp))?;
    std::fs::write(tmp.join("config"), CONFIG).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A bare mirror repository.
#[derive(Debug, Clone)]
pub struct MirrorRepo {
    path: PathBuf,
}

impl MirrorRepo {
    /// The repository at `path` (which may not exist yet).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates it when it does not exist yet (in a temporary directory renamed into place, so a
    /// half-made repository never appears: the least of the layout `git init --bare` makes, with
    /// the node's settings, written here rather than by a process of its own), and reads the branch HEAD
    /// names: what a sync needs before its fetch, on one trip to the blocking pool (the fetch
    /// leaves HEAD as it is).
    pub async fn prepare(&self) -> Result<Option<String>, RepoError> {
        let path = self.path.clone();
        blocking(&self.path, move || {
            if !path.join("config").is_file() {
                create_layout(&path)?;
            }
            let head = match std::fs::read_to_string(path.join("HEAD")) {
                Ok(h) => h,
                // Without HEAD, git takes the directory for no repository and every sync of it
                // fails: it gets `git init`'s HEAD back, and the sync's flip names the
                // upstream's branch (none is named here now).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    packed_refs::replace_head(&path, INIT_HEAD.as_bytes()).map_err(io(&path))?;
                    return Ok(None);
                }
                Err(e) => return Err(io(&path)(e)),
            };
            Ok(refs::symref_target(&head))
        })
        .await
    }

    /// Removes what a killed process can leave behind: stale lock files, temporary packs and
    /// objects, and quarantine directories. Only call while no git process works on this repository.
    pub fn recover(&self) -> Result<usize, RepoError> {
        let mut removed = 0;
        let mut stack = vec![self.path.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                let ft = entry.file_type().map_err(io(&path))?;
                let stale = name.ends_with(".lock")
                    || name.starts_with("tmp_")
                    || name.starts_with("incoming-");
                if stale {
                    if ft.is_dir() {
                        std::fs::remove_dir_all(&path).map_err(io(&path))?;
                    } else {
                        std::fs::remove_file(&path).map_err(io(&path))?;
                    }
                    removed += 1;
                } else if ft.is_dir() {
                    stack.push(path);
                }
            }
        }
        Ok(removed)
    }

    /// Keeps the repository fast to serve: packs consolidated with a reachability bitmap
    /// (geometric repacking into a multi-pack index on git ≥ 2.34, a full repack before) and a
    /// commit-graph. Call only while no fetch runs on this repository: every object any ref
    /// (visible, staged or previous) reaches is kept, and geometric repacking removes nothing.
    pub async fn maintain(&self, git: (u32, u32, u32)) -> Result<(), RepoError> {
        let repack: &[&str] = if git >= (2, 34, 0) {
            &[
                "repack",
                "-d",
                "-q",
                "--geometric=2",
                "--write-midx",
                "--write-bitmap-index",
            ]
        } else {
            &["repack", "-a", "-d", "-q", "-b"]
        };
        let graph: &[&str] = if git >= (2, 27, 0) {
            &[
                "commit-graph",
                "write",
                "--reachable",
                "--changed-paths",
                "--no-progress",
            ]
        } else if git >= (2, 18, 0) {
            &["commit-graph", "write", "--reachable"]
        } else {
            &[]
        };
        let steps: Vec<&[&str]> = [repack, graph]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        gitcmd::run_in_turn(&self.path, &steps, LOCAL).await?;
        Ok(())
    }

    /// Makes `visible` the repository's advertised state in one atomic step, keeping `current`
    /// (the state it replaces) hidden under [`PREVIOUS`] and `previous` (the refs now under
    /// [`PREVIOUS`], full names) under [`OLDER`], then points HEAD at `head` (from
    /// `current_head`, what it names now) — both files written on one trip to the blocking pool.
    pub async fn apply(
        &self,
        visible: &RefMap,
        current: &RefMap,
        previous: &RefMap,
        head: Option<&RefName>,
        current_head: Option<&str>,
    ) -> Result<(), RepoError> {
        let mut hidden = RefMap::new();
        for (name, v) in current {
            if let Some(n) = RefName::parse(&format!("{PREVIOUS}{}", name.as_str())) {
                hidden.insert(n, v.clone());
            }
        }
        for (name, v) in previous {
            let Some(rest) = name.as_str().strip_prefix(PREVIOUS) else {
                continue;
            };
            if let Some(n) = RefName::parse(&format!("{OLDER}{rest}")) {
                hidden.insert(n, v.clone());
            }
        }
        let content = packed_refs::render(visible, &hidden);
        let new_head = head
            .filter(|h| current_head != Some(h.as_str()))
            .map(|h| h.as_str().to_owned());
        let path = self.path.clone();
        blocking(&self.path, move || {
            packed_refs::replace_with_head(&path, &content, new_head.as_deref()).map_err(io(&path))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_created_repository_is_one_git_takes_with_the_node_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = MirrorRepo::new(dir.path().join("P/r.git"));
        // A leftover of a creation cut short is replaced.
        std::fs::create_dir_all(dir.path().join("P/r.git.creating/junk")).expect("mkdir");
        assert_eq!(
            repo.prepare().await.expect("prepare").as_deref(),
            Some("refs/heads/master")
        );
        assert!(repo.path().join("config").is_file());
        assert!(!dir.path().join("P/r.git.creating").exists());
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(repo.path())
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("git runs");
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        assert_eq!(git(&["rev-parse", "--is-bare-repository"]).trim(), "true");
        assert_eq!(
            git(&["config", "uploadpack.hideRefs"]).trim(),
            "refs/mirrorfarm"
        );
        assert_eq!(git(&["symbolic-ref", "HEAD"]).trim(), "refs/heads/master");
        // Objects and refs can be written: a ref to a new (empty) blob.
        let blob = git(&["hash-object", "-w", "--stdin"]);
        git(&["update-ref", "refs/x", blob.trim()]);
        assert_eq!(
            git(&["for-each-ref", "--format=%(objectname) %(refname)"]),
            format!("{} refs/x\n", blob.trim())
        );
        // A mirror that lost its HEAD is a repository again, naming no branch until the flip.
        std::fs::remove_file(repo.path().join("HEAD")).expect("rm HEAD");
        assert_eq!(repo.prepare().await.expect("prepare again"), None);
        assert!(!repo.path().join("HEAD.lock").exists(), "no lock left");
        assert_eq!(git(&["rev-parse", "--is-bare-repository"]).trim(), "true");
        assert_eq!(
            git(&["for-each-ref", "--format=%(refname)"]),
            "refs/x\n",
            "nothing it held is lost"
        );
    }
}
