//! A protocol-v0 ref advertisement (what `git-upload-pack --advertise-refs` writes) read into
//! the refs it lists and the commit HEAD names, and compared with the hash of a served state.

use crate::names::RefName;
use crate::packed_refs::{refs_hash, RefMap, RefValue};
use crate::sync::fetch::choose_head;

/// What an upstream repository advertises.
#[derive(Debug, Default)]
pub struct Advertised {
    /// Its refs (peeled tags read, not needed for the comparison).
    pub refs: RefMap,
    /// The commit its HEAD points at (none: unborn, or not advertised).
    pub head: Option<String>,
    /// A line that could not be read as a ref: a fetch decides what it means.
    pub odd: bool,
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Advertised {
    /// Reads one data packet's payload (`<oid> <name>[\0<capabilities>]\n`).
    pub fn line(&mut self, payload: &[u8]) {
        let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
        let payload = match payload.iter().position(|b| *b == 0) {
            Some(i) => &payload[..i],
            None => payload,
        };
        let parsed = std::str::from_utf8(payload)
            .ok()
            .and_then(|t| t.split_once(' '))
            .filter(|(oid, _)| is_oid(oid));
        let Some((oid, name)) = parsed else {
            self.odd = true;
            return;
        };
        if name == "capabilities^{}" {
            return;
        }
        if name == "HEAD" {
            self.head = Some(oid.to_owned());
            return;
        }
        if let Some(base) = name.strip_suffix("^{}") {
            match RefName::parse(base).and_then(|n| self.refs.get_mut(&n)) {
                Some(v) => v.peeled = Some(oid.to_owned()),
                None => self.odd = true,
            }
            return;
        }
        match RefName::parse(name) {
            Some(n) => {
                self.refs.insert(
                    n,
                    RefValue {
                        oid: oid.to_owned(),
                        peeled: None,
                    },
                );
            }
            None => self.odd = true,
        }
    }

    /// Whether a sync would leave a served state of hash `served` (see
    /// [`crate::packed_refs::refs_hash`]), whose HEAD names `current`, as it is: the state a
    /// sync would stage — these refs, HEAD chosen as [`crate::sync::fetch::stage`] chooses it —
    /// has that hash.
    pub fn matches(&self, served: &str, current: Option<&str>) -> bool {
        if self.odd {
            return false;
        }
        let head = choose_head(&self.refs, self.head.as_deref(), current)
            .or_else(|| current.and_then(RefName::parse));
        refs_hash(&self.refs, head.as_ref()) == served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const T: &str = "3333333333333333333333333333333333333333";

    fn read(lines: &[String]) -> Advertised {
        let mut a = Advertised::default();
        for l in lines {
            a.line(l.as_bytes());
        }
        a
    }

    fn name(s: &str) -> RefName {
        RefName::parse(s).expect("ref name")
    }

    #[test]
    fn reads_refs_and_head_and_matches_the_served_hash() {
        let a = read(&[
            format!("{A} HEAD\0multi_ack symref=HEAD:refs/heads/main agent=git/2.47\n"),
            format!("{B} refs/heads/dev\n"),
            format!("{A} refs/heads/main\n"),
            format!("{T} refs/tags/v1\n"),
            format!("{A} refs/tags/v1^{{}}\n"),
        ]);
        assert!(!a.odd);
        assert_eq!(a.head.as_deref(), Some(A));
        assert_eq!(a.refs.len(), 3);
        assert_eq!(a.refs[&name("refs/tags/v1")].peeled.as_deref(), Some(A));
        let main = Some("refs/heads/main");
        let served = refs_hash(&a.refs, Some(&name("refs/heads/main")));
        assert!(a.matches(&served, main));
        // A sync keeps HEAD where it is while that branch is at the upstream HEAD's commit, and
        // moves it there otherwise.
        assert!(a.matches(&served, Some("refs/heads/dev")));
        let on_dev = refs_hash(&a.refs, Some(&name("refs/heads/dev")));
        assert!(!a.matches(&on_dev, Some("refs/heads/dev")));
        // A ref more or less, a moved ref: not the served state.
        let mut fewer = a.refs.clone();
        fewer.remove(&name("refs/heads/dev"));
        assert!(!a.matches(&refs_hash(&fewer, Some(&name("refs/heads/main"))), main));
        let mut moved = a.refs.clone();
        if let Some(v) = moved.get_mut(&name("refs/heads/dev")) {
            v.oid = A.to_owned();
        }
        assert!(!a.matches(&refs_hash(&moved, Some(&name("refs/heads/main"))), main));
    }

    #[test]
    fn empty_repository_and_odd_lines() {
        let zero = "0".repeat(40);
        let empty = read(&[format!("{zero} capabilities^{{}}\0multi_ack\n")]);
        assert!(!empty.odd && empty.refs.is_empty() && empty.head.is_none());
        // No HEAD advertised (empty, or unborn): a sync keeps the HEAD it has.
        let master = Some("refs/heads/master");
        assert!(empty.matches(
            &refs_hash(&RefMap::new(), Some(&name("refs/heads/master"))),
            master
        ));
        assert!(!empty.matches(&refs_hash(&RefMap::new(), None), master));
        for odd in [
            "ERR access denied\n".to_owned(),
            format!("{A} refs/heads/a..b\n"),
            format!("{A} refs/tags/none^{{}}\n"),
            A.to_owned(),
        ] {
            let a = read(std::slice::from_ref(&odd));
            assert!(a.odd, "{odd:?}");
            assert!(!a.matches(&refs_hash(&a.refs, None), None), "{odd:?}");
        }
    }
}
