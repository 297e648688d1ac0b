//! A grokmirror manifest (`plugin.mirroring.upstream.manifest.url`): the JSON object that
//! grokmirror's `grok-manifest` writes, keyed by each repository's path under the upstream's top
//! (`/PROJ/repo.git`; grokmirror 1.x wrote it without the leading slash), each with the
//! `fingerprint` of its refs (SHA-1 of `git show-ref`'s output). Fetched with
//! `If-Modified-Since` (grok-pull's way: a 304 keeps the last listing); gzip when the body says
//! so. See tests/fixtures/grokmirror/README.md.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;

use crate::forge::{ForgeError, UpstreamRepo};
use crate::names::RepoId;

/// The largest manifest read, compressed or not.
const MAX_MANIFEST: u64 = 256 << 20;
/// How long one fetch may take.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    fingerprint: Option<String>,
}

/// A manifest as last read.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Its repositories.
    pub repos: Vec<UpstreamRepo>,
    /// The `Last-Modified` it came with (sent back as `If-Modified-Since`).
    pub last_modified: Option<String>,
}

/// What a fetch found.
pub enum Fetched {
    /// Not modified since the last fetch.
    Unchanged,
    /// A new manifest.
    New(Manifest),
}

/// Fetches the manifest at `url`; `since` is the `Last-Modified` of the last one.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    since: Option<&str>,
) -> Result<Fetched, ForgeError> {
    let mut req = client.get(url).timeout(FETCH_TIMEOUT);
    if let Some(s) = since {
        req = req.header(reqwest::header::IF_MODIFIED_SINCE, s);
    }
    let unreachable =
        |e: reqwest::Error| ForgeError::Unreachable(url.to_owned(), e.without_url().to_string());
    let mut r = req.send().await.map_err(unreachable)?;
    match r.status().as_u16() {
        304 => return Ok(Fetched::Unchanged),
        200 => {}
        s => return Err(ForgeError::Status(url.to_owned(), s)),
    }
    let header = |name| {
        r.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    // A manifest modified in the second it was sent may change again within that second unseen
    // by If-Modified-Since (HTTP dates are whole seconds): the next fetch is then unconditional.
    let last_modified = header(reqwest::header::LAST_MODIFIED)
        .filter(|lm| header(reqwest::header::DATE).as_ref() != Some(lm));
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(unreachable)? {
        if body.len() as u64 + chunk.len() as u64 > MAX_MANIFEST {
            return Err(ForgeError::Shape(
                url.to_owned(),
                format!("manifest over {MAX_MANIFEST} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let owned_url = url.to_owned();
    let repos = tokio::task::spawn_blocking(move || parse(&body))
        .await
        .map_err(|e| ForgeError::Shape(owned_url.clone(), e.to_string()))?
        .map_err(|e| ForgeError::Shape(owned_url, e))?;
    Ok(Fetched::New(Manifest {
        repos,
        last_modified,
    }))
}

/// Parses a manifest, gzip or plain (told by its first bytes).
pub fn parse(body: &[u8]) -> Result<Vec<UpstreamRepo>, String> {
    let entries: BTreeMap<String, Entry> = if body.starts_with(&[0x1f, 0x8b]) {
        let reader = flate2::read::GzDecoder::new(body).take(MAX_MANIFEST);
        serde_json::from_reader(reader).map_err(|e| format!("gzip manifest: {e}"))?
    } else {
        serde_json::from_slice(body).map_err(|e| format!("manifest: {e}"))?
    };
    let mut out = Vec::with_capacity(entries.len());
    for (path, entry) in entries {
        let rel = path.trim_start_matches('/');
        match rel.strip_suffix(".git").map(RepoId::parse) {
            Some(Ok(id)) => out.push(UpstreamRepo {
                id,
                fingerprint: entry
                    .fingerprint
                    .filter(|f| f.len() == 40 && f.bytes().all(|b| b.is_ascii_hexdigit())),
            }),
            _ => tracing::warn!(
                path,
                "skipping a manifest entry that is not PROJECT/repo.git"
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Written by grokmirror 2.0.12's `grok-manifest` (tests/fixtures/grokmirror/README.md).
    const EXAMPLE: &str = include_str!("../../../tests/fixtures/grokmirror/manifest.example.json");

    #[test]
    fn grok_manifest_output_is_read_plain_and_gzipped() {
        let repos = parse(EXAMPLE.as_bytes()).expect("parse");
        let ids: Vec<String> = repos.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["OTHER/c", "PROJ/a-fork", "PROJ/a", "PROJ/b"]);
        assert_eq!(
            repos[0].fingerprint.as_deref(),
            Some("e8871620a1488a1eba741d3cc4d66bf06e16757c")
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(EXAMPLE.as_bytes()).expect("gzip");
        let again = parse(&gz.finish().expect("gzip")).expect("parse gz");
        assert_eq!(again, repos);
    }

    #[test]
    fn odd_entries_are_skipped_and_bad_manifests_refused() {
        let text = r#"{"P/old-style.git": {"fingerprint": "0000000000000000000000000000000000000000"},
                      "/../etc.git": {}, "/P/no-suffix": {}, "/top.git": {},
                      "/P/x.git": {"fingerprint": "not-hex"}}"#;
        let repos = parse(text.as_bytes()).expect("parse");
        let ids: Vec<String> = repos.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["P/x", "P/old-style"], "sorted by the manifest's keys");
        assert_eq!(repos[0].fingerprint, None, "not a SHA-1");
        assert!(repos[1].fingerprint.is_some());
        assert!(parse(b"[1, 2]").is_err());
        assert!(parse(&[0x1f, 0x8b, 0, 0]).is_err());
    }
}
