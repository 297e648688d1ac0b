//! What the farm mirrors: the properties file's `mirror.projects` and `mirror.repos`, unless an
//! admin wrote a selection on the admin page — then that one, on every member (replicated by
//! `farm::selection`, kept in the store, surviving restarts) until an admin sets it back to the
//! file's. The newest record wins.

use std::collections::BTreeSet;

use mirrorfarm_common::farm::selection::SelectionRecord;
use parking_lot::RwLock;

use crate::config::{Config, Projects};
use crate::names::{ProjectKey, RepoId};
use crate::store::{Store, StoreError};

/// The store's key for the page's selection.
const META_KEY: &str = "selection";

/// Why a selection was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    /// A project key or repository that is not one.
    #[error("{0:?} is not a project key or repository (PROJECT/repo)")]
    Name(String),
    /// `*` with other projects.
    #[error("`*` (every project) stands alone")]
    AllWithOthers,
    /// Keeping it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored record.
    #[error("the stored selection is unreadable: {0}")]
    Stored(#[from] serde_json::Error),
}

/// Projects and repositories to mirror, read from a record or the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Projects.
    pub projects: Projects,
    /// Single repositories.
    pub repos: BTreeSet<RepoId>,
}

/// Reads a record's names.
pub fn chosen(r: &SelectionRecord) -> Result<Chosen, SelectionError> {
    let projects = if r.projects.iter().any(|p| p == "*") {
        if r.projects.len() > 1 {
            return Err(SelectionError::AllWithOthers);
        }
        Projects::All
    } else if r.projects.is_empty() {
        Projects::None
    } else {
        let keys = r
            .projects
            .iter()
            .map(|p| ProjectKey::parse(p).map_err(|_| SelectionError::Name(p.clone())))
            .collect::<Result<BTreeSet<_>, _>>()?;
        Projects::Some(keys)
    };
    let repos = r
        .repos
        .iter()
        .map(|s| RepoId::parse(s).map_err(|_| SelectionError::Name(s.clone())))
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(Chosen { projects, repos })
}

/// A record of `chosen` (names as the file writes them).
pub fn record_of(chosen: &Chosen, written_by: &str, node_id: &str, now_ms: i64) -> SelectionRecord {
    SelectionRecord {
        projects: match &chosen.projects {
            Projects::None => Vec::new(),
            Projects::All => vec!["*".into()],
            Projects::Some(keys) => keys.iter().map(|k| k.as_str().to_owned()).collect(),
        },
        repos: chosen.repos.iter().map(|r| r.to_string()).collect(),
        from_file: false,
        written_ms: now_ms,
        written_by: written_by.to_owned(),
        node_id: node_id.to_owned(),
    }
}

/// Which record a page showed: `(written_ms, member)`, or none (the file's).
pub type Seen = Option<(i64, String)>;

/// A [`Seen`] as the farm's listing names it: `<written ms>:<member>`.
pub fn seen_text(seen: &Seen) -> Option<String> {
    seen.as_ref().map(|(ms, node)| format!("{ms}:{node}"))
}

/// Why a change from the page was not made.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The selection changed since the page showed it.
    #[error("the selection changed since the page showed it (another admin, or another tab): look again")]
    Stale,
    /// The change makes no sense as it stands.
    #[error("{0}")]
    Refused(String),
    /// The record, or keeping it.
    #[error(transparent)]
    Selection(#[from] SelectionError),
}

/// The selection in force on this node.
pub struct Selection {
    file: Chosen,
    current: RwLock<Option<SelectionRecord>>,
    /// Writers one at a time; the store is written under this lock, not under `current`'s.
    writing: parking_lot::Mutex<()>,
    store: Store,
    /// Woken when the selection changed (the farm carries it).
    pub changed: tokio::sync::Notify,
}

