//! The inventory: which repositories to mirror (`mirror.repos` plus every repository of the
//! projects `mirror.projects` selects, or of all of them with `*`), re-listed at every reconcile
//! from the forge's API, the grokmirror manifest or the `file://` tree. A project whose listing
//! fails keeps its last listing (a forge that is down never makes mirrors go); one the upstream
//! no longer has (404) is listed empty. Also the cached listing of every upstream project that
//! the admin's search asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::config::{Config, Projects};
use crate::forge::manifest::{self, Fetched, Manifest};
use crate::forge::{Forge, ForgeError, UpstreamProject, UpstreamRepo};
use crate::names::{ProjectKey, RepoId};
use crate::selection::Selection;

/// Projects listed at once.
const CONCURRENT_PROJECTS: usize = 4;

/// Where the listing comes from.
enum Source {
    /// The forge's API.
    Forge(Forge),
    /// A grokmirror manifest.
    Manifest {
        client: reqwest::Client,
        url: String,
    },
    /// A `file://` tree.
    Files(PathBuf),
    /// Nothing can be listed: `mirror.repos` only.
    None,
}

/// The repositories to mirror, each with the upstream's fingerprint of its refs when known.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// The repositories.
    pub repos: BTreeMap<RepoId, Option<String>>,
    /// Every selected project was listed (now, or at a listing before that this one keeps): a
    /// repository missing from it may go. `false` after a failure with nothing listed before —
    /// a node restarted while its forge is down — when nothing must be removed.
    pub complete: bool,
    /// The admin page's selection it was listed with (`<written ms>:<member>`; none: the file's).
    pub selection: Option<String>,
}

#[derive(Default)]
struct Listed {
    /// Each project's repositories as last listed.
    by_project: BTreeMap<ProjectKey, Vec<UpstreamRepo>>,
    /// The forge's projects as last listed (for `*`).
    all: Option<Vec<ProjectKey>>,
    /// The last manifest.
    manifest: Option<Manifest>,
    /// The last listing's result, and when it started.
    last: Option<(Instant, Wanted)>,
}

/// The upstream's projects, as the admin's search sees them.
#[derive(Debug, Clone)]
pub struct ProjectList {
    /// The projects, by key.
    pub projects: Arc<Vec<UpstreamProject>>,
    /// When they were listed (Unix ms).
    pub listed_at_ms: i64,
    /// The last try to list them failed: why (the list is the one before).
    pub error: Option<String>,
}

/// Whether `projects` selects `project` (a GitLab subgroup's repositories belong to the group
/// selected).
fn selects(projects: &Projects, project: &ProjectKey) -> bool {
    match projects {
        Projects::None => false,
        Projects::All => true,
        Projects::Some(keys) => keys.iter().any(|k| {
            project == k
                || project
                    .as_str()
                    .strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        }),
    }
}

/// The node's inventory.
pub struct Inventory {
    source: Source,
    /// What to mirror (read at every listing: the admin page may change it).
    chosen: Arc<Selection>,
    listed: tokio::sync::Mutex<Listed>,
    projects: tokio::sync::Mutex<Option<(Instant, ProjectList)>>,
    projects_ttl: Duration,
    /// Repositories a webhook named that the listing did not hold, and when a re-list was asked
    /// for them (one per [`UNLISTED_RELIST`] each).
    unlisted: parking_lot::Mutex<BTreeMap<RepoId, Instant>>,
}

/// How often a webhook naming the same unlisted repository may make the farm list again.
const UNLISTED_RELIST: Duration = Duration::from_secs(60);

impl Inventory {
    /// The inventory for `config`, asking `forge` when there is one.
    pub fn new(
        config: &Config,
        forge: Option<Forge>,
        chosen: Arc<Selection>,
    ) -> Result<Self, ForgeError> {
        let source = if let Some(f) = forge {
            Source::Forge(f)
        } else if let Some(url) = &config.forge.manifest_url {
            let client =
                crate::access::upstream_check::http_client(config.auth.ca_file.as_deref(), 3)
                    .map_err(|e| ForgeError::Client(e.to_string()))?;
            Source::Manifest {
                client,
                url: url.clone(),
            }
        } else if let Some(root) = config.upstream.listable_root() {
            Source::Files(root.to_owned())
        } else {
            Source::None
        };
        Ok(Self {
            source,
            chosen,
            listed: tokio::sync::Mutex::new(Listed::default()),
            projects: tokio::sync::Mutex::new(None),
            projects_ttl: config.sync_interval.min(Duration::from_secs(300)),
            unlisted: parking_lot::Mutex::new(BTreeMap::new()),
        })
    }

