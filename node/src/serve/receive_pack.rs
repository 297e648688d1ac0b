//! Reading a push as it passes: the ref updates a receive-pack request asks for (the commands
//! before its first flush) and which of them the upstream's report accepted (`ok <ref>`, inside
//! side-band 1 when the client asked for side-band). Bounded: a request whose commands do not fit
//! in [`MAX_HEAD`] is not followed.

use std::collections::BTreeMap;

use crate::pktline::{self, Packet, SplitError};

/// At most this much of a request (its commands) or a response (its report) is kept to read.
pub const MAX_HEAD: usize = 1 << 20;

/// The commands of a receive-pack request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    /// Ref → its new object (all zeros: deleted).
    pub updates: BTreeMap<String, String>,
    /// The client asked for side-band (its report and progress come in bands).
    pub sideband: bool,
}

/// A packet's payload (`None` for a special packet) and the bytes it takes, if whole.
type Next<'a> = Option<(Option<&'a [u8]>, usize)>;

/// The next packet of `buf`: `Some((None, n))` for a flush (or another special packet),
/// `Some((Some(payload), n))` for data, `None` when `buf` holds no whole packet; `Err` for broken
/// framing.
fn next_pkt(buf: &[u8]) -> Result<Next<'_>, ()> {
    match pktline::split(buf) {
        Ok((Packet::Data(p), n)) => Ok(Some((Some(p), n))),
        Ok((_, n)) => Ok(Some((None, n))),
        Err(SplitError::Short) => Ok(None),
        Err(SplitError::BadLength) => Err(()),
    }
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The commands at the start of a request, once `head` holds them all; `None` if it does not
/// (yet), or if they are not plain ref updates (a signed push is not followed).
pub fn commands(head: &[u8]) -> Option<Commands> {
    let mut at = 0;
    let mut out = Commands {
        updates: BTreeMap::new(),
        sideband: false,
    };
    let mut first = true;
    loop {
        let (pkt, used) = next_pkt(&head[at..]).ok()??;
        at += used;
        let Some(payload) = pkt else {
            return Some(out);
        };
        let line = std::str::from_utf8(payload).ok()?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.starts_with("shallow ") {
            continue;
        }
        let (cmd, caps) = line.split_once('\0').unwrap_or((line, ""));
        if first {
            out.sideband = caps
                .split(' ')
                .any(|c| c == "side-band-64k" || c == "side-band");
            first = false;
        }
        let mut parts = cmd.splitn(3, ' ');
        let (old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
        if !is_oid(old) || !is_oid(new) || !name.starts_with("refs/") {
            return None;
        }
        out.updates.insert(name.to_owned(), new.to_owned());
    }
}

/// The refs the upstream's report says it updated (`ok <ref>`), from the whole response; `None`
/// when no report can be read from it.
pub fn accepted(response: &[u8], sideband: bool) -> Option<Vec<String>> {
    let inner: Vec<u8>;
    let report: &[u8] = if sideband {
        let mut v = Vec::new();
        let mut at = 0;
        while let Some((pkt, used)) = next_pkt(&response[at..]).ok()? {
            at += used;
            match pkt {
                Some(p) if p.first() == Some(&1) => v.extend_from_slice(&p[1..]),
                Some(_) => {}
                None => break,
            }
        }
        inner = v;
        &inner
    } else {
        response
    };
    let mut at = 0;
    let mut ok = Vec::new();
    let mut unpacked = false;
    while let Some((pkt, used)) = next_pkt(&report[at..]).ok()? {
        at += used;
        let Some(p) = pkt else { break };
        let line = std::str::from_utf8(p).ok()?.trim_end_matches('\n');
        if line == "unpack ok" {
            unpacked = true;
        } else if let Some(r) = line.strip_prefix("ok ") {
            ok.push(r.to_owned());
        }
    }
    unpacked.then_some(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktline::{pkt, FLUSH};

    #[test]
    fn commands_and_report() {
        let (a, b) = ("1".repeat(40), "2".repeat(40));
        let mut req = pkt(&format!(
            "{a} {b} refs/heads/main\0report-status side-band-64k agent=git/2\n"
        ));
        req.extend(pkt(&format!("{} {a} refs/heads/gone\n", "0".repeat(40))));
        assert_eq!(commands(&req), None, "no flush yet");
        req.extend_from_slice(FLUSH);
        req.extend_from_slice(b"PACK...");
        let c = commands(&req).expect("commands");
        assert!(c.sideband);
        assert_eq!(c.updates.get("refs/heads/main"), Some(&b));
        assert_eq!(c.updates.len(), 2);
        // The report inside band 1, progress in band 2.
        let mut inner = pkt("unpack ok\n");
        inner.extend(pkt("ok refs/heads/main\n"));
        inner.extend(pkt("ng refs/heads/gone hook declined\n"));
        inner.extend_from_slice(FLUSH);
        let mut resp = pkt("\u{2}progress\n");
        let mut band = vec![1u8];
        band.extend(&inner);
        let mut p = format!("{:04x}", band.len() + 4).into_bytes();
        p.extend(band);
        resp.extend(p);
        resp.extend_from_slice(FLUSH);
        assert_eq!(
            accepted(&resp, true),
            Some(vec!["refs/heads/main".to_owned()])
        );
        assert_eq!(
            accepted(&inner, false),
            Some(vec!["refs/heads/main".to_owned()])
        );
        assert_eq!(
            accepted(&pkt("unpack index-pack abnormal exit\n"), false),
            None
        );
        assert_eq!(commands(b"zzzz"), None);
    }
}
