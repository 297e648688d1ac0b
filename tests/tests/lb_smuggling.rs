//! Request smuggling and request confusion against the LB (its own HTTP/1.1 front and the pingora
//! path behind it): every ambiguous shape is refused (4xx) or framed exactly one way, and the
//! node-only sync trigger — which a node answers 202 when the request reaches it straight from
//! the LB's own address, without forwarding headers, as a smuggled request would — is never reached.
//! Each case also sends a harmless request last on the same connection.
//!
//! What HAProxy 2.6.12 (Debian's, default `mode http` settings, a plain HTTP front) did with the
//! same bytes, tried here by hand with `haproxy -db` before a small backend that logs what it gets:
//! - Content-Length and Transfer-Encoding together, either order: Content-Length dropped, the body
//!   read as chunked, the connection closed after the response (our LB: 400).
//! - Two differing Content-Lengths, or `Content-Length: 0, 73`: 400 (ours: 400).
//! - `Transfer-Encoding: xchunked`, `chunked, identity`, a space before the colon: 400 (ours: 400).
//! - Transfer-Encoding folded onto a second line (obs-fold): unfolded and read as chunked (ours:
//!   400).
//! - A chunk size that is not hex, or overflows: 400 (ours: 400).
//! - A GET with a Content-Length body: forwarded with its body, the next request framed after it
//!   (ours: the same).
//! - An absolute-form target, dot-segments, `//`, percent-encoding, upper case: forwarded as they
//!   are — no normalization, so node-only paths need ACLs that think of each (ours: absolute-form
//!   and upper case are checked against the node-only paths like any other, 404; `//`,
//!   dot-segments and percent-encoding get 400).

use std::time::Duration;

use mirrorfarm_tests::lb::{backends, Lb};
use mirrorfarm_tests::node::{serving_p_r, Node};
use mirrorfarm_tests::raw_http::exchange;

const LIMIT: Duration = Duration::from_secs(90);

/// Syncs a node has run (from its metrics, asked on its own host).
fn syncs(node: &Node) -> u64 {
    let m = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", node.http))
        .expect("metrics")
        .text()
        .expect("text");
    m.lines()
        .filter(|l| l.starts_with("mirrorfarm_syncs_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// The status codes of the responses on the wire (status lines only; bodies are skipped by
/// looking for the next status line).
fn codes(wire: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(wire);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

#[test]
fn smuggled_and_confused_requests_never_reach_the_node_only_trigger() {
    let (_up, node) = serving_p_r("");
    // A trigger straight from this host is accepted: what must never happen through the LB.
    let lb = Lb::start(&backends(&[&node]), "");
    lb.wait_healthy(1, LIMIT);
    let host = format!("localhost:{}", lb.https);
    let trigger = format!(
        "POST /rest/mirroring/latest/sync HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    );
    let last = format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let upload = "/scm/P/r.git/git-upload-pack";
    let ct = "Content-Type: application/x-git-upload-pack-request\r\n";
    let chunked_trigger = format!("0\r\n\r\n{trigger}");
    let cases: Vec<(&str, String, bool)> = vec![
        // (name, bytes, must the first answer be a 4xx)
        (
            "CL then TE",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_trigger}",
                chunked_trigger.len()
            ),
            false,
        ),
        (
            "TE then CL",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{chunked_trigger}"
            ),
            false,
        ),
        (
            "differing Content-Lengths",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Content-Length: 0\r\nContent-Length: {}\r\n\r\n{trigger}",
                trigger.len()
            ),
            true,
        ),
        (
            "a Content-Length list",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Content-Length: 0, {}\r\n\r\n{trigger}",
                trigger.len()
            ),
            true,
        ),
        (
            "a GET with a body",
            format!(
                "GET /status HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{trigger}",
                trigger.len()
            ),
            false,
        ),
        (
            "xchunked",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Transfer-Encoding: xchunked\r\n\r\n{chunked_trigger}"
            ),
            true,
        ),
        (
            "chunked, identity",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Transfer-Encoding: chunked, identity\r\n\r\n{chunked_trigger}"
            ),
            true,
        ),
        (
            "a space before the colon",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Transfer-Encoding : chunked\r\n\r\n{chunked_trigger}"
            ),
            true,
        ),
        (
            "obs-fold",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Transfer-Encoding:\r\n chunked\r\n\r\n{chunked_trigger}"
            ),
            true,
        ),
        (
            "an invalid chunk size",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Transfer-Encoding: chunked\r\n\r\nzz\r\n{trigger}\r\n0\r\n\r\n"
            ),
            true,
        ),
        (
            "a chunk size that overflows",
            format!(
                "POST {upload} HTTP/1.1\r\nHost: {host}\r\n{ct}Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n{trigger}\r\n0\r\n\r\n"
            ),
            true,
        ),
        (
            "absolute-form",
            format!(
                "POST https://{host}/rest/mirroring/latest/sync HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
            ),
            true,
        ),
        ("dot-segments", trigger.replace("POST /rest", "POST /scm/../rest"), true),
        ("a double slash", trigger.replace("POST /rest", "POST //rest"), true),
        ("percent-encoding", trigger.replace("POST /rest", "POST /%72est"), true),
        ("upper case", trigger.replace("POST /rest", "POST /REST"), true),
        ("a dot segment inside", trigger.replace("latest/sync", "latest/./sync"), true),
        ("the trigger itself", trigger.clone(), true),
    ];
    let before = syncs(&node);
    for (name, bytes, refused) in &cases {
        let request = format!("{bytes}{last}");
        let (wire, _) = exchange(lb.https, &lb.ca(), request.as_bytes());
        let got = codes(&wire);
        assert!(!got.is_empty(), "{name}: no answer");
        assert!(
            !got.contains(&202),
            "{name}: the trigger was reached: {got:?}"
        );
        if *refused {
            assert!(
                (400..500).contains(&got[0]),
                "{name}: expected a 4xx first, got {got:?}\n{}",
                String::from_utf8_lossy(&wire)
            );
        }
    }
    assert_eq!(syncs(&node), before, "a sync ran: the trigger was reached");
    // The check can fail: the same trigger straight from the node's host runs a sync.
    assert_eq!(node.trigger(Some(("P", "r"))), 202);
    mirrorfarm_tests::wait_for("the direct trigger's sync", LIMIT, || {
        (syncs(&node) > before).then_some(())
    });
}
