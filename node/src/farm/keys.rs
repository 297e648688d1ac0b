//! The typed gossip keys a node publishes and their encodings (a peer's state is read back in
//! [`crate::farm::member`]). Gossip is unauthenticated: every value is a hint, parsed strictly, and skipped when it does not
//! parse. Secrets are never published (not even hashed).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::{Config, Projects};
use mirrorfarm_common::farm::states::StatesDigest;

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
/// predate the key count as format 1. Format 2: ref states over the farm channel, not gossip.
pub const DATA_FORMAT: u32 = 2;
/// Wall clock, Unix milliseconds, refreshed every half second.
pub const CLOCK_MS: &str = "clock_ms";
/// Node state word.
pub const STATE: &str = "state";
/// Since when (Unix ms: the oldest last success) this member, fetching from the upstream, has
/// not reached it; `-` while it reaches it. Only a member's own observation: others' staleness is
/// never republished (that would keep a healed farm stale).
pub const STALE_SINCE_MS: &str = "stale_since_ms";
/// This member's ref states in brief ([`StatesRev`]): the revision of its states (raised with
/// every change) and the digest of all of them. The states themselves go over the farm channel
/// ([`crate::farm::repo_states`]): gossip stays the same size whatever the repository count.
pub const STATES: &str = "states";
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

/// The value of [`STATES`]: `<revision> <digest>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatesRev {
    /// Raised with every change of the member's states (within one incarnation).
    pub rev: u64,
    /// The digest of all of them.
    pub digest: StatesDigest,
}

impl StatesRev {
    /// The gossip value.
    pub fn encode(&self) -> String {
        format!("{} {}", self.rev, self.digest.hex())
    }
    /// Reads a gossip value; `None` when it does not parse.
    pub fn decode(v: &str) -> Option<Self> {
        let (r, d) = v.split_once(' ')?;
        Some(Self {
            rev: r.parse().ok()?,
            digest: StatesDigest::parse(d)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_states_value_round_trips_and_junk_is_refused() {
        let mut digest = StatesDigest::default();
        digest.toggle(&[7; 32]);
        let v = StatesRev { rev: 12, digest };
        assert_eq!(StatesRev::decode(&v.encode()), Some(v));
        for bad in ["", "7", "x abc", &format!("-1 {}", "a".repeat(64)), "3 abc"] {
            assert_eq!(StatesRev::decode(bad), None, "{bad:?}");
        }
    }
}
