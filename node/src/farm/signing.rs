//! Keys derived from the farm secret, one per purpose (the admin page's CSRF tokens, LFS
//! tokens): what one member makes with such a key, every other verifies; the secret itself never
//! leaves the node. (Gossip carries nothing that needs signing: members' ref states go over the
//! farm channel, mutually authenticated.)

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A key of the farm for one purpose (`label`), derived from the farm secret: what one member
/// makes with it, every other verifies.
pub fn farm_key(secret: &str, label: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_secret_and_label() {
        let k = farm_key("correct-horse-battery-staple", b"csrf");
        assert_eq!(k, farm_key("correct-horse-battery-staple", b"csrf"));
        assert_ne!(k, farm_key("correct-horse-battery-staple", b"lfs"));
        assert_ne!(k, farm_key("another-secret-of-16+", b"csrf"));
    }
}
