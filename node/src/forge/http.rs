//! Calls to a forge's REST API: the token in the forge's own header, bounded time, retries with
//! backoff, rate limits obeyed (`Retry-After`, `X-RateLimit-*` / `RateLimit-*`), bounded answers,
//! and `Link: <…>; rel="next"` paging followed only within the API's own origin (the token never
//! goes elsewhere).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;

use crate::forge::ForgeError;
use crate::secrets::SecretFile;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per request (network errors, 5xx, 429).
const ATTEMPTS: u32 = 4;
/// The longest wait for a rate limit to lift before the call fails.
const MAX_RATE_WAIT: Duration = Duration::from_secs(120);
/// The largest answer read.
const MAX_BODY: usize = 16 << 20;
/// The most pages one listing follows.
pub const MAX_PAGES: usize = 5_000;

/// How the token is presented.
#[derive(Debug, Clone, Copy)]
pub enum TokenHeader {
    /// `Authorization: Bearer <token>` (Bitbucket, GitHub).
    Bearer,
    /// `PRIVATE-TOKEN: <token>` (GitLab).
    PrivateToken,
    /// `Authorization: token <token>` (Gitea, Forgejo).
    Token,
}

/// A forge's API at one root.
#[derive(Clone)]
pub struct ApiClient {
    client: reqwest::Client,
    root: String,
    origin: String,
    token_header: TokenHeader,
    extra: HeaderMap,
    token: Option<std::sync::Arc<SecretFile>>,
}

/// One answer: its status, headers and parsed body.
pub struct Answer<T> {
    /// HTTP status.
    pub status: u16,
    /// Headers (for paging).
    pub headers: HeaderMap,
    /// The body, parsed (`None` for a 404).
    pub body: Option<T>,
}

/// `scheme://host[:port]`, lower case, without the scheme's default port.
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            let host = rest
                .split(['/', '?'])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let default = if scheme == "https" { ":443" } else { ":80" };
            let host = host.strip_suffix(default).unwrap_or(&host);
            format!("{scheme}://{host}")
        }
        None => String::new(),
    }
}

impl ApiClient {
    /// A client for the API at `root`, presenting `token` (when set) as `token_header` says.
    pub fn new(
        client: reqwest::Client,
        root: &str,
        token_header: TokenHeader,
        extra: &[(&'static str, &'static str)],
        token: Option<std::sync::Arc<SecretFile>>,
    ) -> Self {
        let mut headers = HeaderMap::new();
        for (k, v) in extra {
            headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        Self {
            client,
            root: root.trim_end_matches('/').to_owned(),
            origin: origin_of(root),
            token_header,
            extra: headers,
            token,
        }
    }

    /// `<root><path>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.root)
    }

