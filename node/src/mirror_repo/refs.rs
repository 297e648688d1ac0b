//! Reading a mirror's refs with one `git for-each-ref`: the visible ones (for serving), or every
//! set a sync needs — staged, staged HEAD, visible, previous — at once after its fetch.

use super::{io, MirrorRepo, RepoError, HIDDEN, LOCAL, PREVIOUS, STAGING, STAGING_HEAD};
use crate::gitcmd;
use crate::names::RefName;
use crate::packed_refs::{RefMap, RefValue};

/// A mirror's refs, by the part of its namespace they are in.
#[derive(Debug, Clone, Default)]
pub struct RefSets {
    /// The staged refs, under their visible names.
    pub staged: RefMap,
    /// The object the staged upstream HEAD names, if the upstream has one.
    pub staged_head: Option<String>,
    /// The visible refs.
    pub visible: RefMap,
    /// The refs kept under [`PREVIOUS`] (full names).
    pub previous: RefMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    Staged,
    StagedHead,
    Visible,
    Previous,
}

impl RefSets {
    fn map_mut(&mut self, set: Set) -> &mut RefMap {
        match set {
            Set::Staged => &mut self.staged,
            Set::Previous => &mut self.previous,
            Set::Visible | Set::StagedHead => &mut self.visible,
        }
    }
}

/// Which set a ref belongs to, and its name there; none for other hidden refs.
fn set_of(name: &str) -> Option<(Set, String)> {
    if let Some(rest) = name.strip_prefix(STAGING) {
        Some((Set::Staged, format!("refs/{rest}")))
    } else if name == STAGING_HEAD {
        Some((Set::StagedHead, name.to_owned()))
    } else if name.starts_with(PREVIOUS) {
        Some((Set::Previous, name.to_owned()))
    } else if name.starts_with(HIDDEN) {
        None
    } else {
        Some((Set::Visible, name.to_owned()))
    }
}

impl MirrorRepo {
    /// The visible refs (the hidden namespace left out).
    pub async fn read_refs(&self) -> Result<RefMap, RepoError> {
        Ok(self.for_each_ref("refs/").await?.visible)
    }

    /// Every ref, by set: what a sync reads once after its fetch.
    pub async fn read_ref_sets(&self) -> Result<RefSets, RepoError> {
        self.for_each_ref("refs/").await
    }

    async fn for_each_ref(&self, prefix: &str) -> Result<RefSets, RepoError> {
        let fmt = "--format=%(objectname) %(objecttype) %(*objectname) %(*objecttype) %(refname)";
        let out = gitcmd::run(
            Some(&self.path),
            ["for-each-ref", fmt, prefix],
            &[],
            None,
            LOCAL,
        )
        .await?;
        let text = String::from_utf8(out.stdout).map_err(|_| RepoError::NonUtf8Ref {
            path: self.path.clone(),
        })?;
        let mut sets = RefSets::default();
        let mut nested = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(5, ' ');
            let (oid, otype, peeled, ptype, name) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let Some((set, name)) = set_of(name) else {
                continue;
            };
            if set == Set::StagedHead {
                sets.staged_head = Some(oid.to_owned());
                continue;
            }
            let Some(refname) = RefName::parse(&name) else {
                tracing::warn!(repo = %self.path.display(), refname = %name, "skipping a ref with an invalid name");
                continue;
            };
            let peeled = (otype == "tag" && !peeled.is_empty()).then(|| peeled.to_owned());
            if ptype == "tag" {
                nested.push((set, refname.clone()));
            }
            sets.map_mut(set).insert(
                refname,
                RefValue {
                    oid: oid.to_owned(),
                    peeled,
                },
            );
        }
        if !nested.is_empty() {
            self.peel_fully(&mut sets, &nested).await?;
        }
        Ok(sets)
    }

    /// Tags of tags: their fully peeled objects, in one `cat-file`.
    async fn peel_fully(
        &self,
        sets: &mut RefSets,
        names: &[(Set, RefName)],
    ) -> Result<(), RepoError> {
        let input: String = names
            .iter()
            .filter_map(|(set, n)| {
                sets.map_mut(*set)
                    .get(n)
                    .map(|v| format!("{}^{{}}\n", v.oid))
            })
            .collect();
        let out = gitcmd::run(
            Some(&self.path),
            ["cat-file", "--batch-check=%(objectname)"],
            &[],
            Some(input.into_bytes()),
            LOCAL,
        )
        .await?;
        let text = String::from_utf8_lossy(&out.stdout);
        for ((set, name), line) in names.iter().zip(text.lines()) {
            if let Some(v) = sets.map_mut(*set).get_mut(name) {
                v.peeled = Some(line.trim().to_owned());
            }
        }
        Ok(())
    }

    /// The branch HEAD points to (`refs/heads/…`).
    pub async fn head_target(&self) -> Result<Option<String>, RepoError> {
        let head = tokio::fs::read_to_string(self.path.join("HEAD"))
            .await
            .map_err(io(&self.path))?;
        Ok(symref_target(&head))
    }

    /// [`Self::head_target`], for a thread that may block.
    pub fn head_target_blocking(&self) -> Result<Option<String>, RepoError> {
        let head = std::fs::read_to_string(self.path.join("HEAD")).map_err(io(&self.path))?;
        Ok(symref_target(&head))
    }
}

/// The ref a `HEAD` file's content names, if it names one (not a detached object).
pub(super) fn symref_target(head: &str) -> Option<String> {
    head.strip_prefix("ref: ").map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_fall_in_their_sets() {
        let staged = format!("{STAGING}heads/main");
        assert_eq!(
            set_of(&staged),
            Some((Set::Staged, "refs/heads/main".to_owned()))
        );
        assert_eq!(set_of(STAGING_HEAD).map(|s| s.0), Some(Set::StagedHead));
        let prev = format!("{PREVIOUS}refs/heads/main");
        assert_eq!(set_of(&prev), Some((Set::Previous, prev.clone())));
        assert_eq!(set_of(&format!("{HIDDEN}older/refs/heads/x")), None);
        assert_eq!(
            set_of("refs/tags/v1"),
            Some((Set::Visible, "refs/tags/v1".to_owned()))
        );
    }
}
