//! The LFS objects commits refer to: pointer files among their blobs, read in-process with
//! libgit2 (a `git cat-file` per blob would cost a process each). Blocking: run it on a blocking
//! thread.
//!
//! After a sync that moved refs from `old` tips to `new` ones, each new commit is compared with
//! its first parent and only the blobs it adds or changes are looked at; with no `old` tips (a
//! first sync) the trees of the `new` tips are read whole — what a clone checks out — each
//! subtree once however many tips share it. Only blobs of at most [`MAX_POINTER`] bytes are read
//! (their size comes from the object header).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use git2::{Delta, DiffOptions, ErrorCode, FileMode, ObjectType, Oid, Repository, Sort};

use crate::lfs::pointer::{Pointer, MAX_POINTER};

/// Why a repository could not be scanned.
#[derive(Debug, thiserror::Error)]
#[error("scanning {repo} for LFS pointers: {source}")]
pub struct ScanError {
    /// The repository.
    pub repo: PathBuf,
    /// libgit2's error.
    pub source: git2::Error,
}

/// What a scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The objects, each once, in the order met.
    pub pointers: Vec<Pointer>,
    /// Their sizes together.
    pub bytes: u64,
    /// Whether objects were left out to stay within the budget.
    pub truncated: bool,
}

impl Found {
    fn add(&mut self, p: Pointer, seen: &mut HashSet<String>, budget: u64) {
        if !seen.insert(p.oid.as_str().to_owned()) {
            return;
        }
        match self.bytes.checked_add(p.size).filter(|b| *b <= budget) {
            Some(b) => {
                self.bytes = b;
                self.pointers.push(p);
            }
            None => self.truncated = true,
        }
    }
}

/// The LFS objects of `new` tips not already referred to from `old` tips (object IDs, hex), up to
/// `budget` bytes of objects.
pub fn scan(repo: &Path, new: &[String], old: &[String], budget: u64) -> Result<Found, ScanError> {
    let err = |source| ScanError {
        repo: repo.to_owned(),
        source,
    };
    let r = Repository::open_bare(repo).map_err(err)?;
    let mut scan = Scan {
        repo: &r,
        found: Found::default(),
        seen_pointers: HashSet::new(),
        seen_objects: HashSet::new(),
        budget,
    };
    let tips = |ids: &[String]| -> Vec<Oid> {
        ids.iter()
            .filter_map(|h| Oid::from_str(h).ok())
            .filter_map(|o| r.find_object(o, None).ok()?.peel_to_commit().ok())
            .map(|c| c.id())
            .collect()
    };
    let (new, old) = (tips(new), tips(old));
    if old.is_empty() {
        for c in &new {
            let tree = r.find_commit(*c).and_then(|c| c.tree()).map_err(err)?;
            scan.tree(&tree).map_err(err)?;
        }
    } else {
        let mut walk = r.revwalk().map_err(err)?;
        walk.set_sorting(Sort::TOPOLOGICAL).map_err(err)?;
        for c in &new {
            walk.push(*c).map_err(err)?;
        }
        for c in &old {
            walk.hide(*c).map_err(err)?;
        }
        for id in walk {
            scan.commit(id.map_err(err)?).map_err(err)?;
        }
    }
    Ok(scan.found)
}

struct Scan<'r> {
    repo: &'r Repository,
    found: Found,
    seen_pointers: HashSet<String>,
    /// Trees and blobs already looked at.
    seen_objects: HashSet<Oid>,
    budget: u64,
}

