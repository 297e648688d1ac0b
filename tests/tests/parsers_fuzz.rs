//! Property tests of every parser that sees bytes from outside, on random and mutated inputs
//! (bounded here; `FUZZ_SECONDS=300 cargo test -p mirrorfarm-tests --test parsers_fuzz` runs each
//! for five minutes): none panics, and each answers a malformed input with its documented error.

use std::path::Path;

use mirrorfarm_common::farm::messages::{JoinAnswer, JoinRequest, SessionBatch, SyncNudge};
use mirrorfarm_common::{properties, proxy_protocol, session};
use mirrorfarm_lb::request_head::{self, Framing};
use mirrorfarm_lb::rules::{self, Admission};
use mirrorfarm_node::access::credential::CredentialHasher;
use mirrorfarm_node::config::{Config, FileConfig};
use mirrorfarm_node::pktline;
use mirrorfarm_node::serve::{receive_pack, ssh_keys, v2_request};
use mirrorfarm_tests::fuzz::run;

const CASES: usize = 3000;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn properties_and_node_config() {
    let good: &[u8] =
        b"application.mode=mirror\nsetup.displayName=M\\u00e9\nsetup.baseUrl=https://f\n\
        plugin.mirroring.upstream.url=ssh://git@up:7999\nmirror.repos=P/a, P/b\n\
        mirror.access=anonymous\nserver.port : 7990\nlong=a\\\n  b\n# c\n";
    let file = Path::new("/h/mirrorfarm.properties");
    run("properties", CASES, |g| {
        let t = text(&g.input(&[good], 600));
        let lines = t.lines().count().max(1);
        match properties::parse(&t) {
            Ok(entries) => assert!(entries.iter().all(|e| e.line >= 1 && e.line <= lines)),
            Err(e) => assert!(e.line >= 1 && e.line <= lines + 1, "{e} in {t:?}"),
        }
        // The whole node configuration: a value or an error naming the file.
        if let Err(e) = FileConfig::parse(file, &t).and_then(|fc| Config::from_file(fc, file)) {
            assert!(e.to_string().contains("mirrorfarm.properties"), "{e}");
        }
    });
}

#[test]
fn cookies() {
    let v = session::new_value(&[0xab; 16], "6ac18c83");
    let good = format!("a=b; {}={v}; c=d", session::COOKIE);
    run("cookies", CASES, |g| {
        let t = text(&g.input(&[good.as_bytes()], 300));
        if let Some(r) = session::route_in_cookie_header(&t) {
            assert!(!r.is_empty() && r.len() <= 16 && r.chars().all(|c| c.is_ascii_hexdigit()));
            assert!(session::has_cookie(&t));
        }
        for (s, _) in session::sessions_in_cookie_header(&t) {
            assert_eq!(s.len(), 32);
        }
    });
    assert_eq!(session::route_in_cookie_header(&good), Some("6ac18c83"));
}

#[test]
fn proxy_protocol_headers() {
    let a = "10.1.2.3:4567".parse().expect("addr");
    let b = "[2001:db8::1]:22".parse().expect("addr");
    let good4 = proxy_protocol::encode(a, a);
    let good6 = proxy_protocol::encode(b, b);
    run("proxy protocol", CASES, |g| {
        let mut h = g.input(&[&good4, &good6], 80);
        h.resize(h.len().max(16), 0);
        let fixed: [u8; 16] = h[..16].try_into().expect("16 bytes");
        if let Ok(len) = proxy_protocol::block_len(&fixed) {
            assert!(len <= 216 + 1024);
            let block = &h[16..h.len().min(16 + len)];
            let _ = proxy_protocol::source(&fixed, block);
        }
    });
    for (h, want) in [(good4, a), (good6, b)] {
        let fixed: [u8; 16] = h[..16].try_into().expect("16");
        assert_eq!(
            proxy_protocol::source(&fixed, &h[16..]).expect("ok"),
            Some(want)
        );
    }
}

#[test]
fn pkt_lines_v2_requests_and_pushes() {
    let mut v2 = pktline::pkt("command=ls-refs\n");
    v2.extend(pktline::pkt("agent=git/2.47\n"));
    v2.extend_from_slice(b"0001");
    v2.extend(pktline::pkt("peel\n"));
    v2.extend(pktline::pkt("ref-prefix refs/heads/\n"));
    v2.extend_from_slice(pktline::FLUSH);
    let mut fetch = pktline::pkt("command=fetch\n");
    fetch.extend_from_slice(b"0001");
    fetch.extend(pktline::pkt(&format!("want {}\n", "1".repeat(40))));
    fetch.extend(pktline::pkt("done\n"));
    fetch.extend_from_slice(pktline::FLUSH);
    let (o, n) = ("1".repeat(40), "2".repeat(40));
    let mut push = pktline::pkt(&format!(
        "{o} {n} refs/heads/main\0report-status side-band-64k\n"
    ));
    push.extend_from_slice(pktline::FLUSH);
    push.extend_from_slice(b"PACK");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert_eq!(pktline::framing_error(&v2), None);
    run("pkt-lines", CASES, |g| {
        let input = g.input(&[&v2, &fetch, &push], 400);
        if pktline::framing_error(&input).is_none() {
            // Well framed: every packet's length fits.
            assert!(input.len() >= 4 || input.is_empty());
        }
        rt.block_on(async {
            let mut raw = Vec::new();
            let _ = v2_request::peek_ls_refs(&mut input.as_slice(), &mut raw).await;
            // Every byte read is kept, in order: a failed peek replays the request whole.
            assert!(input.starts_with(&raw));
            let mut r = input.as_slice();
            if let Ok(Some(req)) = v2_request::read_request(&mut r, 1 << 20).await {
                assert!(input.starts_with(&req) && req.ends_with(b"0000"));
            }
        });
        if let Some(c) = receive_pack::commands(&input) {
            assert!(c.updates.keys().all(|r| r.starts_with("refs/")));
        }
        let _ = receive_pack::accepted(&input, g.below(2) == 0);
    });
}

