//! Parsing request paths and SSH commands into a repository and a git service, refusing
//! traversal, encoded characters and odd names before anything touches the filesystem.

use crate::names::{NameError, RepoId};

/// The git service a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Fetch and clone.
    UploadPack,
    /// Push (always refused by a mirror).
    ReceivePack,
}

impl Service {
    /// From `git-upload-pack` / `git-receive-pack`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "git-upload-pack" => Some(Self::UploadPack),
            "git-receive-pack" => Some(Self::ReceivePack),
            _ => None,
        }
    }
}

/// What a `/scm/…` path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScmEndpoint {
    /// `…/info/refs` (the service comes from the query).
    InfoRefs,
    /// `…/git-upload-pack` or `…/git-receive-pack`.
    Rpc(Service),
}

/// What an LFS path under `/scm/` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LfsEndpoint {
    /// `…/info/lfs/objects/batch`: the batch API.
    Batch,
    /// `…/info/lfs/objects/<oid>`: one object.
    Object(crate::lfs::LfsOid),
}

/// Parses `PROJECT/repo[.git]/info/lfs/objects/(batch|<oid>)`; `None` when the path is not an
/// LFS one (it is then parsed as git's).
pub fn parse_lfs(rest: &str) -> Option<Result<(RepoId, LfsEndpoint), PathError>> {
    let segs: Vec<&str> = rest.split('/').collect();
    let [repo_segs @ .., "info", "lfs", "objects", last] = segs.as_slice() else {
        return None;
    };
    if repo_segs.len() < 2 {
        return None;
    }
    if rest.contains('%') || rest.contains('\\') || rest.contains('\0') {
        return Some(Err(PathError::Encoded));
    }
    let endpoint = match *last {
        "batch" => LfsEndpoint::Batch,
        oid => LfsEndpoint::Object(crate::lfs::LfsOid::parse(oid)?),
    };
    Some(
        RepoId::parse(&repo_segs.join("/"))
            .map(|id| (id, endpoint))
            .map_err(PathError::from),
    )
}

/// A bad path: answered 400.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Percent-encoding, backslashes or empty segments.
    #[error("encoded or empty path segments are not accepted")]
    Encoded,
    /// A bad project or repository name.
    #[error("bad repository path: {0}")]
    Name(#[from] NameError),
    /// Not a git endpoint.
    #[error("not a git endpoint")]
    NotGit,
}

