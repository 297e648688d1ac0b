//! Which repositories to mirror: `mirror.repos` plus, for `mirror.projects`, what the upstream
//! lists (a `file://` upstream is listed by reading its directories).

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::{Config, Projects};
use crate::names::{ProjectKey, RepoId, RepoSlug};

/// Lists the repositories to mirror now. Blocking (reads directories): call on the blocking pool.
pub fn list(config: &Config) -> BTreeSet<RepoId> {
    let mut out = config.repos.clone();
    let Some(root) = config.upstream.listable_root() else {
        return out;
    };
    let projects: Vec<ProjectKey> = match &config.projects {
        Projects::None => return out,
        Projects::Some(p) => p.iter().cloned().collect(),
        Projects::All => dir_names(root)
            .into_iter()
            .filter_map(|n| ProjectKey::parse(&n).ok())
            .collect(),
    };
    for p in projects {
        for name in dir_names(&root.join(p.as_str())) {
            let Some(slug) = name.strip_suffix(".git") else {
                continue;
            };
            match RepoSlug::parse(slug) {
                Ok(repo) => {
                    out.insert(RepoId {
                        project: p.clone(),
                        repo,
                    });
                }
                Err(e) => {
                    tracing::warn!(project = p.as_str(), name, error = %e, "skipping an upstream repository with an unusable name")
                }
            }
        }
    }
    out
}

fn dir_names(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list upstream directory");
            Vec::new()
        }
    }
}
