//! Typed names: project keys, repository slugs, repository ids and git ref names.
//!
//! Every name that reaches the filesystem or a git command passes through these types first, so a
//! path segment with `..`, a slash or an odd character is refused before any filesystem access.

use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty segment.
    #[error("empty name")]
    Empty,
    /// Longer than [`MAX_SEGMENT`].
    #[error("name longer than {MAX_SEGMENT} characters")]
    TooLong,
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("character {0:?} is not allowed (only A-Z a-z 0-9 . _ -)")]
    BadChar(char),
    /// `.`/`..`, a leading dot, or `..` anywhere.
    #[error("dot segments and names starting with '.' are not allowed")]
    Dots,
    /// Not of the form `PROJECT/repo`.
    #[error("expected PROJECT/repo")]
    Shape,
    /// A project segment ending in `.git` (its repositories would live inside a repository).
    #[error("a project name must not end in .git")]
    GitSuffix,
}

/// Longest project key segment or repository slug accepted.
pub const MAX_SEGMENT: usize = 128;
/// The most segments a project key may have (GitLab nests subgroups up to 20 deep).
pub const MAX_PROJECT_DEPTH: usize = 20;

/// Whether `s` is a SHA-256 in hex as this project writes them: 64 lowercase hex digits (ref map
/// hashes, LFS object IDs).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks one segment of a request path (no traversal, no odd characters), whatever it names.
pub fn check_path_segment(s: &str) -> Result<(), NameError> {
    check_segment(s)
}

fn check_segment(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_SEGMENT {
        return Err(NameError::TooLong);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadChar(c));
    }
    if s.starts_with('.') || s.contains("..") {
        return Err(NameError::Dots);
    }
    Ok(())
}

/// A project: a Bitbucket project key such as `PROJ`, a GitHub or Gitea organisation, or a
/// GitLab namespace path such as `group/subgroup` (segments joined by `/`, each checked alone).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectKey(String);

impl ProjectKey {
    /// Validates a project key (one or more `/`-separated segments).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.split('/').count() > MAX_PROJECT_DEPTH {
            return Err(NameError::TooLong);
        }
        for seg in s.split('/') {
            check_segment(seg)?;
            if seg.ends_with(".git") {
                return Err(NameError::GitSuffix);
            }
        }
        Ok(Self(s.to_owned()))
    }
    /// The key as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A repository slug such as `my-repo` (never with the `.git` suffix).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoSlug(String);

impl RepoSlug {
    /// Validates a slug; a trailing `.git` is stripped first.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.strip_suffix(".git").unwrap_or(s);
        check_segment(s)?;
        Ok(Self(s.to_owned()))
    }
    /// The slug as written, without `.git`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One mirrored repository: `PROJECT/repo`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId {
    /// Project key.
    pub project: ProjectKey,
    /// Repository slug.
    pub repo: RepoSlug,
}

impl RepoId {
    /// Parses `PROJECT/repo` (a trailing `.git` is allowed; the project may be a namespace path:
    /// `group/sub/repo`).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let (p, r) = s.rsplit_once('/').ok_or(NameError::Shape)?;
        Ok(Self {
            project: ProjectKey::parse(p)?,
            repo: RepoSlug::parse(r)?,
        })
    }
    /// Relative path of the bare repository: `PROJECT/repo.git`.
    pub fn rel_path(&self) -> String {
        format!("{}/{}.git", self.project.as_str(), self.repo.as_str())
    }
    /// Key used in the state store: `PROJECT/repo`.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project.as_str(), self.repo.as_str())
    }
}

/// A full git ref name such as `refs/heads/main`, checked with git's rules
/// (`git check-ref-format`), so it can go into packed-refs and command lines safely.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

impl RefName {
    /// Validates a full ref name under `refs/`.
    pub fn parse(s: &str) -> Option<Self> {
        if !s.starts_with("refs/") || s.ends_with('/') || s.ends_with('.') || s.contains("..") {
            return None;
        }
        if s.contains("@{") || s.ends_with(".lock") || s.contains("//") {
            return None;
        }
        let bad = |c: char| c.is_ascii_control() || " ~^:?*[\\".contains(c) || c == '\u{7f}';
        if s.chars().any(bad) {
            return None;
        }
        if s.split('/')
            .any(|c| c.is_empty() || c.starts_with('.') || c.ends_with(".lock"))
        {
            return None;
        }
        Some(Self(s.to_owned()))
    }
    /// The full name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        let id = RepoId::parse("PROJ/my-repo.git").expect("valid");
        assert_eq!(id.to_string(), "PROJ/my-repo");
        assert_eq!(id.rel_path(), "PROJ/my-repo.git");
        let nested = RepoId::parse("group/sub/repo.git").expect("namespace path");
        assert_eq!(nested.project.as_str(), "group/sub");
        assert_eq!(nested.rel_path(), "group/sub/repo.git");
        for bad in [
            "PROJ",
            "P/../x",
            "../r",
            "P//x",
            "/P/x",
            "P/.hidden",
            "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v",
            "a/b.git/c",
            "P.git/r",
            "P/a b",
            "/r",
            "P/",
            "P/%2e",
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ref_names() {
        assert!(RefName::parse("refs/heads/main").is_some());
        assert!(RefName::parse("refs/notes/commits").is_some());
        for bad in [
            "HEAD",
            "refs/heads/a..b",
            "refs/heads/x.lock",
            "refs/a b",
            "refs/.x",
            "refs/x/",
        ] {
            assert!(RefName::parse(bad).is_none(), "{bad} accepted");
        }
    }
}
