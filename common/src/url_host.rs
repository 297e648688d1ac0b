//! The host a URL names (`https://Host:8443/x` → `host`), for comparing a member's
//! `setup.baseUrl` with the LB's `lb.hostname`.

/// The host of `url`, lower case, without port or brackets.
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://Git.Example.com:8443/x"),
            "git.example.com"
        );
        assert_eq!(url_host("https://git.example.com"), "git.example.com");
        assert_eq!(url_host("http://[::1]:7990"), "::1");
    }
}
