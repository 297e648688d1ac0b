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

/// One packet at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0000`.
    Flush,
    /// `0001`.
    Delim,
    /// `0002` (protocol v2's response end).
    ResponseEnd,
    /// A data packet's payload.
    Data(&'a [u8]),
}

/// Why no packet could be split off a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// The buffer ends inside the packet (more may come).
    Short,
    /// Not four hex digits, or the reserved length 3.
    BadLength,
}

/// The length four bytes of a packet's head announce (hex digits only: no sign, no space).
pub fn length(head: [u8; 4]) -> Option<usize> {
    head.iter().try_fold(0usize, |n, b| {
        Some(n * 16 + (*b as char).to_digit(16)? as usize)
    })
}

/// The packet at the start of `buf`, and how many bytes it takes.
pub fn split(buf: &[u8]) -> Result<(Packet<'_>, usize), SplitError> {
    let head: [u8; 4] = buf
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(SplitError::Short)?;
    match length(head).ok_or(SplitError::BadLength)? {
        0 => Ok((Packet::Flush, 4)),
        1 => Ok((Packet::Delim, 4)),
        2 => Ok((Packet::ResponseEnd, 4)),
        3 => Err(SplitError::BadLength),
        n => buf
            .get(4..n)
            .map(|p| (Packet::Data(p), n))
            .ok_or(SplitError::Short),
    }
}

/// What is wrong with the framing of a whole request body (pkt-lines: `0000` flush, `0001`
/// delimiter, or four hex digits of length ≥ 4 and that many bytes), if anything: an empty body,
/// a bad length, a packet cut short.
pub fn framing_error(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return Some("empty request".into());
    }
    let mut at = 0;
    while at < body.len() {
        let rest = &body[at..];
        let bad = || {
            let head = &rest[..rest.len().min(4)];
            format!(
                "not a pkt-line length at byte {at}: {:?}",
                String::from_utf8_lossy(head)
            )
        };
        match split(rest) {
            Ok((Packet::ResponseEnd, _)) | Err(SplitError::BadLength) => return Some(bad()),
            Ok((_, used)) => at += used,
            Err(SplitError::Short) if rest.len() < 4 => {
                return Some(format!("a pkt-line length cut short at byte {at}"))
            }
            Err(SplitError::Short) => {
                let n = rest[..4]
                    .try_into()
                    .ok()
                    .and_then(length)
                    .unwrap_or_default();
                return Some(format!("a pkt-line of {n} bytes cut short at byte {at}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_of_whole_requests() {
        assert_eq!(
            framing_error(b"0032want 0123456789012345678901234567890123456789\n00000009done\n"),
            None
        );
        assert_eq!(framing_error(b"0014command=ls-refs\n00010000"), None);
        assert!(framing_error(b"").is_some());
        assert!(framing_error(b"hello world").is_some_and(|e| e.contains("byte 0")));
        assert!(framing_error(b"0009do").is_some_and(|e| e.contains("cut short")));
        assert!(framing_error(b"0000000").is_some());
        assert!(
            framing_error(b"+00a0000").is_some(),
            "a sign is not a hex digit"
        );
        assert!(framing_error(b"0003").is_some());
    }

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
