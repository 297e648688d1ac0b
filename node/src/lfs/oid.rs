//! An LFS object ID: the SHA-256 of the object's content, 64 lowercase hex digits.

use std::fmt;
use std::path::PathBuf;

/// A valid LFS object ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LfsOid(String);

impl LfsOid {
    /// Parses an object ID; `None` unless it is 64 lowercase hex digits (what git-lfs writes and
    /// the batch API sends).
    pub fn parse(s: &str) -> Option<Self> {
        crate::names::is_sha256_hex(s).then(|| Self(s.to_owned()))
    }

    /// The object ID of `sha256` (a finished digest).
    pub fn from_digest(sha256: &[u8]) -> Self {
        Self(mirrorfarm_common::farm::proof::hex(sha256))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the object lives under a store root: `ab/cd/<oid>` (git-lfs's own layout).
    pub fn rel_path(&self) -> PathBuf {
        PathBuf::from(&self.0[0..2])
            .join(&self.0[2..4])
            .join(&self.0)
    }
}

impl fmt::Display for LfsOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_sha256_hex_is_an_oid() {
        let good = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";
        let oid = LfsOid::parse(good).expect("valid");
        assert_eq!(oid.rel_path(), PathBuf::from("4d").join("7a").join(good));
        for bad in [
            "",
            &good[1..],
            &good.to_uppercase(),
            &format!("{good}0"),
            "../../../../../../../../../../../../../../../../../../../../etc/passwd",
            &good.replace('4', "g"),
        ] {
            assert!(LfsOid::parse(bad).is_none(), "{bad} accepted");
        }
        assert_eq!(LfsOid::from_digest(&[0xab; 32]).as_str(), "ab".repeat(32));
    }
}
