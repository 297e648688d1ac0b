//! The typed gossip keys a node publishes and their encodings (a peer's state is read back in
//! [`crate::farm::member`]). Gossip is unauthenticated: every value is a hint, parsed strictly, and skipped when it does not
//! parse. Secrets are never published (not even hashed).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, Projects};
use crate::names::RefName;
pub use crate::state::StagedHint;

/// The node's HTTP listener as peers reach it.
pub const HTTP: &str = "http";
/// The node's SSH listener as peers reach it.
pub const SSH: &str = "ssh";
/// mirrorfarm version.
pub const VERSION: &str = "version";
/// The data format a member reads and writes (gossip values, farm channel messages, its store):
/// members of different formats do not form one farm.
pub const FORMAT: &str = "format";
/// This build's data format. Raise it with any change older members would misread; members that
/// predate the key count as format 1.
pub const DATA_FORMAT: u32 = 1;
/// Wall clock, Unix milliseconds, refreshed every half second.
pub const CLOCK_MS: &str = "clock_ms";
/// Node state word.
pub const STATE: &str = "state";
/// Since when (Unix ms: the oldest last success) this member, fetching from the upstream, has
/// not reached it; `-` while it reaches it. Only a member's own observation: others' staleness is
/// never republished (that would keep a healed farm stale).
pub const STALE_SINCE_MS: &str = "stale_since_ms";
/// Prefix of the published ref states: `refs:<PROJECT/repo>` = `<generation> <refs hash>` this
/// member serves (signed, see [`crate::farm::signing`]).
pub const REFS_PREFIX: &str = "refs:";
/// Prefix of the staged states: `staged:<PROJECT/repo>` = `<refs hash> <HEAD branch or ->` of the
/// newest state this member holds complete (objects present, refs hidden until the farm flips;
/// signed).
pub const STAGED_PREFIX: &str = "staged:";
/// A counter a member raises in every round in which it set or removed any of its
/// [`REFS_PREFIX`] / [`STAGED_PREFIX`] keys (after them, so it arrives with them or later): a
/// peer re-reads those keys only when it moved. Members that predate it are re-read whenever
/// anything of theirs changed.
pub const REPOS_REV: &str = "repos_rev";
/// Prefix of the configuration digests: `config:<key>` = SHA-256 of the value.
pub const CONFIG_PREFIX: &str = "config:";

/// The configuration keys every member of a farm must agree on (their digests are gossiped;
/// `farm.secret` is not: it is never published in any form).
pub const FARM_KEYS: [&str; 8] = [
    "plugin.mirroring.upstream.url",
    "setup.baseUrl",
    "mirror.repos",
    "mirror.projects",
    "mirror.access",
    "plugin.mirroring.upstream.auth.url",
    "hazelcast.http.sessions",
    // With the API and manifest URLs: where the inventory comes from.
    "plugin.mirroring.upstream.type",
];

/// Farm keys added after members were first released. A member that does not publish one runs
/// an older version (a rolling upgrade): it is not compared on that key, and it is not refused;
/// members that publish it must agree on it like on the [`FARM_KEYS`].
pub const LATER_FARM_KEYS: [&str; 1] = ["mirror.admins"];

/// Whether a peer publishing `theirs` for farm key `key` differs from our `ours` (a
/// [`LATER_FARM_KEYS`] key a peer does not publish does not differ).
pub fn differs(key: &str, ours: &str, theirs: Option<&str>) -> bool {
    match theirs {
        None => !LATER_FARM_KEYS.contains(&key),
        Some(t) => t != ours,
    }
}

fn digest(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The digests of this node's [`FARM_KEYS`].
pub fn config_digests(c: &Config) -> BTreeMap<&'static str, String> {
    let repos: Vec<String> = c.repos.iter().map(|r| r.to_string()).collect();
    let projects = match &c.projects {
        Projects::None => String::new(),
        Projects::All => "*".into(),
        Projects::Some(p) => p
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect::<Vec<_>>()
            .join(","),
    };
    let access = match c.access {
        crate::config::Access::Anonymous => "anonymous",
        crate::config::Access::Authenticated => "authenticated",
    };
    let sessions = match c.auth.sessions {
        crate::config::SessionMode::Replicated => "replicated",
        crate::config::SessionMode::Local => "local",
    };
    let values = [
        c.upstream.to_string(),
        c.base_url.clone(),
        repos.join(","),
        projects,
        access.to_owned(),
        c.auth.auth_url.clone().unwrap_or_default(),
        sessions.to_owned(),
        format!(
            "{} {} {}",
            c.forge.kind.as_str(),
            c.forge.api_url.as_deref().unwrap_or_default(),
            c.forge.manifest_url.as_deref().unwrap_or_default()
        ),
    ];
    let mut admins = c.admins.clone();
    admins.sort_unstable();
    let later = [admins.join(",")];
    FARM_KEYS
        .iter()
        .zip(values)
        .chain(LATER_FARM_KEYS.iter().zip(later))
        .map(|(k, v)| (*k, digest(&v)))
        .collect()
}

/// Whether `v` is a ref map hash.
pub(crate) fn is_hash(v: &str) -> bool {
    crate::names::is_sha256_hex(v)
}

/// A ref state a member serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    /// Generation (counts the farm's flips of this repository).
    pub generation: u64,
    /// Hash of the ref map.
    pub refs_hash: String,
}

impl Served {
    /// The gossip value.
    pub fn encode(&self) -> String {
        format!("{} {}", self.generation, self.refs_hash)
    }
    /// Reads a gossip value; `None` when it does not parse.
    pub fn decode(v: &str) -> Option<Self> {
        let (g, h) = v.split_once(' ')?;
        Some(Self {
            generation: g.parse().ok()?,
            refs_hash: h.to_owned(),
        })
        .filter(|s| is_hash(&s.refs_hash))
    }
}

// The gossip encoding of a staged state (the type is the repository map's).
impl StagedHint {
    /// The gossip value (`<hash> <branch or ->`).
    pub fn encode(&self) -> String {
        let head = self.head.as_ref().map(RefName::as_str).unwrap_or("-");
        format!("{} {head}", self.refs_hash)
    }
    /// Reads a gossip value; `None` when it does not parse.
    pub fn decode(v: &str) -> Option<Self> {
        let (h, head) = v.split_once(' ')?;
        let head = match head {
            "-" => None,
            b => Some(RefName::parse(b).filter(|r| r.as_str().starts_with("refs/heads/"))?),
        };
        is_hash(h).then(|| Self {
            refs_hash: h.to_owned(),
            head,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_values_round_trip_and_reject_junk() {
        let s = Served {
            generation: 7,
            refs_hash: "a".repeat(64),
        };
        assert_eq!(Served::decode(&s.encode()), Some(s));
        let h = StagedHint {
            refs_hash: "b".repeat(64),
            head: RefName::parse("refs/heads/main"),
        };
        assert_eq!(StagedHint::decode(&h.encode()), Some(h));
        assert!(
            StagedHint::decode(&format!("{} -", "c".repeat(64))).is_some_and(|h| h.head.is_none())
        );
        for bad in ["", "7", "x abc", &format!("-1 {}", "a".repeat(64))] {
            assert_eq!(Served::decode(bad), None, "{bad:?}");
        }
        assert_eq!(
            StagedHint::decode(&format!("{} refs/tags/v1", "a".repeat(64))),
            None
        );
    }
}
