//! Writing a repository's whole visible ref state as one `packed-refs` file, atomically (and
//! HEAD, with the same lock protocol).
//!
//! The node never creates loose refs outside `refs/mirrorfarm/`, so the visible refs are exactly
//! the content of `packed-refs`: replacing that file with one `rename(2)` flips every ref at once,
//! and a crash at any moment leaves either the old or the new file, never a mix.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::names::RefName;

/// One ref's value: the object it names and, for annotated tags, the fully peeled object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefValue {
    /// Object ID (hex).
    pub oid: String,
    /// Fully peeled object ID for tags.
    pub peeled: Option<String>,
}

/// A full ref map, sorted by name.
pub type RefMap = BTreeMap<RefName, RefValue>;

/// Hash of a ref state (hex SHA-256 over `HEAD -> target\n`, then `oid name\n` lines in name order).
pub fn refs_hash(refs: &RefMap, head: Option<&RefName>) -> String {
    let mut h = Sha256::new();
    if let Some(t) = head {
        h.update(b"HEAD -> ");
        h.update(t.as_str().as_bytes());
        h.update(b"\n");
    }
    for (name, v) in refs {
        h.update(v.oid.as_bytes());
        h.update(b" ");
        h.update(name.as_str().as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Renders `packed-refs` content: `visible` refs plus `extra` (hidden) refs, sorted together.
pub fn render(visible: &RefMap, extra: &RefMap) -> Vec<u8> {
    let mut all: BTreeMap<&str, &RefValue> = BTreeMap::new();
    for (k, v) in visible.iter().chain(extra.iter()) {
        all.insert(k.as_str(), v);
    }
    let mut out = Vec::with_capacity(all.len() * 64 + 64);
    out.extend_from_slice(b"# pack-refs with: peeled fully-peeled sorted \n");
    for (name, v) in all {
        out.extend_from_slice(v.oid.as_bytes());
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
        if let Some(p) = &v.peeled {
            out.push(b'^');
            out.extend_from_slice(p.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

/// Replaces `<repo>/packed-refs` with `content` using git's lock protocol
/// (`packed-refs.lock` created exclusively, written, synced, renamed over).
pub fn replace(repo: &Path, content: &[u8]) -> std::io::Result<()> {
    replace_locked(repo, &[("packed-refs", content)])
}

/// Replaces `packed-refs` with `content`, then points `<repo>/HEAD` at the branch `head`
/// (`refs/heads/…`) as `git symbolic-ref HEAD` does: each `.lock` file created exclusively,
/// written and synced, renamed over in that order, the directory synced once for both.
pub fn replace_with_head(repo: &Path, content: &[u8], head: Option<&str>) -> std::io::Result<()> {
    match head {
        Some(h) => replace_locked(
            repo,
            &[
                ("packed-refs", content),
                ("HEAD", format!("ref: {h}\n").as_bytes()),
            ],
        ),
        None => replace(repo, content),
    }
}

/// Replaces `<repo>/HEAD` with `content` by the same lock protocol (a half-written HEAD is never
/// in place).
pub fn replace_head(repo: &Path, content: &[u8]) -> std::io::Result<()> {
    replace_locked(repo, &[("HEAD", content)])
}

fn replace_locked(repo: &Path, files: &[(&str, &[u8])]) -> std::io::Result<()> {
    let locks: Vec<std::path::PathBuf> = files
        .iter()
        .map(|(name, _)| repo.join(format!("{name}.lock")))
        .collect();
    let (mut created, mut renamed) = (0, 0);
    let res = (|| {
        for ((_, content), lock) in files.iter().zip(&locks) {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(lock)?;
            created += 1;
            f.write_all(content)?;
            f.sync_all()?;
        }
        for ((name, _), lock) in files.iter().zip(&locks) {
            std::fs::rename(lock, repo.join(name))?;
            renamed += 1;
        }
        std::fs::File::open(repo)?.sync_all()
    })();
    if res.is_err() {
        // Only the locks this call holds still: one renamed away, or another writer's, is
        // not ours to remove.
        for lock in &locks[renamed..created] {
            let _ = std::fs::remove_file(lock);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RefName {
        RefName::parse(s).expect("valid ref")
    }

    #[test]
    fn renders_sorted_with_peeled_lines() {
        let mut v = RefMap::new();
        v.insert(
            r("refs/tags/v1"),
            RefValue {
                oid: "b".repeat(40),
                peeled: Some("c".repeat(40)),
            },
        );
        v.insert(
            r("refs/heads/main"),
            RefValue {
                oid: "a".repeat(40),
                peeled: None,
            },
        );
        let mut x = RefMap::new();
        x.insert(
            r("refs/mirrorfarm/previous/refs/heads/main"),
            RefValue {
                oid: "d".repeat(40),
                peeled: None,
            },
        );
        let text = String::from_utf8(render(&v, &x)).expect("utf8");
        let lines: Vec<_> = text.lines().collect();
        assert!(lines[0].starts_with("# pack-refs with:"));
        assert!(lines[1].ends_with(" refs/heads/main"));
        assert!(lines[2].ends_with(" refs/mirrorfarm/previous/refs/heads/main"));
        assert!(lines[3].ends_with(" refs/tags/v1"));
        assert_eq!(lines[4], format!("^{}", "c".repeat(40)));
        assert_ne!(refs_hash(&v, None), refs_hash(&x, None));
        assert_ne!(
            refs_hash(&v, None),
            refs_hash(&v, Some(&r("refs/heads/main")))
        );
    }

    #[test]
    fn packed_refs_and_head_replaced_together_under_git_locks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path();
        std::fs::write(repo.join("HEAD"), "ref: refs/heads/master\n").expect("write");
        replace_with_head(repo, b"one\n", Some("refs/heads/main")).expect("replace");
        let read = |n: &str| std::fs::read_to_string(repo.join(n)).expect("read");
        assert_eq!(
            (read("packed-refs"), read("HEAD")),
            ("one\n".into(), "ref: refs/heads/main\n".into())
        );
        replace_with_head(repo, b"two\n", None).expect("replace");
        assert_eq!(
            (read("packed-refs"), read("HEAD")),
            ("two\n".into(), "ref: refs/heads/main\n".into())
        );
        // Another writer holds HEAD's lock: nothing is replaced, its lock is left alone, ours go.
        std::fs::write(repo.join("HEAD.lock"), "theirs").expect("write");
        assert!(replace_with_head(repo, b"three\n", Some("refs/heads/x")).is_err());
        assert_eq!(
            (read("packed-refs"), read("HEAD")),
            ("two\n".into(), "ref: refs/heads/main\n".into())
        );
        assert_eq!(read("HEAD.lock"), "theirs");
        assert!(!repo.join("packed-refs.lock").exists());
    }
}