impl Scan<'_> {
    /// The blobs `id` adds or changes against its first parent (all of them for a root commit).
    fn commit(&mut self, id: Oid) -> Result<(), git2::Error> {
        let commit = self.repo.find_commit(id)?;
        let tree = commit.tree()?;
        let parent = match commit.parent(0) {
            Ok(p) => Some(p.tree()?),
            Err(_) => None,
        };
        let mut opts = DiffOptions::new();
        opts.skip_binary_check(true);
        let diff = self
            .repo
            .diff_tree_to_tree(parent.as_ref(), Some(&tree), Some(&mut opts))?;
        for delta in diff.deltas() {
            let changed = matches!(
                delta.status(),
                Delta::Added | Delta::Modified | Delta::Renamed | Delta::Copied | Delta::Typechange
            );
            // A submodule's commit (a gitlink) is not an object of this repository.
            let file = matches!(
                delta.new_file().mode(),
                FileMode::Blob | FileMode::BlobExecutable
            );
            if changed && file {
                self.blob(delta.new_file().id())?;
            }
        }
        Ok(())
    }

    /// Every blob under `tree`, each subtree once.
    fn tree(&mut self, tree: &git2::Tree<'_>) -> Result<(), git2::Error> {
        if !self.seen_objects.insert(tree.id()) {
            return Ok(());
        }
        for entry in tree.iter() {
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let sub = self.repo.find_tree(entry.id())?;
                    self.tree(&sub)?;
                }
                Some(ObjectType::Blob) => self.blob(entry.id())?,
                // Submodule commits and anything else: not ours to read.
                _ => {}
            }
        }
        Ok(())
    }

    fn blob(&mut self, id: Oid) -> Result<(), git2::Error> {
        if id.is_zero() || !self.seen_objects.insert(id) {
            return Ok(());
        }
        let (size, kind) = match self.repo.odb()?.read_header(id) {
            Ok(h) => h,
            // Missing (a partial mirror, say): nothing to read.
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if kind != ObjectType::Blob || size > MAX_POINTER {
            return Ok(());
        }
        if let Some(p) = Pointer::parse(self.repo.find_blob(id)?.content()) {
            self.found.add(p, &mut self.seen_pointers, self.budget);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::git;
    use sha2::{Digest, Sha256};

    /// A pointer file for `content`, and the object it names.
    fn pointer_for(content: &str) -> (String, Pointer) {
        let oid = crate::lfs::LfsOid::from_digest(&Sha256::digest(content.as_bytes()));
        let text = format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n",
            content.len()
        );
        let p = Pointer {
            oid,
            size: content.len() as u64,
        };
        (text, p)
    }

    #[test]
    fn finds_the_pointers_new_commits_add_each_once_within_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("assets/deep")).expect("mkdir");
        git(&work, &["init", "-q"]);
        let (a_text, a) = pointer_for(&"a".repeat(100));
        let (b_text, b) = pointer_for(&"b".repeat(200));
        let (c_text, c) = pointer_for(&"c".repeat(300));
        std::fs::write(work.join("assets/a.bin"), &a_text).expect("write");
        std::fs::write(work.join("assets/deep/a-again.bin"), &a_text).expect("write");
        std::fs::write(work.join("README"), "not a pointer\n").expect("write");
        std::fs::write(work.join("big"), "x".repeat(5000)).expect("write");
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-qm", "first"]);
        let first = git(&work, &["rev-parse", "HEAD"]);
        git(&work, &["tag", "-a", "-m", "v1", "v1"]);
        let tag = git(&work, &["rev-parse", "v1"]);
        std::fs::write(work.join("assets/b.bin"), &b_text).expect("write");
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-qm", "second"]);
        std::fs::write(work.join("assets/deep/c.bin"), &c_text).expect("write");
        std::fs::remove_file(work.join("assets/a.bin")).expect("rm");
        git(&work, &["add", "-A"]);
        // A submodule: its commit is not in this repository.
        let gitlink = format!("160000,{},vendor/lib", "12".repeat(20));
        git(&work, &["update-index", "--add", "--cacheinfo", &gitlink]);
        git(&work, &["commit", "-qm", "third"]);
        let third = git(&work, &["rev-parse", "HEAD"]);
        let bare = dir.path().join("bare.git");
        git(dir.path(), &["clone", "-q", "--bare", "work", "bare.git"]);

        // A first sync: the tips' trees (a tag as a tip too), each object once.
        let all = scan(&bare, &[third.clone(), tag.clone()], &[], u64::MAX).expect("scan");
        let mut got: Vec<u64> = all.pointers.iter().map(|p| p.size).collect();
        got.sort();
        assert_eq!(got, [100, 200, 300], "{all:?}");
        assert_eq!(all.bytes, 600);
        assert!(!all.truncated);

        // After a sync from `first` to `third`: what the two new commits added, not `a`.
        let (new_tips, old_tips) = (vec![third.clone()], vec![first]);
        let new = scan(&bare, &new_tips, &old_tips, u64::MAX).expect("scan");
        let mut sizes: Vec<u64> = new.pointers.iter().map(|p| p.size).collect();
        sizes.sort();
        assert_eq!(sizes, [200, 300]);
        assert!(new.pointers.contains(&b) && new.pointers.contains(&c));
        assert!(!new.pointers.contains(&a));

        // A budget: what fits, and the note that something did not.
        let capped = scan(&bare, &new_tips, &old_tips, 250).expect("scan");
        assert_eq!(capped.pointers.len(), 1, "{capped:?}");
        assert!(capped.bytes <= 250 && capped.truncated);

        // Nothing new: nothing found; unknown tips are skipped.
        let none = scan(&bare, &new_tips, &new_tips, u64::MAX).expect("scan");
        assert_eq!(none, Found::default());
        let unknown = scan(&bare, &["00".repeat(20)], &[], u64::MAX).expect("scan");
        assert_eq!(unknown, Found::default());
        assert!(scan(&dir.path().join("missing.git"), &[], &[], 1).is_err());
    }
}
