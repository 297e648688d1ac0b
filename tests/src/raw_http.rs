//! A raw HTTP/1.1 client over verified TLS: sends bytes exactly as given (pipelined requests,
//! odd headers) and parses the responses that come back, for tests of the LB's HTTP handling.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    /// The status line.
    pub status_line: String,
    /// Status code.
    pub code: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Connects to `localhost:port` (the certificate verified with `ca`), writes `request`, reads
/// until the server closes (at most 20 s) and returns everything read and whether it closed.
pub fn exchange(port: u16, ca: &Path, request: &[u8]) -> (Vec<u8>, bool) {
    exchange_in_pieces(port, ca, &[request], Duration::ZERO)
}

/// Like [`exchange`], writing `pieces` one by one with `pause` between them (a head that
/// arrives in several reads).
pub fn exchange_in_pieces(
    port: u16,
    ca: &Path,
    pieces: &[&[u8]],
    pause: Duration,
) -> (Vec<u8>, bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ca_pem = std::fs::read_to_string(ca).expect("read CA");
    rt.block_on(async {
        let roots = mirrorfarm_common::farm::tls::ca_roots(&ca_pem).expect("CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake with a verified certificate");
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            tls.write_all(piece).await.expect("write");
            tls.flush().await.expect("flush");
        }
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 16384];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .is_ok();
        (out, closed)
    })
}

/// Parses consecutive responses; `head_only[i]` says response i answers a HEAD (no body).
pub fn parse_responses(mut wire: &[u8], head_only: &[bool]) -> Result<Vec<RawResponse>, String> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let end = find(wire, b"\r\n\r\n").ok_or("incomplete head")?;
        let head = std::str::from_utf8(&wire[..end]).map_err(|e| e.to_string())?;
        wire = &wire[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let code = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut r = RawResponse {
            status_line,
            code,
            headers,
            body: Vec::new(),
        };
        let is_head = head_only.get(out.len()).copied().unwrap_or(false);
        if is_head || code == 204 || code == 304 {
        } else if r.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = find(wire, b"\r\n").ok_or("incomplete chunk size")?;
                let size = usize::from_str_radix(
                    std::str::from_utf8(&wire[..line_end]).map_err(|e| e.to_string())?,
                    16,
                )
                .map_err(|e| e.to_string())?;
                wire = &wire[line_end + 2..];
                if size == 0 {
                    wire = wire.strip_prefix(b"\r\n").ok_or("bad chunked end")?;
                    break;
                }
                if wire.len() < size + 2 || &wire[size..size + 2] != b"\r\n" {
                    return Err("bad chunk".into());
                }
                r.body.extend_from_slice(&wire[..size]);
                wire = &wire[size + 2..];
            }
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len.parse().map_err(|_| "bad content-length")?;
            if wire.len() < len {
                return Err("short body".into());
            }
            r.body = wire[..len].to_vec();
            wire = &wire[len..];
        } else {
            r.body = wire.to_vec();
            wire = &[];
        }
        out.push(r);
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
