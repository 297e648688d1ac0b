//! The typed gossip keys a node publishes, and reading a peer's state back into a [`Member`].
//! Gossip is unauthenticated: every value is a hint, parsed strictly, and skipped when it does not
//! parse. Secrets are never published (not even hashed).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use chitchat::{ChitchatId, NodeState};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, Projects};
use crate::farm::signing::{GossipKey, Publisher};
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

/// What a peer says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node ID.
    pub node_id: String,
    /// HTTP listener.
    pub http: Option<SocketAddr>,
    /// SSH listener.
    pub ssh: Option<SocketAddr>,
    /// Version.
    pub version: String,
    /// Data format ([`DATA_FORMAT`] of its build).
    pub format: u32,
    /// Its clock when it last published (Unix ms).
    pub clock_ms: Option<i64>,
    /// Since when it has not reached the upstream (Unix ms, by its clock), if it has not.
    pub stale_since_ms: Option<i64>,
    /// State word.
    pub state: String,
    /// Configuration digests by key.
    pub config: BTreeMap<String, String>,
    /// Whether it is a load balancer rather than a node.
    pub is_lb: bool,
    /// Its gossip (and farm TLS) address.
    pub gossip: Option<SocketAddr>,
    /// The ref state it serves, per repository (`PROJECT/repo`).
    pub refs: BTreeMap<String, Served>,
    /// The newest state it has staged, per repository.
    pub staged: BTreeMap<String, StagedHint>,
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

/// The signed per-repository values under `prefix` that verify and decode.
fn repo_values<T>(
    st: &NodeState,
    prefix: &str,
    open: impl Fn(&str, &str) -> Option<T>,
) -> BTreeMap<String, T> {
    st.key_values()
        .filter_map(|(k, v)| {
            let repo = k.strip_prefix(prefix)?;
            crate::names::RepoId::parse(repo).ok()?;
            Some((repo.to_owned(), open(k, v)?))
        })
        .collect()
}

fn word(s: &str) -> Option<String> {
    (s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c)))
    .then(|| s.to_owned())
}

impl Member {
    /// Reads a peer's gossip state; values that do not parse, and ref states whose signature
    /// under the farm's gossip key does not verify, are left out.
    pub fn from_state(id: &ChitchatId, st: &NodeState, key: &GossipKey) -> Self {
        let by = Publisher {
            node_id: &id.node_id,
            generation: id.generation_id,
        };
        let config = st
            .key_values()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(CONFIG_PREFIX)?;
                let known = FARM_KEYS.contains(&key) || LATER_FARM_KEYS.contains(&key);
                (known && is_hash(v)).then(|| (key.to_owned(), v.to_owned()))
            })
            .collect();
        Self {
            node_id: word(&id.node_id).unwrap_or_default(),
            http: st.get(HTTP).and_then(|v| v.parse().ok()),
            ssh: st.get(SSH).and_then(|v| v.parse().ok()),
            version: st.get(VERSION).and_then(word).unwrap_or_default(),
            format: st.get(FORMAT).and_then(|v| v.parse().ok()).unwrap_or(1),
            clock_ms: st.get(CLOCK_MS).and_then(|v| v.parse().ok()),
            stale_since_ms: st.get(STALE_SINCE_MS).and_then(|v| v.parse().ok()),
            state: st.get(STATE).and_then(word).unwrap_or_default(),
            config,
            is_lb: st.get(mirrorfarm_common::gossip::ROLE)
                == Some(mirrorfarm_common::gossip::ROLE_LB),
            gossip: Some(id.gossip_advertise_addr),
            refs: repo_values(st, REFS_PREFIX, |k, v| Served::decode(key.open(by, k, v)?)),
            staged: repo_values(st, STAGED_PREFIX, |k, v| {
                StagedHint::decode(key.open(by, k, v)?)
            }),
        }
    }

    /// The farm keys on which this member disagrees with `ours` (missing counts as different).
    pub fn mismatched_keys(&self, ours: &BTreeMap<&'static str, String>) -> Vec<String> {
        ours.iter()
            .filter(|(k, v)| differs(k, v, self.config.get(**k).map(String::as_str)))
            .map(|(k, _)| (*k).to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_key_is_compared_only_when_published() {
        let ours: BTreeMap<&'static str, String> = FARM_KEYS
            .iter()
            .chain(LATER_FARM_KEYS.iter())
            .map(|k| (*k, "a".repeat(64)))
            .collect();
        let mut m = Member {
            node_id: "n".into(),
            http: None,
            ssh: None,
            version: "0.1.0".into(),
            format: DATA_FORMAT,
            clock_ms: None,
            stale_since_ms: None,
            state: String::new(),
            config: FARM_KEYS
                .iter()
                .map(|k| ((*k).to_owned(), "a".repeat(64)))
                .collect(),
            is_lb: false,
            gossip: None,
            refs: BTreeMap::new(),
            staged: BTreeMap::new(),
        };
        assert!(m.mismatched_keys(&ours).is_empty(), "an older member");
        m.config.insert("mirror.admins".into(), "b".repeat(64));
        assert_eq!(m.mismatched_keys(&ours), ["mirror.admins"]);
        m.config.remove("mirror.repos");
        assert_eq!(m.mismatched_keys(&ours), ["mirror.admins", "mirror.repos"]);
    }

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
