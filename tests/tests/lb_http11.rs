//! The LB's own HTTP/1.1 handling (its fast path for requests without a body, and the hand-over
//! of every other request to pingora on the same connection), with a raw client over verified
//! TLS: pipelined requests each get their answer in order, bodies arrive intact (chunked ones
//! re-framed), HEAD has no body, `Connection: close` closes, and requests the fast path does not
//! take (a body, a node-only path, another host, HTTP/1.0) are answered as before.

use std::time::Duration;

use mirrorfarm_tests::lb::{backends, Lb};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::raw_http::{exchange, exchange_in_pieces, parse_responses};
use mirrorfarm_tests::upstream::{Shape, Upstream};

const LIMIT: Duration = Duration::from_secs(90);
const PROPS: &str = "mirror.repos=P/r\nmirror.access=anonymous\n";

fn setup() -> (Upstream, Vec<Node>, Lb) {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let nodes: Vec<Node> = (0..2).map(|_| Node::start(&up.file_url(), PROPS)).collect();
    for n in &nodes {
        n.wait_state("SYNCHRONIZED", LIMIT);
    }
    let lb = Lb::start(&backends(&nodes.iter().collect::<Vec<_>>()), "");
    lb.wait_healthy(2, LIMIT);
    (up, nodes, lb)
}

#[test]
fn pipelined_requests_on_one_connection_each_get_their_answer() {
    let (_up, nodes, lb) = setup();
    let refs = "/scm/P/r.git/info/refs?service=git-upload-pack";
    let direct = reqwest::blocking::get(format!("http://127.0.0.1:{}{refs}", nodes[0].http))
        .and_then(|r| r.bytes())
        .expect("info/refs from a node");
    let host = format!("localhost:{}", lb.https);
    let request = format!(
        "GET /status HTTP/1.1\r\nHost: {host}\r\n\r\n\
         HEAD {refs} HTTP/1.1\r\nHost: {host}\r\n\r\n\
         GET {refs} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n\
         GET /rest/mirroring/latest/sync HTTP/1.1\r\nHost: {host}\r\n\r\n\
         GET /status HTTP/1.1\r\nHost: evil.example\r\n\r\n\
         POST /status HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\n{{}}\
         GET {refs} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let (wire, closed) = exchange(lb.https, &lb.ca(), request.as_bytes());
    assert!(closed, "the connection stays open after Connection: close");
    let r = parse_responses(&wire, &[false, true, false, false, false, false, false])
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&wire)));
    let codes: Vec<u16> = r.iter().map(|r| r.code).collect();
    assert_eq!(codes.len(), 7, "{codes:?}");
    assert_eq!(codes[..5], [200, 200, 200, 404, 421], "{codes:?}");
    assert!((400..500).contains(&codes[5]), "POST /status: {codes:?}");
    assert_eq!(codes[6], 200);
    let status: serde_json::Value = serde_json::from_slice(&r[0].body).expect("status JSON");
    assert_eq!(status["state"], "SYNCHRONIZED");
    assert!(r[1].body.is_empty());
    assert_eq!(
        r[2].body,
        direct.as_ref(),
        "info/refs differs from the node's"
    );
    assert_eq!(
        r[6].body,
        direct.as_ref(),
        "info/refs differs from the node's"
    );
    assert_eq!(
        r[2].header("content-type"),
        Some("application/x-git-upload-pack-advertisement")
    );
    assert_eq!(r[6].header("connection"), Some("close"));
    for resp in &r {
        assert!(resp.header("keep-alive").is_none(), "{resp:?}");
    }
}

#[test]
fn http10_and_header_limits_are_answered() {
    let (_up, _nodes, lb) = setup();
    let (wire, closed) = exchange(
        lb.https,
        &lb.ca(),
        b"GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n",
    );
    assert!(closed, "HTTP/1.0 without keep-alive stays open");
    let r = parse_responses(&wire, &[false]).expect("one response");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].code, 200);
    // A head larger than the fast path reads is pingora's to answer: an answer, not a hang.
    let big = format!(
        "GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (wire, closed) = exchange(lb.https, &lb.ca(), big.as_bytes());
    assert!(closed);
    let text = String::from_utf8_lossy(&wire);
    assert!(text.starts_with("HTTP/1.1 "), "{text:.200}");
}

#[test]
fn a_head_arriving_in_pieces_is_read_whole() {
    let (_up, _nodes, lb) = setup();
    let host = format!("localhost:{}", lb.https);
    let second = format!("st: {host}\r\nConnection: cl");
    let (wire, closed) = exchange_in_pieces(
        lb.https,
        &lb.ca(),
        &[
            b"GET /status HTTP/1.1\r\nHo",
            second.as_bytes(),
            b"ose\r\n\r\n",
        ],
        Duration::from_millis(200),
    );
    assert!(closed);
    let r = parse_responses(&wire, &[false])
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&wire)));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].code, 200);
    let status: serde_json::Value = serde_json::from_slice(&r[0].body).expect("status JSON");
    assert_eq!(status["state"], "SYNCHRONIZED");
}