#[test]
fn credentials_and_authorized_keys() {
    let hasher = CredentialHasher::new(Some("a farm secret of some length"));
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvh6GbW9Pq4rj3M0XF8t4dGYkFpKXbT5Qe3oC1mIuKj alice@x";
    let line = format!("user=\"alice\",repos=\"PROJ/*,OTHER/tool\" {key}\n# comment\n\n{key}\n");
    run("credentials and keys", CASES, |g| {
        let value = g.input(&[b"Basic YWxpY2U6cHc=", b"Bearer abc.def"], 120);
        if let Ok(v) = axum::http::HeaderValue::from_bytes(&value) {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::AUTHORIZATION, v);
            if let Ok(Some(c)) = hasher.credential(&h) {
                assert!(!c.user.is_empty());
            }
        }
        let t = text(&g.input(&[line.as_bytes()], 400));
        for grant in ssh_keys::parse(&t, "fuzz").values() {
            assert!(!grant.user.is_empty());
        }
    });
}

#[test]
fn farm_messages() {
    let join = br#"{"nodeId":"n","nonce":"00","proof":"00","config":{"a":"b"},"role":"lb"}"#;
    let sessions = br#"{"sessions":[{"key":"00","user":"u","createdMs":1,"lastUsedMs":2,"grants":{"P/r":3}}]}"#;
    assert!(serde_json::from_slice::<JoinRequest>(join).is_ok());
    assert!(serde_json::from_slice::<SessionBatch>(sessions).is_ok());
    run("farm messages", CASES, |g| {
        let b = g.input(&[join, sessions, br#"{"project":"P","repo":"r"}"#], 300);
        let _ = serde_json::from_slice::<JoinRequest>(&b);
        let _ = serde_json::from_slice::<JoinAnswer>(&b);
        let _ = serde_json::from_slice::<SessionBatch>(&b);
        let _ = serde_json::from_slice::<SyncNudge>(&b);
    });
}

#[test]
fn lb_request_heads_and_paths() {
    let host = "git.example.com";
    let get = b"GET /scm/P/r.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: git.example.com\r\nCookie: BITBUCKETSESSIONID=AB.6ac18c83\r\n\r\n";
    let post = b"POST /scm/P/r.git/git-upload-pack HTTP/1.1\r\nHost: git.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let both = b"POST /x HTTP/1.1\r\nHost: git.example.com\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert!(matches!(
        request_head::frame(get, host, |_, _, _| Vec::new()),
        Framing::Fast(_)
    ));
    assert!(
        matches!(request_head::frame(both, host, |_, _, _| Vec::new()), Framing::Pingora(n) if n == both.len())
    );
    run("LB request heads", CASES, |g| {
        let buf = g.input(&[get, post, both], 600);
        match request_head::frame(&buf, host, |_, _, _| Vec::new()) {
            Framing::Partial => assert!(buf.len() < request_head::MAX_REQUEST_HEAD),
            Framing::Pingora(n) => assert!(n <= buf.len() || buf.len() < n && !buf.is_empty()),
            Framing::Fast(h) => {
                assert!(h.used <= buf.len());
                let head = String::from_utf8_lossy(&buf[..h.used]).to_ascii_lowercase();
                // Empty lines before the request line are allowed (RFC 9112, 2.2) and not
                // forwarded: the node gets a head rebuilt from the parsed one.
                let head = head.trim_start_matches(['\r', '\n']);
                // The fast path takes nothing with a body or with ambiguous framing.
                let framed = head.split("\r\n").skip(1).any(|l| {
                    l.starts_with("transfer-encoding")
                        || l.strip_prefix("content-length:")
                            .is_some_and(|v| v.trim().parse::<usize>() != Ok(0))
                });
                assert!(!framed, "{head}");
                assert!(
                    head.starts_with("get ") || head.starts_with("head "),
                    "{head}"
                );
                let path = h.path.split('?').next().unwrap_or_default();
                assert_eq!(rules::admit(Some(host), path, host), Admission::Forward);
            }
        }
        let path = text(&g.input(&[b"/rest/mirroring/latest/sync", b"/scm/P/r.git"], 80));
        if rules::admit(Some(host), &path, host) == Admission::Forward {
            let lower = path.to_ascii_lowercase();
            assert!(
                !lower.starts_with("/rest/mirroring/latest/sync") && !lower.starts_with("/metrics"),
                "{path}"
            );
            assert!(!path.contains("//") && !path.contains('%'), "{path}");
        }
    });
}
