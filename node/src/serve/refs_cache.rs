//! Ref advertisements from memory. For each repository the node keeps, per ref state (generation),
//! git's own protocol-v0 advertisement and protocol-v2 capability advertisement (captured once
//! from `git upload-pack` when the state is first asked for) and the ref list, from which it
//! answers v2 `ls-refs` itself — byte for byte what `git upload-pack` would send — so listing refs
//! costs no process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;

use crate::mirror_repo::MirrorRepo;
use crate::names::{RefName, RepoId};
use crate::packed_refs::refs_hash;
use crate::pktline;

/// One ref state of one repository, ready to be served.
#[derive(Debug)]
pub struct Advertised {
    /// Hash of the ref state (HEAD included) the bytes below describe.
    pub key: String,
    /// `git upload-pack --stateless-rpc --advertise-refs` output for protocol v0/v1.
    pub v0: Bytes,
    /// The same for protocol v2 (the capability advertisement).
    pub v2_caps: Bytes,
    /// What HEAD names (`refs/heads/…`), and its object when that branch exists.
    pub head: Option<(String, Option<String>)>,
    /// Visible refs in name order: name, object, fully peeled object for annotated tags.
    pub refs: Vec<(String, String, Option<String>)>,
    /// `ls-refs` answers already rendered, by arguments (a few distinct ones in practice).
    rendered: Mutex<HashMap<LsRefs, Bytes>>,
}

/// At most this many distinct `ls-refs` argument sets are kept rendered per ref state.
const MAX_RENDERED: usize = 64;

/// Arguments of an `ls-refs` request.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct LsRefs {
    /// `peel`.
    pub peel: bool,
    /// `symrefs`.
    pub symrefs: bool,
    /// `unborn`.
    pub unborn: bool,
    /// `ref-prefix` values.
    pub prefixes: Vec<String>,
}

/// Git drops the prefix list (and lists everything) beyond this many prefixes.
const TOO_MANY_PREFIXES: usize = 65_536;

impl Advertised {
    /// The `ls-refs` response, rendered once per distinct arguments.
    pub fn ls_refs_cached(&self, args: &LsRefs) -> Bytes {
        if let Some(b) = self.rendered.lock().get(args) {
            return b.clone();
        }
        let b = Bytes::from(self.ls_refs(args));
        let mut r = self.rendered.lock();
        if r.len() < MAX_RENDERED {
            r.insert(args.clone(), b.clone());
        }
        b
    }

    /// The `ls-refs` response (pkt-lines and a flush), as git's `ls_refs()` writes it.
    pub fn ls_refs(&self, args: &LsRefs) -> Vec<u8> {
        let prefixes: &[String] = if args.prefixes.len() >= TOO_MANY_PREFIXES {
            &[]
        } else {
            &args.prefixes
        };
        // Each name is checked against its own prefixes in a set: thousands of `ref-prefix`
        // arguments cost no more than a few.
        let set: std::collections::HashSet<&str> = prefixes.iter().map(String::as_str).collect();
        let matches = |name: &str| {
            set.is_empty()
                || (0..=name.len()).any(|i| name.is_char_boundary(i) && set.contains(&name[..i]))
        };
        let mut out = Vec::with_capacity(self.refs.len() * 64 + 64);
        if let Some((target, oid)) = &self.head {
            if (oid.is_some() || (args.unborn && args.symrefs)) && matches("HEAD") {
                let mut line = match oid {
                    Some(o) => format!("{o} HEAD"),
                    None => "unborn HEAD".to_owned(),
                };
                if args.symrefs {
                    line.push_str(" symref-target:");
                    line.push_str(target);
                }
                if args.peel {
                    if let Some(p) = oid.as_ref().and_then(|o| self.peeled_of(o)) {
                        line.push_str(" peeled:");
                        line.push_str(p);
                    }
                }
                line.push('\n');
                out.extend_from_slice(&pktline::pkt(&line));
            }
        }
        for (name, oid, peeled) in &self.refs {
            if !matches(name) {
                continue;
            }
            let mut line = format!("{oid} {name}");
            if args.peel {
                if let Some(p) = peeled {
                    line.push_str(" peeled:");
                    line.push_str(p);
                }
            }
            line.push('\n');
            out.extend_from_slice(&pktline::pkt(&line));
        }
        out.extend_from_slice(pktline::FLUSH);
        out
    }

    fn peeled_of(&self, oid: &str) -> Option<&str> {
        self.refs
            .iter()
            .find(|(_, o, _)| o == oid)
            .and_then(|(_, _, p)| p.as_deref())
    }
}

/// Why an advertisement could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the refs of {repo}: {message}")]
pub struct CacheError {
    repo: String,
    message: String,
}

/// Per-repository cache of [`Advertised`] states.
#[derive(Default)]
pub struct RefsCache {
    entries: Mutex<HashMap<RepoId, Arc<Advertised>>>,
    builders: Mutex<HashMap<RepoId, Arc<tokio::sync::Mutex<()>>>>,
}

