//! The short-lived token in a download action's header: it lets any member serve one object of one
//! repository until it expires, without the client's credentials (the batch request that issued it
//! was checked). Keyed from the farm secret, so every member verifies what another issued; a node
//! without a farm keys it at random (its tokens hold on it alone). Never logged.
//!
//! Form: `v1.<expiry, Unix seconds>.<base64url HMAC-SHA256 over (expiry, repository, oid, size)>`.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::lfs::oid::LfsOid;
use crate::names::RepoId;

/// The header a download action carries the token in (not `Authorization`: that one holds a
/// client's credentials, which the token is not).
pub const HEADER: &str = "x-mirrorfarm-lfs-token";

/// The `Authorization` scheme an SSH-issued access token travels in (git-lfs's own docs use it
/// for `git-lfs-authenticate` answers).
pub const ACCESS_SCHEME: &str = "RemoteAuth";

const ACCESS_LABEL: &[u8] = b"ssh access";

/// Why a token does not open an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this form.
    #[error("malformed LFS token")]
    Malformed,
    /// Past its expiry.
    #[error("expired LFS token")]
    Expired,
    /// Issued for another object or repository, or under another key.
    #[error("LFS token not valid for this object")]
    Invalid,
}

/// The key tokens are made and checked with.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    /// The farm's key, derived from its secret.
    pub fn from_farm_secret(secret: &str) -> Self {
        Self(crate::farm::signing::farm_key(
            secret,
            b"mirrorfarm LFS download tokens v1",
        ))
    }

    /// A key of this process alone.
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("the OS random source is available");
        Self(k)
    }

    /// The MAC over length-prefixed parts (a download token's three parts and an access token's
    /// four, led by a label, never read as one another).
    fn mac_of(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in parts {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        m
    }

    fn mac(&self, expiry: u64, repo: &RepoId, oid: &LfsOid, size: u64) -> Hmac<Sha256> {
        let repo = repo.to_string();
        self.mac_of(&[
            &expiry.to_be_bytes()[..],
            repo.as_bytes(),
            oid.as_str().as_bytes(),
            &size.to_be_bytes()[..],
        ])
    }

    fn access_mac(&self, expiry: u64, repo: &RepoId, user: &str) -> Hmac<Sha256> {
        let repo = repo.to_string();
        self.mac_of(&[
            ACCESS_LABEL,
            &expiry.to_be_bytes()[..],
            repo.as_bytes(),
            user.as_bytes(),
        ])
    }

    /// An access token for the batch API of `repo` (downloads), issued to SSH user `user` by
    /// `git-lfs-authenticate`, valid until `expiry`. Form: `a1.<expiry>.<user, base64>.<tag>`.
    pub fn issue_access(&self, repo: &RepoId, user: &str, expiry: u64) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let tag = self.access_mac(expiry, repo, user).finalize().into_bytes();
        format!("a1.{expiry}.{}.{}", b64.encode(user), b64.encode(tag))
    }

    /// The user an access token was issued to, if it opens `repo` at `now`.
    pub fn verify_access(
        &self,
        token: &str,
        repo: &RepoId,
        now: u64,
    ) -> Result<String, TokenError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = token.trim().splitn(4, '.');
        let (Some("a1"), Some(expiry), Some(user), Some(tag)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let user = b64
            .decode(user)
            .ok()
            .and_then(|u| String::from_utf8(u).ok())
            .ok_or(TokenError::Malformed)?;
        let tag = b64.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.access_mac(expiry, repo, &user)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Invalid)?;
        if now > expiry {
            return Err(TokenError::Expired);
        }
        Ok(user)
    }

    /// A token for `oid` (of `size` bytes) of `repo`, valid until `expiry` (Unix seconds).
    pub fn issue(&self, repo: &RepoId, (oid, size): (&LfsOid, u64), expiry: u64) -> String {
        let tag = self.mac(expiry, repo, oid, size).finalize().into_bytes();
        format!(
            "v1.{expiry}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Whether `token` opens `oid` (of `size` bytes) of `repo` at `now` (Unix seconds);
    /// constant-time comparison.
    pub fn verify(
        &self,
        token: &str,
        repo: &RepoId,
        (oid, size): (&LfsOid, u64),
        now: u64,
    ) -> Result<(), TokenError> {
        let mut parts = token.trim().splitn(3, '.');
        let (Some("v1"), Some(expiry), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(expiry, repo, oid, size)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Invalid)?;
        if now > expiry {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_object_until_it_expires_and_nothing_else() {
        let key = TokenKey::from_farm_secret("farm secret of at least sixteen characters");
        let repo = RepoId::parse("PROJ/repo").expect("repo");
        let other_repo = RepoId::parse("PROJ/other").expect("repo");
        let oid = LfsOid::parse(&"ab".repeat(32)).expect("oid");
        let other_oid = LfsOid::parse(&"cd".repeat(32)).expect("oid");
        let t = key.issue(&repo, (&oid, 7), 1000);
        assert!(!t.contains(char::is_whitespace));
        assert_eq!(key.verify(&t, &repo, (&oid, 7), 999), Ok(()));
        assert_eq!(key.verify(&t, &repo, (&oid, 7), 1000), Ok(()));
        assert_eq!(
            key.verify(&t, &repo, (&oid, 7), 1001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            key.verify(&t, &other_repo, (&oid, 7), 999),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            key.verify(&t, &repo, (&other_oid, 7), 999),
            Err(TokenError::Invalid)
        );
        // Another size than the one it was issued for.
        assert_eq!(
            key.verify(&t, &repo, (&oid, 8), 999),
            Err(TokenError::Invalid)
        );
        // Another farm's key, or a later expiry written in by hand: refused.
        let stranger = TokenKey::from_farm_secret("another farm's secret, sixteen+");
        assert_eq!(
            stranger.verify(&t, &repo, (&oid, 7), 999),
            Err(TokenError::Invalid)
        );
        let stretched = t.replacen("v1.1000.", "v1.99999.", 1);
        assert_eq!(
            key.verify(&stretched, &repo, (&oid, 7), 999),
            Err(TokenError::Invalid)
        );
        // A node's own random key: its tokens hold on it alone.
        let own = TokenKey::random();
        assert_eq!(
            own.verify(&t, &repo, (&oid, 7), 999),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            own.verify(&own.issue(&repo, (&oid, 7), 5), &repo, (&oid, 7), 1),
            Ok(())
        );
        for junk in [
            "",
            "v1",
            "v2.1000.abc",
            "v1.x.abc",
            "v1.1000.!!!",
            "v1.1000.",
            "v1.-1.AAAA",
        ] {
            assert!(key.verify(junk, &repo, (&oid, 7), 0).is_err(), "{junk:?}");
        }
        assert_eq!(format!("{key:?}"), "TokenKey(…)");
    }

    #[test]
    fn an_access_token_names_its_user_for_its_repository_only() {
        let key = TokenKey::from_farm_secret("farm secret of at least sixteen characters");
        let repo = RepoId::parse("PROJ/repo").expect("repo");
        let other = RepoId::parse("PROJ/other").expect("repo");
        let t = key.issue_access(&repo, "alice", 1000);
        assert_eq!(key.verify_access(&t, &repo, 999), Ok("alice".to_owned()));
        assert_eq!(key.verify_access(&t, &repo, 1001), Err(TokenError::Expired));
        assert_eq!(key.verify_access(&t, &other, 999), Err(TokenError::Invalid));
        // Another user written in: refused.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let forged = t.replacen(&b64.encode("alice"), &b64.encode("mallory"), 1);
        assert_eq!(
            key.verify_access(&forged, &repo, 999),
            Err(TokenError::Invalid)
        );
        // A download token is not an access token, nor the other way round.
        let oid = LfsOid::parse(&"ab".repeat(32)).expect("oid");
        let d = key.issue(&repo, (&oid, 7), 1000);
        assert!(key.verify_access(&d, &repo, 999).is_err());
        assert!(key.verify(&t, &repo, (&oid, 7), 999).is_err());
    }
}
