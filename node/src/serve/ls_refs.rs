//! Answering a protocol-v2 `ls-refs` command from a ref listing held in memory, byte for byte
//! as `git upload-pack` would (its `ls_refs()`): client-facing advertisements
//! ([`crate::serve::refs_cache`]) and a member's fetch of a staged state
//! ([`crate::staged_refs`]) both use it.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::pktline;

/// HEAD and refs as `ls-refs` lists them, with the answers already rendered.
#[derive(Debug)]
pub struct RefList {
    /// What HEAD names (`refs/heads/…`), and its object when that branch exists.
    pub head: Option<(String, Option<String>)>,
    /// Refs in name order: name, object, fully peeled object for annotated tags.
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

impl RefList {
    /// A listing of `head` (what HEAD names, and its object when that branch exists) and `refs`
    /// (name, object, fully peeled object for annotated tags), which must be in name order.
    pub fn new(
        head: Option<(String, Option<String>)>,
        refs: Vec<(String, String, Option<String>)>,
    ) -> Self {
        Self {
            head,
            refs,
            rendered: Mutex::default(),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> RefList {
        RefList::new(
            Some(("refs/heads/main".into(), Some("a".repeat(40)))),
            vec![
                ("refs/heads/main".into(), "a".repeat(40), None),
                ("refs/tags/v1".into(), "b".repeat(40), Some("a".repeat(40))),
            ],
        )
    }

    #[test]
    fn ls_refs_lines() {
        let a = list();
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
        let unborn = RefList::new(Some(("refs/heads/main".into(), None)), vec![]);
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