    /// The forge's API, when the upstream is a forge.
    pub fn forge(&self) -> Option<&Forge> {
        match &self.source {
            Source::Forge(f) => Some(f),
            _ => None,
        }
    }

    /// Whether the repositories to mirror come from the upstream (`mirror.projects` is set), so a
    /// farm lists them once for every member.
    pub fn lists_upstream(&self) -> bool {
        self.chosen.chosen().0.projects != Projects::None
    }

    /// The repositories to mirror, from a listing that started at `since` or later (one under way
    /// or just done serves every caller that asked before it started).
    pub async fn wanted_since(&self, since: Instant) -> Wanted {
        let mut listed = self.listed.lock().await;
        let selection = crate::selection::seen_text(&self.chosen.seen());
        if let Some((at, w)) = &listed.last {
            // A listing of another selection (the admin page changed it since) is of no use.
            if *at >= since && w.selection == selection {
                return w.clone();
            }
        }
        let started = Instant::now();
        let w = self.list(&mut listed).await;
        listed.last = Some((started, w.clone()));
        w
    }

    async fn list(&self, listed: &mut Listed) -> Wanted {
        let selection = crate::selection::seen_text(&self.chosen.seen());
        let (chosen, _) = self.chosen.chosen();
        let mut out = Wanted {
            repos: chosen.repos.iter().map(|r| (r.clone(), None)).collect(),
            complete: true,
            selection,
        };
        if chosen.projects == Projects::None {
            return out;
        }
        match &self.source {
            Source::None => {}
            Source::Forge(forge) => {
                out.complete = list_forge(forge, &chosen.projects, listed).await;
            }
            Source::Manifest { client, url } => {
                if let Err(e) = refresh_manifest(client, url, listed).await {
                    tracing::warn!(error = %e, "cannot read the upstream's manifest; keeping the last listing");
                    out.complete = listed.manifest.is_some();
                }
                if let Some(m) = &listed.manifest {
                    listed.by_project = group(m.repos.iter().cloned());
                }
            }
            Source::Files(root) => {
                let root = root.clone();
                let selection = chosen.projects.clone();
                match tokio::task::spawn_blocking(move || list_files(&root, &selection)).await {
                    Ok(by_project) => listed.by_project = by_project,
                    Err(e) => {
                        tracing::error!(error = %e, "listing the upstream's directories failed");
                        out.complete = false;
                    }
                }
            }
        }
        for (project, repos) in &listed.by_project {
            if selects(&chosen.projects, project) {
                for r in repos {
                    out.repos.insert(r.id.clone(), r.fingerprint.clone());
                }
            }
        }
        out
    }

    /// Whether a webhook naming `id`, which is not mirrored, should make the farm list again: the
    /// selection would hold it (created upstream since the last listing), and no webhook asked
    /// for it in the last minute (a repository the token cannot see is not listed however often
    /// its pushes are announced).
    pub fn relist_for_unlisted(&self, id: &RepoId) -> bool {
        let (chosen, _) = self.chosen.chosen();
        if !(chosen.repos.contains(id) || selects(&chosen.projects, &id.project)) {
            return false;
        }
        let mut asked = self.unlisted.lock();
        asked.retain(|_, at| at.elapsed() < UNLISTED_RELIST);
        if asked.contains_key(id) || asked.len() >= 10_000 {
            return false;
        }
        asked.insert(id.clone(), Instant::now());
        true
    }

    /// The upstream's projects, from a listing at most a few minutes old (listed again when
    /// older; the last one stays when that fails).
    pub async fn projects(&self) -> Result<ProjectList, ForgeError> {
        let mut cache = self.projects.lock().await;
        if let Some((at, list)) = cache.as_ref() {
            if at.elapsed() < self.projects_ttl {
                return Ok(list.clone());
            }
        }
        let fresh = self.list_projects().await;
        let now_ms = crate::store::now_ms();
        let list = match (fresh, cache.take()) {
            (Ok(p), _) => ProjectList {
                projects: Arc::new(p),
                listed_at_ms: now_ms,
                error: None,
            },
            (Err(e), Some((_, mut old))) => {
                old.error = Some(e.to_string());
                old
            }
            (Err(e), None) => return Err(e),
        };
        *cache = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    async fn list_projects(&self) -> Result<Vec<UpstreamProject>, ForgeError> {
        let keys: BTreeSet<String> = match &self.source {
            Source::Forge(f) => return f.projects().await,
            Source::None => BTreeSet::new(),
            Source::Files(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || dir_names(&root))
                    .await
                    .map_err(|e| ForgeError::Shape("file://".into(), e.to_string()))?
                    .into_iter()
                    .filter(|n| ProjectKey::parse(n).is_ok())
                    .collect()
            }
            Source::Manifest { client, url } => {
                let mut listed = self.listed.lock().await;
                refresh_manifest(client, url, &mut listed).await?;
                let Some(m) = listed.manifest.as_ref() else {
                    return Ok(Vec::new());
                };
                m.repos
                    .iter()
                    .map(|r| r.id.project.as_str().to_owned())
                    .collect()
            }
        };
        Ok(keys
            .into_iter()
            .map(|k| UpstreamProject {
                name: k.clone(),
                key: k,
            })
            .collect())
    }
}

