//! The LB's request rules, written once for its own HTTP/1.1 front and pingora's path: which
//! requests are forwarded (the farm hostname only; node-only paths never), which headers a node
//! never gets from the client (hop-by-hop and forwarding ones), and the `X-Forwarded-*` it gets
//! instead.

use std::net::IpAddr;

/// Paths the LB keeps from the world (nodes serve them on their own listeners only); compared
/// without regard to case.
pub const NODE_ONLY_PREFIXES: &[&str] = &["/rest/mirroring/", "/metrics"];

/// Paths under [`NODE_ONLY_PREFIXES`] that users do reach through the LB: ending one's session,
/// and the forges' webhooks.
pub const PUBLIC_EXCEPTIONS: &[&str] = &[
    "/rest/mirroring/latest/session",
    "/rest/mirroring/latest/webhook",
];

/// A repository's generation (`/rest/mirroring/latest/repos/<P>/<r>/generation`): CI jobs wait on
/// it through the LB; the node applies the repository's read rules.
fn public_generation(path: &str) -> bool {
    path.strip_prefix("/rest/mirroring/latest/repos/")
        .and_then(|rest| rest.strip_suffix("/generation"))
        .is_some_and(|repo| repo.contains('/') && !repo.starts_with('/'))
}

/// Whether a path is one a node might read differently than the LB: an empty segment (`//`),
/// a dot-segment, percent-encoding, a backslash or a control character. Nothing the farm serves
/// needs any of them.
fn ambiguous(path: &str) -> bool {
    path.contains("//")
        || path.contains(['%', '\\'])
        || path.chars().any(|c| c.is_control())
        || path.split('/').any(|seg| seg == "." || seg == "..")
}

/// `X-Forwarded-Proto` of every forwarded request.
pub const FORWARDED_PROTO: &str = "https";

/// Headers that describe one connection, not the message: never passed on.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

/// Whether a header is hop-by-hop.
pub fn hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether a client's request header is replaced by the LB's own (`X-Forwarded-Proto`,
/// `X-Forwarded-Host`) or dropped (hop-by-hop); `Host` and `X-Forwarded-For` are rewritten.
pub fn replaced_request_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("x-forwarded-proto")
        || name.eq_ignore_ascii_case("x-forwarded-host")
        || hop_by_hop(name)
}

/// The `X-Forwarded-For` a node gets: the client's own list, then the client's address.
pub fn forwarded_for(previous: Option<&[u8]>, client: Option<IpAddr>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    if let Some(prev) = previous.filter(|p| !p.is_empty()) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    if let Some(ip) = client {
        use std::io::Write;
        let _ = write!(out, "{ip}");
    }
    out
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Whether a Host header (or authority) names the farm hostname.
pub fn host_matches(host: &str, hostname: &str) -> bool {
    let host = host.trim();
    let bare = match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    bare.eq_ignore_ascii_case(hostname)
}

/// What becomes of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Forwarded to a node.
    Forward,
    /// Another host: 421.
    Misdirected,
    /// A path a node might read differently (`//`, dot-segments, percent-encoding): 400.
    BadPath,
    /// A node-only path: 404.
    NodeOnly,
}

/// Decides from the request's host (header or authority) and path.
pub fn admit(host: Option<&str>, path: &str, hostname: &str) -> Admission {
    if !host.is_some_and(|h| host_matches(h, hostname)) {
        Admission::Misdirected
    } else if !path.starts_with('/') || ambiguous(path) {
        Admission::BadPath
    } else if NODE_ONLY_PREFIXES
        .iter()
        .any(|p| starts_with_ignore_case(path, p))
        && !PUBLIC_EXCEPTIONS.contains(&path)
        && !public_generation(path)
    {
        Admission::NodeOnly
    } else {
        Admission::Forward
    }
}

/// A request head for a node: the client's headers without hop-by-hop and forwarding ones, then
/// `Host` (the client's, else `hostname`) and the `X-Forwarded-*` headers.
pub fn node_request_head<'h>(
    hostname: &str,
    method: &[u8],
    path: &[u8],
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
    client: Option<IpAddr>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host = None;
    let mut xff = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("host") {
            host = Some(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            xff = Some(value);
        } else if !replaced_request_header(name) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(host.unwrap_or(hostname.as_bytes()));
    out.extend_from_slice(b"\r\nX-Forwarded-For: ");
    out.extend_from_slice(&forwarded_for(xff, client));
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    out.extend_from_slice(FORWARDED_PROTO.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
    out.extend_from_slice(hostname.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_matching() {
        assert!(host_matches("git.example.com", "git.example.com"));
        assert!(host_matches("Git.Example.com:8443", "git.example.com"));
        assert!(!host_matches("evil.com", "git.example.com"));
        assert!(!host_matches("git.example.com.evil.com", "git.example.com"));
        assert!(!host_matches("", "git.example.com"));
    }

    #[test]
    fn node_only_and_ambiguous_paths() {
        let h = Some("git.example.com");
        let admit = |p| admit(h, p, "git.example.com");
        for p in [
            "/rest/mirroring/latest/sync",
            "/REST/Mirroring/latest/sync",
            "/metrics",
        ] {
            assert_eq!(admit(p), Admission::NodeOnly, "{p}");
        }
        for p in [
            "//rest/mirroring/latest/sync",
            "/%72est/mirroring/latest/sync",
            "/scm/../rest/mirroring/latest/sync",
            "/rest/mirroring/latest/./sync",
            "/scm/P/r.git/..",
            "scm/P/r.git",
            "/a\\b",
        ] {
            assert_eq!(admit(p), Admission::BadPath, "{p}");
        }
        assert_eq!(admit("/rest/mirroring/latest/session"), Admission::Forward);
        assert_eq!(admit("/rest/mirroring/latest/webhook"), Admission::Forward);
        assert_eq!(
            admit("/rest/mirroring/latest/repos/P/r/generation"),
            Admission::Forward
        );
        for p in [
            "/rest/mirroring/latest/repos/P/r",
            "/rest/mirroring/latest/repos/generation",
            "/rest/mirroring/latest/repos//generation",
            "/rest/mirroring/latest/upstream/projects",
            "/rest/mirroring/latest/webhook/x",
        ] {
            assert_ne!(admit(p), Admission::Forward, "{p}");
        }
        assert_eq!(admit("/scm/P/r.git/info/refs"), Admission::Forward);
        assert_eq!(admit("/"), Admission::Forward);
    }

    #[test]
    fn admission_and_forwarding_headers() {
        assert_eq!(
            admit(
                Some("git.example.com:443"),
                "/scm/P/r.git",
                "git.example.com"
            ),
            Admission::Forward
        );
        assert_eq!(
            admit(Some("other"), "/", "git.example.com"),
            Admission::Misdirected
        );
        assert_eq!(admit(None, "/", "git.example.com"), Admission::Misdirected);
        assert_eq!(
            admit(
                Some("GIT.example.com"),
                "/rest/mirroring/latest/sync",
                "git.example.com"
            ),
            Admission::NodeOnly
        );
        assert_eq!(
            admit(Some("git.example.com"), "/metrics", "git.example.com"),
            Admission::NodeOnly
        );
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(forwarded_for(Some(b"1.2.3.4"), ip), b"1.2.3.4, 10.0.0.1");
        assert_eq!(forwarded_for(Some(b""), ip), b"10.0.0.1");
        assert!(
            replaced_request_header("X-Forwarded-Host") && replaced_request_header("Connection")
        );
        assert!(!replaced_request_header("X-Forwarded-For") && !replaced_request_header("Cookie"));
    }
}