/// Parses the part of a path after `/scm/`: `PROJECT/repo[.git]/info/refs` etc.
pub fn parse_scm(rest: &str) -> Result<(RepoId, ScmEndpoint), PathError> {
    if rest.contains('%') || rest.contains('\\') || rest.contains("//") || rest.contains('\0') {
        return Err(PathError::Encoded);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let (endpoint, n) = match segs.as_slice() {
        [.., "info", "refs"] => (ScmEndpoint::InfoRefs, 2),
        [.., last] => match Service::parse(last) {
            Some(s) => (ScmEndpoint::Rpc(s), 1),
            None => {
                // Refuse traversal and bad names even on non-git paths.
                for s in &segs {
                    crate::names::check_path_segment(s)?;
                }
                return Err(PathError::NotGit);
            }
        },
        [] => return Err(PathError::NotGit),
    };
    let repo_segs = &segs[..segs.len() - n];
    if repo_segs.len() < 2 {
        for s in repo_segs {
            crate::names::check_path_segment(s)?;
        }
        return Err(PathError::NotGit);
    }
    let id = RepoId::parse(&repo_segs.join("/"))?;
    Ok((id, endpoint))
}

/// Parses an SSH exec command: `git-upload-pack '/P/r.git'`, `git-upload-pack 'P/r.git'` or
/// `git upload-pack '…'`.
pub fn parse_ssh_command(cmd: &str) -> Result<(Service, RepoId), String> {
    let cmd = cmd.trim();
    let (verb, arg) = if let Some(rest) = cmd.strip_prefix("git ") {
        let (v, a) = rest
            .trim_start()
            .split_once(' ')
            .ok_or("missing repository argument")?;
        (format!("git-{v}"), a)
    } else {
        let (v, a) = cmd.split_once(' ').ok_or("missing repository argument")?;
        (v.to_owned(), a)
    };
    let service = Service::parse(&verb).ok_or_else(|| {
        format!("unsupported command {verb:?}: this server only serves git fetches")
    })?;
    Ok((service, repo_of_ssh_path(arg)?))
}

/// The repository an SSH command's path argument names: `'/P/r.git'`, `P/r.git`, `/scm/P/r` …
pub fn repo_of_ssh_path(arg: &str) -> Result<RepoId, String> {
    let arg = arg.trim();
    let path = arg
        .strip_prefix('\'')
        .and_then(|a| a.strip_suffix('\''))
        .unwrap_or(arg);
    if path.contains('\'') || path.contains('%') || path.contains('\\') {
        return Err("bad repository path".into());
    }
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_prefix("scm/").unwrap_or(path);
    RepoId::parse(path.trim_end_matches('/'))
        .map_err(|e| format!("bad repository path {path:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scm_paths() {
        let (id, ep) = parse_scm("PROJ/repo.git/info/refs").expect("ok");
        assert_eq!(
            (id.to_string(), ep),
            ("PROJ/repo".into(), ScmEndpoint::InfoRefs)
        );
        let (id, ep) = parse_scm("PROJ/repo/git-upload-pack").expect("ok");
        assert_eq!(
            (id.to_string(), ep),
            ("PROJ/repo".into(), ScmEndpoint::Rpc(Service::UploadPack))
        );
        assert!(matches!(
            parse_scm("PROJ/../x/info/refs"),
            Err(PathError::Name(_))
        ));
        assert!(matches!(
            parse_scm("PROJ%2frepo/info/refs"),
            Err(PathError::Encoded)
        ));
        assert!(matches!(
            parse_scm("PROJ/re po/info/refs"),
            Err(PathError::Name(_))
        ));
        assert!(matches!(
            parse_scm("PROJ/repo/HEAD"),
            Err(PathError::NotGit)
        ));
        assert!(matches!(
            parse_scm("PROJ/repo/objects/../../x"),
            Err(PathError::Name(_))
        ));
        let lfs = |p: &str| parse_lfs(p).map(|r| r.map(|(id, ep)| (id.to_string(), ep)));
        assert!(matches!(
            lfs("PROJ/repo.git/info/lfs/objects/batch"),
            Some(Ok((id, LfsEndpoint::Batch))) if id == "PROJ/repo"
        ));
        let oid = "ab".repeat(32);
        assert!(matches!(
            lfs(&format!("PROJ/repo/info/lfs/objects/{oid}")),
            Some(Ok((_, LfsEndpoint::Object(o)))) if o.as_str() == oid
        ));
        // Not an object ID (upper case, short, a traversal): not an LFS path, and not git's.
        for bad in [oid.to_uppercase(), "abc".into(), "..".into()] {
            let p = format!("PROJ/repo.git/info/lfs/objects/{bad}");
            assert!(lfs(&p).is_none(), "{p}");
            assert!(parse_scm(&p).is_err(), "{p}");
        }
        assert!(matches!(
            lfs("PROJ/re po/info/lfs/objects/batch"),
            Some(Err(PathError::Name(_)))
        ));
        assert!(lfs("PROJ/repo.git/info/refs").is_none());
    }

    #[test]
    fn ssh_commands() {
        let (s, id) = parse_ssh_command("git-upload-pack '/P/r.git'").expect("ok");
        assert_eq!((s, id.to_string()), (Service::UploadPack, "P/r".into()));
        let (s, id) = parse_ssh_command("git-upload-pack 'P/r.git'").expect("ok");
        assert_eq!((s, id.to_string()), (Service::UploadPack, "P/r".into()));
        let (s, _) = parse_ssh_command("git-receive-pack '/P/r.git'").expect("ok");
        assert_eq!(s, Service::ReceivePack);
        assert!(parse_ssh_command("ls -la").is_err());
        assert!(parse_ssh_command("git-upload-pack '/P/../etc'").is_err());
    }
}

#[cfg(test)]
mod random_input {
    use super::*;

    /// Random paths and commands built from a hostile alphabet never panic, and whatever is
    /// accepted names only safe characters.
    #[test]
    fn hostile_input_is_refused_or_safe() {
        let alphabet: Vec<char> = "aZ9._-/%\\'\" \0\n~$:@?#..gitinforefsupload-pack"
            .chars()
            .collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let mut s = String::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let safe = |id: &RepoId| {
                let t = id.rel_path();
                !t.contains("..")
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
                    && !t.starts_with('/')
            };
            if let Ok((id, _)) = parse_scm(&s) {
                assert!(safe(&id), "{s:?} → {id}");
            }
            if let Ok((_, id)) = parse_ssh_command(&format!("git-upload-pack '{s}'")) {
                assert!(safe(&id), "{s:?} → {id}");
            }
            let _ = mirrorfarm_common::properties::parse(&s);
        }
    }
}