const LOCAL: Duration = Duration::from_secs(120);

impl RefsCache {
    /// The advertisement of `id`'s state `key` (the refs hash the node recorded for it), built
    /// from the repository at `path` when not cached; concurrent misses build it once.
    pub async fn get(
        &self,
        id: &RepoId,
        path: &Path,
        key: &str,
    ) -> Result<Arc<Advertised>, CacheError> {
        if let Some(a) = self.cached(id, key) {
            return Ok(a);
        }
        let builder = self.builders.lock().entry(id.clone()).or_default().clone();
        let _guard = builder.lock().await;
        if let Some(a) = self.cached(id, key) {
            return Ok(a);
        }
        let built = Arc::new(build(path).await.map_err(|message| CacheError {
            repo: id.to_string(),
            message,
        })?);
        self.entries.lock().insert(id.clone(), built.clone());
        Ok(built)
    }

    fn cached(&self, id: &RepoId, key: &str) -> Option<Arc<Advertised>> {
        let entries = self.entries.lock();
        entries.get(id).filter(|a| a.key == key).cloned()
    }

    /// Forgets a repository (no longer mirrored).
    pub fn forget(&self, id: &RepoId) {
        self.entries.lock().remove(id);
    }
}

async fn advertise(path: &Path, protocol: Option<&str>) -> Result<Bytes, String> {
    crate::upload_pack::advertisement(path, protocol, LOCAL)
        .await
        .map_err(|e| e.to_string())
}

/// Reads the repository's state and git's advertisements of it; retries when a sync flips the
/// state in between, so the pieces always describe one state.
async fn build(path: &Path) -> Result<Advertised, String> {
    let repo = MirrorRepo::new(PathBuf::from(path));
    for _ in 0..5 {
        let before = read_state(&repo).await?;
        let v0 = advertise(path, None).await?;
        let v2_caps = advertise(path, Some("version=2")).await?;
        let after = read_state(&repo).await?;
        if before.0 == after.0 {
            let (key, head, refs) = after;
            return Ok(Advertised {
                key,
                v0,
                v2_caps,
                head,
                refs,
                rendered: Mutex::default(),
            });
        }
    }
    Err("the refs kept changing while being read".into())
}

type State = (
    String,
    Option<(String, Option<String>)>,
    Vec<(String, String, Option<String>)>,
);

async fn read_state(repo: &MirrorRepo) -> Result<State, String> {
    let map = repo.read_refs().await.map_err(|e| e.to_string())?;
    let target = repo.head_target().await.map_err(|e| e.to_string())?;
    let head_ref = target.as_deref().and_then(RefName::parse);
    let key = refs_hash(&map, head_ref.as_ref());
    let head = target.map(|t| {
        let oid = RefName::parse(&t)
            .and_then(|n| map.get(&n))
            .map(|v| v.oid.clone());
        (t, oid)
    });
    let refs = map
        .into_iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.oid, v.peeled))
        .collect();
    Ok((key, head, refs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adv() -> Advertised {
        Advertised {
            key: String::new(),
            v0: Bytes::new(),
            v2_caps: Bytes::new(),
            head: Some(("refs/heads/main".into(), Some("a".repeat(40)))),
            refs: vec![
                ("refs/heads/main".into(), "a".repeat(40), None),
                ("refs/tags/v1".into(), "b".repeat(40), Some("a".repeat(40))),
            ],
            rendered: Mutex::default(),
        }
    }

    #[test]
    fn ls_refs_lines() {
        let a = adv();
        let all = String::from_utf8(a.ls_refs(&LsRefs {
            peel: true,
            symrefs: true,
            ..Default::default()
        }))
        .expect("utf8");
        assert!(
            all.contains(" HEAD symref-target:refs/heads/main\n"),
            "{all}"
        );
        assert!(all.contains(" refs/tags/v1 peeled:"), "{all}");
        assert!(all.ends_with("0000"));
        let tags = String::from_utf8(a.ls_refs(&LsRefs {
            prefixes: vec!["refs/tags/".into()],
            ..Default::default()
        }))
        .expect("utf8");
        assert!(
            !tags.contains("HEAD")
                && !tags.contains("refs/heads/")
                && tags.contains("refs/tags/v1\n"),
            "{tags}"
        );
        let unborn = Advertised {
            head: Some(("refs/heads/main".into(), None)),
            refs: vec![],
            ..adv()
        };
        let u = String::from_utf8(unborn.ls_refs(&LsRefs {
            symrefs: true,
            unborn: true,
            ..Default::default()
        }))
        .expect("utf8");
        assert_eq!(u, "002eunborn HEAD symref-target:refs/heads/main\n0000");
        assert_eq!(unborn.ls_refs(&LsRefs::default()), b"0000");
    }
}
