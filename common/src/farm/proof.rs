//! Proving the farm secret without sending it: HMAC-SHA256(secret, label, the joiner's nonce, the
//! SHA-256 of the certificate the member presented in this very TLS session, the joiner's ID) —
//! bound to the session, so a man in the middle (with another certificate) cannot relay it. The
//! member answers with the same construction under another label.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Label of the joiner's proof.
pub const JOIN_LABEL: &[u8] = b"mirrorfarm-join-v1";
/// Label of the member's proof.
pub const WELCOME_LABEL: &[u8] = b"mirrorfarm-welcome-v1";

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes of a hex string of at most 256 digits; `None` for anything else (odd length, a
/// non-hex character, multi-byte characters included).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) || b.len() > 256 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The HMAC over one proof's parts.
pub fn mac(secret: &str, label: &[u8], nonce: &[u8], cert_fp: &[u8], id: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in [label, b"\0", nonce, b"\0", cert_fp, b"\0", id.as_bytes()] {
        m.update(part);
    }
    m
}

/// The proof (hex) under `label`.
pub fn prove(secret: &str, label: &[u8], nonce: &[u8], cert_fp: &[u8], id: &str) -> String {
    hex(&mac(secret, label, nonce, cert_fp, id)
        .finalize()
        .into_bytes())
}

/// Whether `proof` (hex, from a peer) is the proof under `label`.
pub fn verify(
    secret: &str,
    label: &[u8],
    nonce: &[u8],
    cert_fp: &[u8],
    id: &str,
    proof: &str,
) -> bool {
    unhex(proof).is_some_and(|p| {
        mac(secret, label, nonce, cert_fp, id)
            .verify_slice(&p)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_junk_is_refused_without_panicking() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        for junk in [
            "é",
            "aé",
            "éa",
            "0é0",
            "€€",
            "abc",
            "zz",
            "+1",
            &"a".repeat(258),
        ] {
            assert_eq!(unhex(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn proofs_verify_only_with_every_part() {
        let p = prove("secret-secret-16", JOIN_LABEL, b"n", b"fp", "node");
        assert!(verify(
            "secret-secret-16",
            JOIN_LABEL,
            b"n",
            b"fp",
            "node",
            &p
        ));
        assert!(!verify(
            "secret-secret-17",
            JOIN_LABEL,
            b"n",
            b"fp",
            "node",
            &p
        ));
        assert!(!verify(
            "secret-secret-16",
            WELCOME_LABEL,
            b"n",
            b"fp",
            "node",
            &p
        ));
        assert!(!verify(
            "secret-secret-16",
            JOIN_LABEL,
            b"n",
            b"f2",
            "node",
            &p
        ));
        assert!(!verify(
            "secret-secret-16",
            JOIN_LABEL,
            b"n",
            b"fp",
            "node",
            "é"
        ));
    }
}
