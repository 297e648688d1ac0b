//! The `BITBUCKETSESSIONID` cookie: nodes issue it with a route suffix naming themselves (as
//! Tomcat's jvmRoute does: `<random>.<route>`); the load balancer sends requests carrying it back
//! to that node while it is healthy.

/// Cookie name (Bitbucket's).
pub const COOKIE: &str = "BITBUCKETSESSIONID";

/// The route of a node: the first 8 hex digits of its node ID.
pub fn route_of_node(node_id: &str) -> String {
    node_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect()
}

/// A new cookie value for a node with `route`, from 16 random bytes.
pub fn new_value(random: &[u8; 16], route: &str) -> String {
    let hex: String = random.iter().map(|b| format!("{b:02X}")).collect();
    format!("{hex}.{route}")
}

/// Finds the cookie in a `Cookie` header value and returns its route, if well-formed.
pub fn route_in_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, v)| v.rsplit_once('.'))
        .map(|(_, route)| route)
        .filter(|r| !r.is_empty() && r.len() <= 16 && r.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The session part (32 hex digits: 128 random bits) and route of every well-formed session
/// cookie in a `Cookie` header value.
pub fn sessions_in_cookie_header(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(';')
        .map(str::trim)
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.split_once('.').unwrap_or((v, "")))
        .filter(|(s, _)| s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether a `Cookie` header carries the session cookie at all.
pub fn has_cookie(header: &str) -> bool {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, _)| k == COOKIE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip() {
        let route = route_of_node("6ac18c83-eedc-9ec4-a891-855794586d78");
        assert_eq!(route, "6ac18c83");
        let v = new_value(&[0xab; 16], &route);
        let header = format!("other=1; {COOKIE}={v}; x=y");
        assert_eq!(route_in_cookie_header(&header), Some("6ac18c83"));
        assert!(has_cookie(&header));
        assert_eq!(route_in_cookie_header("BITBUCKETSESSIONID=abc"), None);
        assert_eq!(route_in_cookie_header("BITBUCKETSESSIONID=abc.zz;"), None);
        assert!(!has_cookie("a=b"));
        let s: Vec<_> = sessions_in_cookie_header(&header).collect();
        assert_eq!(s, vec![("AB".repeat(16).as_str(), "6ac18c83")]);
        assert_eq!(
            sessions_in_cookie_header("BITBUCKETSESSIONID=abc.1").count(),
            0
        );
    }
}