/// Reads the manifest again unless it was not modified since.
async fn refresh_manifest(
    client: &reqwest::Client,
    url: &str,
    listed: &mut Listed,
) -> Result<(), ForgeError> {
    let since = listed
        .manifest
        .as_ref()
        .and_then(|m| m.last_modified.clone());
    if let Fetched::New(m) = manifest::fetch(client, url, since.as_deref()).await? {
        listed.manifest = Some(m);
    }
    Ok(())
}

/// Groups repositories by project.
fn group(repos: impl Iterator<Item = UpstreamRepo>) -> BTreeMap<ProjectKey, Vec<UpstreamRepo>> {
    let mut out: BTreeMap<ProjectKey, Vec<UpstreamRepo>> = BTreeMap::new();
    for r in repos {
        out.entry(r.id.project.clone()).or_default().push(r);
    }
    out
}

/// Lists the selected projects' repositories into `listed`; whether every one was listed (now,
/// or before and kept).
async fn list_forge(forge: &Forge, selection: &Projects, listed: &mut Listed) -> bool {
    let mut complete = true;
    let projects: Vec<ProjectKey> = match selection {
        Projects::None => return true,
        Projects::Some(p) => p.iter().cloned().collect(),
        Projects::All => match forge.projects().await {
            Ok(all) => {
                let keys: Vec<ProjectKey> = all
                    .iter()
                    .filter_map(|p| ProjectKey::parse(&p.key).ok())
                    // GitLab lists subgroups too: their repositories come with their group's.
                    .filter(|k| {
                        !all.iter()
                            .any(|o| k.as_str().starts_with(&format!("{}/", o.key)))
                    })
                    .collect();
                listed.all = Some(keys.clone());
                keys
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the upstream's projects; keeping the last listing");
                complete &= listed.all.is_some();
                listed.all.clone().unwrap_or_default()
            }
        },
    };
    type Listing = Result<Option<Vec<UpstreamRepo>>, ForgeError>;
    let results: Vec<(ProjectKey, Listing)> = stream::iter(projects)
        .map(|p| async move {
            let r = forge.repos(&p).await;
            (p, r)
        })
        .buffer_unordered(CONCURRENT_PROJECTS)
        .collect()
        .await;
    let mut next: BTreeMap<ProjectKey, Vec<UpstreamRepo>> = BTreeMap::new();
    for (project, result) in results {
        match result {
            Ok(Some(repos)) => {
                for (k, v) in group(repos.into_iter()) {
                    next.entry(k).or_default().extend(v);
                }
                next.entry(project).or_default();
            }
            Ok(None) => {
                tracing::warn!(
                    project = project.as_str(),
                    "the upstream has no such project (or the token cannot see it)"
                );
                next.insert(project, Vec::new());
            }
            Err(e) => {
                tracing::warn!(project = project.as_str(), error = %e, "cannot list a project's repositories; keeping its last listing");
                complete &= listed.by_project.contains_key(&project);
                for (k, v) in &listed.by_project {
                    if k == &project || k.as_str().starts_with(&format!("{}/", project.as_str())) {
                        next.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    listed.by_project = next;
    complete
}

/// Lists a `file://` tree: top directories are projects, `*.git` directories in them
/// repositories. Blocking: run on the blocking pool.
fn list_files(root: &Path, selection: &Projects) -> BTreeMap<ProjectKey, Vec<UpstreamRepo>> {
    let projects: Vec<ProjectKey> = match selection {
        Projects::None => return BTreeMap::new(),
        Projects::Some(p) => p.iter().cloned().collect(),
        Projects::All => dir_names(root)
            .into_iter()
            .filter_map(|n| ProjectKey::parse(&n).ok())
            .collect(),
    };
    let mut out = BTreeMap::new();
    for p in projects {
        let repos = dir_names(&root.join(p.as_str()))
            .into_iter()
            .filter_map(|name| {
                let slug = name.strip_suffix(".git")?;
                crate::forge::slug(p.as_str(), slug)
            })
            .collect();
        out.insert(p, repos);
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
