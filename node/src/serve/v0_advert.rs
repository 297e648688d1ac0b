//! A protocol-v0 ref advertisement (`git upload-pack --stateless-rpc --advertise-refs`) written
//! from a ref listing held in memory, byte for byte as git writes it: HEAD first when it names an
//! existing branch, then the refs in name order, each annotated tag followed by its peeled
//! object (`name^{}`); git's capabilities after a NUL on the first line, with `symref=HEAD:…`
//! where git puts it. The capabilities are git's own, read once from a real advertisement.

use crate::serve::ls_refs::RefList;

/// What git names when a repository has no ref to put its capabilities on.
const NO_REFS: &str = "0000000000000000000000000000000000000000 capabilities^{}";

/// Git's v0 capabilities, without the `symref=` part (which depends on the repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V0Caps {
    /// Up to where `symref=` goes (git writes it after `no-done`).
    before: Vec<String>,
    /// From `filter`, `session-id=…` or `object-format=…` on.
    after: Vec<String>,
}

/// Why git's advertisement could not be read for its capabilities.
#[derive(Debug, thiserror::Error)]
#[error("git's ref advertisement has no capabilities: {0}")]
pub struct CapsError(String);

impl V0Caps {
    /// Reads the capabilities off git's advertisement `adv` (pkt-lines, without the
    /// `# service=` preamble).
    pub fn from_advertisement(adv: &[u8]) -> Result<Self, CapsError> {
        let first = adv
            .get(4..)
            .and_then(|rest| {
                let len = adv
                    .get(..4)?
                    .try_into()
                    .ok()
                    .and_then(crate::pktline::length)?;
                rest.get(..len.checked_sub(4)?)
            })
            .ok_or_else(|| CapsError("no first line".into()))?;
        let nul = first
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| CapsError("no NUL on the first line".into()))?;
        let caps = std::str::from_utf8(&first[nul + 1..])
            .map_err(|_| CapsError("not UTF-8".into()))?
            .trim_end_matches('\n');
        let tokens: Vec<&str> = caps.split(' ').filter(|t| !t.is_empty()).collect();
        let at = tokens
            .iter()
            .position(|t| {
                *t == "filter" || t.starts_with("session-id=") || t.starts_with("object-format=")
            })
            .ok_or_else(|| CapsError(format!("no object-format in {caps:?}")))?;
        let keep = |ts: &[&str]| -> Vec<String> {
            ts.iter()
                .filter(|t| !t.starts_with("symref="))
                .map(|t| (*t).to_owned())
                .collect()
        };
        Ok(Self {
            before: keep(&tokens[..at]),
            after: keep(&tokens[at..]),
        })
    }

    fn render(&self, head_target: Option<&str>) -> String {
        let mut out = self.before.join(" ");
        if let Some(t) = head_target {
            out.push_str(" symref=HEAD:");
            out.push_str(t);
        }
        for t in &self.after {
            out.push(' ');
            out.push_str(t);
        }
        out
    }
}

/// The advertisement of `list` with `caps` (pkt-lines and the closing flush).
pub fn advertisement(list: &RefList, caps: &V0Caps) -> Vec<u8> {
    let mut lines: Vec<(&str, &str, Option<&str>)> = Vec::with_capacity(list.refs.len() + 1);
    let mut symref = None;
    if let Some((target, Some(oid))) = &list.head {
        // HEAD is sent (and named in `symref=`) only when it resolves.
        let peeled = list
            .refs
            .iter()
            .find(|(n, _, _)| n == target)
            .and_then(|(_, _, p)| p.as_deref());
        lines.push(("HEAD", oid.as_str(), peeled));
        symref = Some(target.as_str());
    }
    for (name, oid, peeled) in &list.refs {
        lines.push((name, oid, peeled.as_deref()));
    }
    let caps = caps.render(symref);
    let mut out = Vec::with_capacity(lines.len() * 64 + caps.len() + 64);
    if lines.is_empty() {
        out.extend(crate::pktline::pkt(&format!("{NO_REFS}\0{caps}\n")));
    }
    for (i, (name, oid, peeled)) in lines.iter().enumerate() {
        let line = if i == 0 {
            format!("{oid} {name}\0{caps}\n")
        } else {
            format!("{oid} {name}\n")
        };
        out.extend(crate::pktline::pkt(&line));
        if let Some(p) = peeled {
            out.extend(crate::pktline::pkt(&format!("{p} {name}^{{}}\n")));
        }
    }
    out.extend_from_slice(crate::pktline::FLUSH);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adv(first: &str) -> Vec<u8> {
        let mut v = crate::pktline::pkt(first);
        v.extend_from_slice(crate::pktline::FLUSH);
        v
    }

    #[test]
    fn capabilities_take_the_repository_s_symref() {
        let a = "a".repeat(40);
        let git = adv(&format!(
            "{a} HEAD\0multi_ack no-done symref=HEAD:refs/heads/old filter object-format=sha1 agent=git/2\n"
        ));
        let caps = V0Caps::from_advertisement(&git).expect("caps");
        let list = RefList::new(
            Some(("refs/heads/main".into(), Some(a.clone()))),
            vec![("refs/heads/main".into(), a.clone(), None)],
        );
        let ours = String::from_utf8(advertisement(&list, &caps)).expect("utf-8");
        assert!(
            ours.contains("\0multi_ack no-done symref=HEAD:refs/heads/main filter object-format=sha1 agent=git/2\n"),
            "{ours:?}"
        );
        let empty = RefList::new(Some(("refs/heads/main".into(), None)), vec![]);
        let ours = String::from_utf8(advertisement(&empty, &caps)).expect("utf-8");
        assert!(
            ours.contains(&format!(
                "{NO_REFS}\0multi_ack no-done filter object-format"
            )),
            "{ours:?}"
        );
        assert!(V0Caps::from_advertisement(b"0000").is_err());
    }
}
