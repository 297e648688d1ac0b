//! git pkt-line framing (the few frames the node writes itself).

/// One pkt-line carrying `payload`.
pub fn pkt(payload: &str) -> Vec<u8> {
    let mut v = format!("{:04x}", payload.len() + 4).into_bytes();
    v.extend_from_slice(payload.as_bytes());
    v
}

/// The flush packet.
pub const FLUSH: &[u8] = b"0000";

/// An `ERR` packet: git clients print `remote error: <message>` (or `fatal: remote error: …`).
pub fn err(message: &str) -> Vec<u8> {
    pkt(&format!("ERR {message}\n"))
}

/// Reads `version=N` from a `Git-Protocol` / `GIT_PROTOCOL` value the way git does (the highest
/// version named wins); 0 when none.
pub fn protocol_version(value: &str) -> u32 {
    value
        .split(':')
        .filter_map(|kv| kv.strip_prefix("version="))
        .filter_map(|v| v.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
}

/// Whether a `Git-Protocol` value is safe to hand to git as `GIT_PROTOCOL`.
pub fn protocol_value_ok(value: &str) -> bool {
    value.len() <= 256
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=:._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(
            pkt("# service=git-upload-pack\n"),
            b"001e# service=git-upload-pack\n"
        );
        assert_eq!(err("no"), b"000bERR no\n");
        assert_eq!(protocol_version("version=2"), 2);
        assert_eq!(protocol_version("object-format=sha1:version=1"), 1);
        assert_eq!(protocol_version(""), 0);
        assert!(protocol_value_ok("version=2"));
        assert!(!protocol_value_ok("version=2\nX"));
    }
}
