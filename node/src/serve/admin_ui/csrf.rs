//! The admin page's CSRF tokens: a form carries an HMAC of the session it was served to, keyed
//! from the farm secret (any member checks what another served; a node outside a farm keys it at
//! random). A cross-site form cannot know it, and it changes with every login.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key tokens are made and checked with.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(…)")
    }
}

impl CsrfKey {
    /// The farm's key (from its secret), or one of this process alone.
    pub fn new(farm_secret: Option<&str>) -> Self {
        match farm_secret {
            Some(s) => Self(crate::farm::signing::farm_key(
                s,
                b"mirrorfarm admin page CSRF tokens v1",
            )),
            None => {
                let mut k = [0u8; 32];
                getrandom::getrandom(&mut k).expect("the OS random source is available");
                Self(k)
            }
        }
    }

    fn mac(&self, session: &str) -> Hmac<Sha256> {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(session.to_ascii_uppercase().as_bytes());
        m
    }

    /// The token for forms served to `session` (the cookie's session part).
    pub fn token(&self, session: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.mac(session).finalize().into_bytes())
    }

    /// Whether `presented` is `session`'s token (constant time).
    pub fn check(&self, session: &str, presented: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(presented.trim())
        else {
            return false;
        };
        self.mac(session).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_session_alone() {
        let k = CsrfKey::new(Some("farm-secret-0123456789"));
        let t = k.token("00AA");
        assert!(k.check("00aa", &t));
        assert!(!k.check("00AB", &t));
        assert!(!k.check("00AA", ""));
        assert!(!k.check("00AA", "not base64!"));
        // Another farm's key, or a node's own random one, does not take it.
        assert!(!CsrfKey::new(Some("another-secret-0123456")).check("00AA", &t));
        assert!(!CsrfKey::new(None).check("00AA", &t));
        // Every member of the farm makes the same token.
        assert_eq!(
            CsrfKey::new(Some("farm-secret-0123456789")).token("00AA"),
            t
        );
    }
}
