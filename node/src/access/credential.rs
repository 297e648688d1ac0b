//! Credentials a git client sends (`Authorization: Basic …` or `Bearer …`), and the keyed hash
//! they are known by: the node keeps and logs only that hash, never the credential itself.

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The keyed hash of one credential (the whole `Authorization` value).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredKey([u8; 32]);

impl std::fmt::Debug for CredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredKey({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl CredKey {
    /// A key for unit tests.
    #[cfg(test)]
    pub fn test(n: u8) -> Self {
        Self([n; 32])
    }
}

/// A credential presented with a request.
pub struct Credential {
    /// The `Authorization` value, passed on to the upstream as it came.
    pub header: HeaderValue,
    /// Who it names: the Basic user name, or `token:<hash prefix>` for a bearer token.
    pub user: String,
    /// Its keyed hash.
    pub key: CredKey,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why an `Authorization` header was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Not `Basic` or `Bearer`.
    #[error("only the Basic and Bearer authorization schemes are accepted")]
    Scheme,
    /// `Basic` whose value is not base64 of `user:password`.
    #[error("malformed Basic credentials (expected base64 of user:password)")]
    Basic,
    /// An empty token.
    #[error("empty bearer token")]
    Bearer,
}

/// Hashes credentials with this farm's key.
pub struct CredentialHasher {
    key: [u8; 32],
}

impl CredentialHasher {
    /// The farm's key, derived from its secret; a node outside a farm draws a random one at start
    /// (its caches live in memory only).
    pub fn new(farm_secret: Option<&str>) -> Self {
        let mut key = [0u8; 32];
        match farm_secret {
            Some(s) => {
                let mut m = Hmac::<Sha256>::new_from_slice(s.as_bytes())
                    .expect("HMAC takes keys of any length");
                m.update(b"mirrorfarm credential cache key v1");
                key = m.finalize().into_bytes().into();
            }
            None => getrandom::getrandom(&mut key).expect("the OS random source is available"),
        }
        Self { key }
    }

    fn hash(&self, bytes: &[u8]) -> CredKey {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        m.update(bytes);
        CredKey(m.finalize().into_bytes().into())
    }

    /// The credential of a request, if it carries one.
    pub fn credential(&self, headers: &HeaderMap) -> Result<Option<Credential>, CredentialError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let text = value.to_str().map_err(|_| CredentialError::Scheme)?.trim();
        let (scheme, rest) = text.split_once(' ').ok_or(CredentialError::Scheme)?;
        let rest = rest.trim();
        let key = self.hash(text.as_bytes());
        let user = if scheme.eq_ignore_ascii_case("basic") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| CredentialError::Basic)?;
            let raw = String::from_utf8(raw).map_err(|_| CredentialError::Basic)?;
            match raw.split_once(':') {
                Some((u, _)) if !u.is_empty() => u.to_owned(),
                _ => return Err(CredentialError::Basic),
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Err(CredentialError::Bearer);
            }
            format!(
                "token:{:02x}{:02x}{:02x}{:02x}",
                key.0[0], key.0[1], key.0[2], key.0[3]
            )
        } else {
            return Err(CredentialError::Scheme);
        };
        Ok(Some(Credential {
            header: value.clone(),
            user,
            key,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(v).expect("value"),
        );
        h
    }

    #[test]
    fn basic_bearer_and_bad() {
        let h = CredentialHasher::new(Some("secret"));
        // alice:pw
        let c = h
            .credential(&headers("Basic YWxpY2U6cHc="))
            .expect("ok")
            .expect("some");
        assert_eq!(c.user, "alice");
        let again = h.credential(&headers("Basic YWxpY2U6cHc=")).expect("ok");
        assert_eq!(again.map(|c| c.key), Some(c.key));
        let other = CredentialHasher::new(Some("other farm"));
        let theirs = other
            .credential(&headers("Basic YWxpY2U6cHc="))
            .expect("ok");
        assert_ne!(theirs.map(|c| c.key), Some(c.key));
        let t = h
            .credential(&headers("Bearer abc"))
            .expect("ok")
            .expect("some");
        assert!(t.user.starts_with("token:"));
        assert!(!format!("{t:?}").contains("abc"));
        assert_eq!(
            h.credential(&HeaderMap::new()).expect("ok").map(|c| c.user),
            None
        );
        assert_eq!(
            h.credential(&headers("Digest x")).err(),
            Some(CredentialError::Scheme)
        );
        assert_eq!(
            h.credential(&headers("Basic !!")).err(),
            Some(CredentialError::Basic)
        );
        // ":pw" has no user name.
        assert_eq!(
            h.credential(&headers("Basic OnB3")).err(),
            Some(CredentialError::Basic)
        );
        assert_eq!(
            h.credential(&headers("Bearer  ")).err(),
            Some(CredentialError::Scheme)
        );
    }
}