    /// Whether `url` is on the API's own origin (the only place the token is sent).
    pub fn same_origin(&self, url: &str) -> bool {
        origin_of(url) == self.origin
    }

    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        let token = self.token.as_ref().map(|t| t.get());
        self.request_as(url, token.as_ref().map(|t| t.expose()))
    }

    /// A GET of `url` presenting `secret` (when given) in the forge's token header.
    pub(crate) fn request_as(&self, url: &str, secret: Option<&str>) -> reqwest::RequestBuilder {
        let mut r = self
            .client
            .get(url)
            .headers(self.extra.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(REQUEST_TIMEOUT);
        if let Some(t) = secret {
            r = match self.token_header {
                TokenHeader::Bearer => r.bearer_auth(t),
                TokenHeader::PrivateToken => r.header("PRIVATE-TOKEN", t),
                TokenHeader::Token => {
                    r.header(reqwest::header::AUTHORIZATION, format!("token {t}"))
                }
            };
        }
        r
    }

    /// GETs `url` (on the API's origin) and parses its JSON; a 404 gives `body: None`. Retries
    /// network errors, 5xx and rate limits; any other status is an error.
    pub async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<Answer<T>, ForgeError> {
        if !self.same_origin(url) {
            return Err(ForgeError::Foreign(url.to_owned()));
        }
        let mut backoff = Duration::from_millis(500);
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            match self.request(url).send().await {
                Err(e) => {
                    last = Some(ForgeError::Unreachable(
                        url.to_owned(),
                        e.without_url().to_string(),
                    ))
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let headers = r.headers().clone();
                    if let Some(wait) = rate_limited(status, &headers) {
                        if wait > MAX_RATE_WAIT {
                            return Err(ForgeError::RateLimited(url.to_owned(), wait.as_secs()));
                        }
                        tracing::warn!(
                            url,
                            wait_s = wait.as_secs(),
                            "forge API rate limit: waiting"
                        );
                        tokio::time::sleep(wait).await;
                        last = Some(ForgeError::RateLimited(url.to_owned(), wait.as_secs()));
                        continue;
                    }
                    if status >= 500 {
                        last = Some(ForgeError::Status(url.to_owned(), status));
                    } else if status == 404 {
                        return Ok(Answer {
                            status,
                            headers,
                            body: None,
                        });
                    } else if !(200..300).contains(&status) {
                        return Err(ForgeError::Status(url.to_owned(), status));
                    } else {
                        let bytes = read_bounded(r, url).await?;
                        let body = serde_json::from_slice(&bytes)
                            .map_err(|e| ForgeError::Shape(url.to_owned(), e.to_string()))?;
                        pace(&headers).await;
                        return Ok(Answer {
                            status,
                            headers,
                            body: Some(body),
                        });
                    }
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(last.unwrap_or_else(|| ForgeError::Unreachable(url.to_owned(), "no attempt".into())))
    }

    /// The next page named by a `Link` header (a path is taken on the API's origin); an error
    /// when it is elsewhere — the token is not sent there, and a listing cut short must not pass
    /// for a whole one.
    pub fn next_link(&self, headers: &HeaderMap) -> Result<Option<String>, ForgeError> {
        let Some(next) = next_link(headers) else {
            return Ok(None);
        };
        let next = if next.starts_with('/') && !next.starts_with("//") {
            format!("{}{next}", self.origin)
        } else {
            next
        };
        if self.same_origin(&next) {
            Ok(Some(next))
        } else {
            Err(ForgeError::Foreign(next))
        }
    }
}

/// GETs a listing paged by `Link: <…>; rel="next"` (GitHub, GitLab, Gitea) to its end; `None`
/// when the first page is a 404.
pub async fn link_paged<T: DeserializeOwned>(
    c: &ApiClient,
    first: String,
) -> Result<Option<Vec<T>>, ForgeError> {
    let mut url = first;
    let mut out = Vec::new();
    for page in 0..MAX_PAGES {
        let a = c.get::<Vec<T>>(&url).await?;
        let Some(items) = a.body else {
            return if page == 0 {
                Ok(None)
            } else {
                Err(ForgeError::Status(url, 404))
            };
        };
        let empty = items.is_empty();
        out.extend(items);
        match c.next_link(&a.headers)? {
            Some(next) if !empty && next != url => url = next,
            _ => return Ok(Some(out)),
        }
    }
    Err(ForgeError::TooManyPages(url))
}

pub(crate) async fn read_bounded(
    mut r: reqwest::Response,
    url: &str,
) -> Result<Vec<u8>, ForgeError> {
    let mut out = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| ForgeError::Unreachable(url.to_owned(), e.without_url().to_string()))?
    {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(ForgeError::Shape(
                url.to_owned(),
                format!("answer over {MAX_BODY} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn header_u64(h: &HeaderMap, names: &[&str]) -> Option<u64> {
    names
        .iter()
        .find_map(|n| h.get(*n))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long until the limit resets, from `X-RateLimit-Reset` / `RateLimit-Reset` (an epoch time,
/// or seconds from now where the value is small, as some forges send).
fn reset_wait(h: &HeaderMap) -> Option<Duration> {
    let reset = header_u64(h, &["x-ratelimit-reset", "ratelimit-reset"])?;
    let now = now_s();
    let secs = if reset > 1_000_000_000 {
        reset.saturating_sub(now)
    } else {
        reset
    };
    Some(Duration::from_secs(secs.max(1)))
}

/// Whether an answer says "slow down", and for how long.
pub fn rate_limited(status: u16, h: &HeaderMap) -> Option<Duration> {
    let remaining = header_u64(h, &["x-ratelimit-remaining", "ratelimit-remaining"]);
    let retry_after = header_u64(h, &["retry-after"]).map(Duration::from_secs);
    match status {
        429 => Some(
            retry_after
                .or_else(|| reset_wait(h))
                .unwrap_or(Duration::from_secs(5)),
        ),
        403 if remaining == Some(0) || retry_after.is_some() => Some(
            retry_after
                .or_else(|| reset_wait(h))
                .unwrap_or(Duration::from_secs(60)),
        ),
        _ => None,
    }
}

/// After a successful answer that used the last request of the window, waits for the reset
/// (bounded), so the next call is not refused.
async fn pace(h: &HeaderMap) {
    if header_u64(h, &["x-ratelimit-remaining", "ratelimit-remaining"]) == Some(0) {
        if let Some(w) = reset_wait(h) {
            let w = w.min(MAX_RATE_WAIT);
            tracing::warn!(
                wait_s = w.as_secs(),
                "forge API rate limit reached: pausing"
            );
            tokio::time::sleep(w).await;
        }
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
pub fn next_link(h: &HeaderMap) -> Option<String> {
    h.get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (target, params) = part.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            params
                .split(';')
                .any(|p| {
                    let p = p.trim().replace(' ', "");
                    p == "rel=\"next\"" || p == "rel=next"
                })
                .then(|| target.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn link_headers_name_the_next_page() {
        // https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api
        let h = headers(&[("link", "<https://api.github.com/repositories/1300192/issues?page=2>; rel=\"prev\", <https://api.github.com/repositories/1300192/issues?page=4>; rel=\"next\", <https://api.github.com/repositories/1300192/issues?page=515>; rel=\"last\", <https://api.github.com/repositories/1300192/issues?page=1>; rel=\"first\"")]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1300192/issues?page=4")
        );
        assert_eq!(
            next_link(&headers(&[("link", "<https://x/?page=1>; rel=\"first\"")])),
            None
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn rate_limits_are_read_from_each_forges_headers() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(rate_limited(429, &h), Some(Duration::from_secs(7)));
        let reset = (now_s() + 30).to_string();
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        let w = rate_limited(403, &h).expect("limited");
        assert!(
            (Duration::from_secs(28)..=Duration::from_secs(31)).contains(&w),
            "{w:?}"
        );
        assert_eq!(
            rate_limited(403, &headers(&[("x-ratelimit-remaining", "12")])),
            None
        );
        assert_eq!(rate_limited(200, &h), None);
        let h = headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "3")]);
        assert_eq!(rate_limited(429, &h), Some(Duration::from_secs(3)));
    }

    #[test]
    fn the_token_stays_on_the_apis_origin() {
        let c = ApiClient::new(
            reqwest::Client::new(),
            "https://GitLab.example.com/api/v4/",
            TokenHeader::PrivateToken,
            &[],
            None,
        );
        assert!(c.same_origin("https://gitlab.example.com/api/v4/groups?page=2"));
        assert!(!c.same_origin("https://gitlab.example.com.evil.com/api/v4/groups"));
        assert!(!c.same_origin("http://gitlab.example.com/api/v4/groups"));
        assert!(c.same_origin("https://gitlab.example.com:443/api/v4/groups?page=3"));
        let link = |v: &str| headers(&[("link", v)]);
        assert_eq!(
            c.next_link(&link("</api/v4/groups?page=2>; rel=\"next\""))
                .expect("same origin"),
            Some("https://gitlab.example.com/api/v4/groups?page=2".to_owned())
        );
        assert!(
            c.next_link(&link(
                "<http://gitlab.example.com/api/v4/groups?page=2>; rel=\"next\""
            ))
            .is_err(),
            "a listing cut short is an error, not a whole listing"
        );
        assert_eq!(c.next_link(&HeaderMap::new()).expect("none"), None);
        assert_eq!(c.url("/groups"), "https://GitLab.example.com/api/v4/groups");
    }
}
