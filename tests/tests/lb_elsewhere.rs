//! The LB sends a read to another node when the one it chose answers 503 with
//! `x-mirrorfarm-elsewhere` (a node withholding a repository, or not synchronized yet, says so),
//! on both of its paths: bodiless GETs (its own HTTP/1.1 fast path) and upload-pack POSTs
//! (pingora's, the body sent again from its retry buffer). The second node is a stand-in that is
//! healthy on `/status` and answers every git request that way — the state a real member is in
//! for a moment as it comes back from a cut (tests/tests/fault_hosts_partition.rs) — so that the
//! LB meets it on every other request, not by chance.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mirrorfarm_tests::gitc;
use mirrorfarm_tests::lb::Lb;
use mirrorfarm_tests::node::serving_p_r;

/// A node stand-in: healthy `/status`, and a 503 marked for another node for everything else;
/// counts the git requests it refused, by method.
fn stand_in() -> (u16, Arc<[AtomicUsize; 2]>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let counts: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let seen = counts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                // The rest of the head; the body (if any) is not read, as a node answers a
                // withheld repository before reading it.
                let mut h = String::new();
                while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                // It plays a node of an older version: no readiness document (404), so the LB's
                // health check reads its /status.
                let answer = if line.starts_with("GET /rest/mirroring/latest/ready ") {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned()
                } else if line.starts_with("GET /status ") {
                    let body = r#"{"state":"SYNCHRONIZED","nodeId":"stand-in","ready":true}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    let i = usize::from(line.starts_with("POST "));
                    seen[i].fetch_add(1, Ordering::Relaxed);
                    let body = "not served by this node right now\n";
                    format!(
                        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nx-mirrorfarm-elsewhere: withheld\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = conn.write_all(answer.as_bytes());
            });
        }
    });
    (port, counts)
}

#[test]
fn reads_refused_for_elsewhere_go_to_another_node() {
    let (_up, node) = serving_p_r("");
    let (port, refused) = stand_in();
    let backends = format!(
        "127.0.0.1:{}:{},127.0.0.1:{port}:{port}",
        node.http, node.ssh
    );
    let lb = Lb::start(&backends, "");
    lb.wait_healthy(2, std::time::Duration::from_secs(60));
    let env = lb.git_env();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = lb.https_url("P", "r");
    let work = tempfile::tempdir().expect("tempdir");
    for i in 0..8 {
        let dest = work.path().join(format!("c{i}"));
        let dest = dest.to_str().expect("utf8");
        // Protocol v0 and v2: one POST, or several, after the GET.
        let protocol = if i % 2 == 0 {
            "protocol.version=0"
        } else {
            "protocol.version=2"
        };
        gitc::run(None, &["-c", protocol, "clone", "-q", &url, dest], &envs);
        gitc::run(None, &["ls-remote", &url], &envs);
    }
    let (gets, posts) = (
        refused[0].load(Ordering::Relaxed),
        refused[1].load(Ordering::Relaxed),
    );
    eprintln!("the stand-in refused {gets} GETs and {posts} POSTs; every clone succeeded");
    assert!(gets > 0, "no GET met the stand-in: the test proved nothing");
    assert!(
        posts > 0,
        "no POST met the stand-in: the test proved nothing"
    );
}
