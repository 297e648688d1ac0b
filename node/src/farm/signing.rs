//! Signed gossip values. chitchat authenticates nothing, so the values members act on (the ref
//! states they serve and stage) carry a MAC under a key derived from the farm secret, bound to
//! the publishing member's incarnation (node ID and chitchat generation) and the key name. A
//! process that does not know the secret cannot make a member look ahead or behind; a replayed
//! value from an earlier incarnation does not verify. The secret itself never leaves the node.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of the MAC on the wire, in hex characters (128 bits).
const MAC_HEX: usize = 32;

/// A key of the farm for one purpose (`label`), derived from the farm secret: what one member
/// makes with it, every other verifies.
pub fn farm_key(secret: &str, label: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

/// The gossip signing key of a farm.
#[derive(Clone)]
pub struct GossipKey([u8; 32]);

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey(***)")
    }
}

/// Who published a value: node ID and chitchat generation (its incarnation).
#[derive(Debug, Clone, Copy)]
pub struct Publisher<'a> {
    /// Node ID.
    pub node_id: &'a str,
    /// chitchat generation of this incarnation.
    pub generation: u64,
}

impl GossipKey {
    /// Derives the key from the farm secret.
    pub fn derive(secret: &str) -> Self {
        Self(farm_key(secret, b"mirrorfarm gossip signing v1"))
    }

    fn mac(&self, by: Publisher<'_>, key: &str, value: &str) -> String {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in [
            by.node_id.as_bytes(),
            &by.generation.to_be_bytes(),
            key.as_bytes(),
            value.as_bytes(),
        ] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        m.finalize().into_bytes()[..MAC_HEX / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `value` with its MAC appended (`<value> <mac>`).
    pub fn sign(&self, by: Publisher<'_>, key: &str, value: &str) -> String {
        format!("{value} {}", self.mac(by, key, value))
    }

    /// The value of a signed gossip entry, if its MAC verifies.
    pub fn open<'v>(&self, by: Publisher<'_>, key: &str, signed: &'v str) -> Option<&'v str> {
        let (value, mac) = signed.rsplit_once(' ')?;
        let expected = self.mac(by, key, value);
        // Constant-time comparison.
        let same = mac.len() == expected.len()
            && mac
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_farm_key_and_the_same_incarnation_verify() {
        let k = GossipKey::derive("correct-horse-battery-staple");
        let by = Publisher {
            node_id: "n1",
            generation: 7,
        };
        let s = k.sign(by, "refs:P/r", "3 abc");
        assert_eq!(k.open(by, "refs:P/r", &s), Some("3 abc"));
        // Another key, key name, node, incarnation or value: refused.
        let other = GossipKey::derive("another-secret-of-16+");
        assert_eq!(other.open(by, "refs:P/r", &s), None);
        assert_eq!(k.open(by, "refs:P/x", &s), None);
        let n2 = Publisher {
            node_id: "n2",
            generation: 7,
        };
        assert_eq!(k.open(n2, "refs:P/r", &s), None);
        let later = Publisher {
            node_id: "n1",
            generation: 8,
        };
        assert_eq!(k.open(later, "refs:P/r", &s), None);
        let forged = s.replacen("3 abc", "9 abc", 1);
        assert_eq!(k.open(by, "refs:P/r", &forged), None);
        assert_eq!(k.open(by, "refs:P/r", "3 abc"), None);
    }
}