impl Selection {
    /// The file's selection and the page's record kept in `store`, if any.
    pub fn load(config: &Config, store: &Store) -> Result<Self, SelectionError> {
        let current = match store.meta_get(META_KEY)? {
            Some(json) => {
                let r: SelectionRecord = serde_json::from_str(&json)?;
                if !r.from_file {
                    chosen(&r)?;
                }
                Some(r)
            }
            None => None,
        };
        Ok(Self {
            file: Chosen {
                projects: config.projects.clone(),
                repos: config.repos.clone(),
            },
            current: RwLock::new(current),
            writing: parking_lot::Mutex::new(()),
            store: store.clone(),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The page's record in force, if any (a record setting the file's back counts too).
    pub fn record(&self) -> Option<SelectionRecord> {
        self.current.read().clone()
    }

    /// Which record is in force, as a page shows it.
    pub fn seen(&self) -> Seen {
        self.current
            .read()
            .as_ref()
            .map(|r| (r.written_ms, r.node_id.clone()))
    }

    /// What to mirror now, and whether it is the file's.
    pub fn chosen(&self) -> (Chosen, bool) {
        match self.current.read().as_ref() {
            Some(r) if !r.from_file => match chosen(r) {
                Ok(c) => (c, false),
                Err(_) => (self.file.clone(), true),
            },
            _ => (self.file.clone(), true),
        }
    }

    /// The file's selection.
    pub fn file(&self) -> &Chosen {
        &self.file
    }

    /// Keeps `record` (the store first) and puts it in force; the caller holds `writing`.
    fn keep(&self, record: SelectionRecord) -> Result<(), SelectionError> {
        self.store
            .meta_put(META_KEY, &serde_json::to_string(&record)?)?;
        *self.current.write() = Some(record);
        self.changed.notify_one();
        Ok(())
    }

    /// Takes `record` (from another member) if it is valid and newer than the one in force;
    /// whether it was taken. Writes the store: call it off the async threads.
    pub fn offer(&self, record: SelectionRecord) -> Result<bool, SelectionError> {
        if !record.from_file {
            chosen(&record)?;
        }
        let _writing = self.writing.lock();
        if self
            .current
            .read()
            .as_ref()
            .is_some_and(|c| !record.newer_than(c))
        {
            return Ok(false);
        }
        self.keep(record)?;
        Ok(true)
    }

    /// Changes the selection the page showed (`seen`): `make` gets what is in force and the
    /// record, and returns the new record (or why not). Refused when another change came first.
    /// Writes the store: call it off the async threads.
    pub fn update(
        &self,
        seen: &Seen,
        make: impl FnOnce(&Chosen, Option<&SelectionRecord>) -> Result<SelectionRecord, String>,
    ) -> Result<SelectionRecord, UpdateError> {
        let _writing = self.writing.lock();
        if self.seen() != *seen {
            return Err(UpdateError::Stale);
        }
        let (now, _) = self.chosen();
        let current = self.record();
        let record = make(&now, current.as_ref()).map_err(UpdateError::Refused)?;
        if !record.from_file {
            chosen(&record)?;
        }
        self.keep(record.clone())?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(projects: &[&str], repos: &[&str], ms: i64) -> SelectionRecord {
        SelectionRecord {
            projects: projects.iter().map(|s| s.to_string()).collect(),
            repos: repos.iter().map(|s| s.to_string()).collect(),
            from_file: false,
            written_ms: ms,
            written_by: "alice".into(),
            node_id: "n1".into(),
        }
    }

    #[test]
    fn records_read_as_projects_and_repositories() {
        let c = chosen(&rec(&["*"], &["P/r"], 1)).expect("valid");
        assert_eq!(c.projects, Projects::All);
        assert_eq!(c.repos.len(), 1);
        let c = chosen(&rec(&["A", "group/sub"], &[], 1)).expect("valid");
        assert!(matches!(c.projects, Projects::Some(ref k) if k.len() == 2));
        assert_eq!(
            chosen(&rec(&[], &[], 1)).expect("valid").projects,
            Projects::None
        );
        assert!(matches!(
            chosen(&rec(&["*", "A"], &[], 1)),
            Err(SelectionError::AllWithOthers)
        ));
        assert!(matches!(
            chosen(&rec(&[], &["no-slash"], 1)),
            Err(SelectionError::Name(_))
        ));
        let back = record_of(
            &chosen(&rec(&["A"], &["P/r"], 1)).expect("valid"),
            "bob",
            "n2",
            5,
        );
        assert_eq!(
            (back.projects, back.repos),
            (vec!["A".to_owned()], vec!["P/r".to_owned()])
        );
    }
}
