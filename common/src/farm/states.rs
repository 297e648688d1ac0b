//! Members' ref states over the farm channel. Gossip carries only each member's revision and a
//! digest of all its states (bytes independent of the repository count); a member whose revision
//! moved is asked for what changed since the revision last read: `GET <STATES>?since=R` →
//! [`StatesAnswer`].

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::farm::client::{json_answer, FarmClient};
use crate::farm::{FarmError, STATES};

/// The largest answer read (every state of a few hundred thousand repositories).
const MAX_STATES_ANSWER: usize = 128 << 20;

/// One repository's state on the member that answers; all fields empty: it no longer holds it.
/// Unknown fields are ignored (a later version may add some).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    /// `PROJECT/repo`.
    pub repo: String,
    /// Generation served (0: none).
    #[serde(default)]
    pub generation: u64,
    /// Hash of the ref map served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs_hash: Option<String>,
    /// Hash of the newest state staged and not yet served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_hash: Option<String>,
    /// The branch HEAD names in the staged state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_head: Option<String>,
}

impl StateEntry {
    /// Whether it says the repository is gone from the member.
    pub fn is_gone(&self) -> bool {
        self.refs_hash.is_none() && self.staged_hash.is_none()
    }

    /// This state's share of a member's digest (see [`StatesDigest`]); zero for a gone one.
    pub fn digest_part(&self) -> [u8; 32] {
        if self.is_gone() {
            return [0; 32];
        }
        let mut h = Sha256::new();
        for part in [
            self.repo.as_str(),
            &self.generation.to_string(),
            self.refs_hash.as_deref().unwrap_or("-"),
            self.staged_hash.as_deref().unwrap_or("-"),
            self.staged_head.as_deref().unwrap_or("-"),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }
}

/// One hash over every repository's state of a member: the XOR of their
/// [`StateEntry::digest_part`]s, so a change updates it in constant time and a peer that
/// rebuilt the states from changes can check it holds exactly what the member holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatesDigest(pub [u8; 32]);

impl StatesDigest {
    /// Adds or removes (XOR is its own inverse) one state's part.
    pub fn toggle(&mut self, part: &[u8; 32]) {
        for (a, b) in self.0.iter_mut().zip(part) {
            *a ^= b;
        }
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads [`StatesDigest::hex`].
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut d = [0u8; 32];
        for (i, out) in d.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(d))
    }
}

/// What a member answers `GET <STATES>?since=R`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatesAnswer {
    /// The answering member's incarnation (its gossip generation): revisions count within one.
    pub generation: u64,
    /// Its revision now: the states below bring a reader at `since` up to it.
    pub rev: u64,
    /// The digest of all its states at `rev`.
    pub digest: String,
    /// Whether `states` are all of them (what they do not list is gone): asked with `since`
    /// 0, or with a revision this incarnation never reached.
    #[serde(default)]
    pub full: bool,
    /// Every state changed after `since` (all of them when `since` is 0), gone ones included.
    pub states: Vec<StateEntry>,
}

impl FarmClient {
    /// Asks member `node_id` at `addr` for its states changed after revision `since`.
    pub async fn states(
        &self,
        node_id: &str,
        addr: SocketAddr,
        since: u64,
    ) -> Result<StatesAnswer, FarmError> {
        let url = format!("{}?since={since}", self.url(node_id, addr, STATES));
        let mut r = self
            .send(addr, self.http.get(url).timeout(Duration::from_secs(120)))
            .await?;
        json_answer(&addr.to_string(), &mut r, MAX_STATES_ANSWER).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_changes_in_any_order_and_reads_back() {
        let a = StateEntry {
            repo: "P/a".into(),
            generation: 2,
            refs_hash: Some("a".repeat(64)),
            ..Default::default()
        };
        let mut b = StateEntry {
            repo: "P/b".into(),
            staged_hash: Some("b".repeat(64)),
            staged_head: Some("refs/heads/main".into()),
            ..Default::default()
        };
        let (mut x, mut y) = (StatesDigest::default(), StatesDigest::default());
        x.toggle(&a.digest_part());
        x.toggle(&b.digest_part());
        y.toggle(&b.digest_part());
        y.toggle(&a.digest_part());
        assert_eq!(x, y);
        assert_ne!(x, StatesDigest::default());
        assert_eq!(StatesDigest::parse(&x.hex()), Some(x));
        assert_eq!(StatesDigest::parse("zz"), None);
        // b changes: out with the old part, in with the new.
        y.toggle(&b.digest_part());
        b.generation = 1;
        y.toggle(&b.digest_part());
        assert_ne!(x, y);
        assert_eq!(StateEntry::default().digest_part(), [0; 32]);
    }
}
