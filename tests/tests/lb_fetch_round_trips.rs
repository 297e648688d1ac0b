//! What a no-op `git fetch` costs through the LB, as git's own trace shows it: protocol v2 with
//! `ls-refs` and ref prefixes over h2 and over HTTP/1.1, two requests (ref advertisement and
//! `ls-refs`) and no `fetch` command — with the session cookie git saved
//! (`http.cookieFile` + `http.saveCookies`) and with `http.proactiveAuth=basic` (git ≥ 2.46);
//! with credentials alone git itself asks once without them first (one 401 more).

use std::path::Path;
use std::time::Duration;

use mirrorfarm_tests::gitc;
use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::lb::{backends, Lb};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};

const LIMIT: Duration = Duration::from_secs(90);
const ALICE: (&str, &str) = ("alice", "alice-pw");

/// One request git made: method, path, the status it got.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    status: u16,
}

/// What one traced git command did.
struct Trace {
    requests: Vec<Request>,
    /// pkt-lines git sent (`fetch> …` of GIT_TRACE_PACKET).
    sent: Vec<String>,
    /// The HTTP version of the answers (`HTTP/2`, `HTTP/1.1`).
    versions: Vec<String>,
    text: String,
}

/// Runs git with `args` in `dir` (config `config` on the command line), tracing HTTP and packets.
fn traced(dir: Option<&Path>, config: &[String], args: &[&str], ca: &str) -> Trace {
    let trace = tempfile::NamedTempFile::new().expect("trace file");
    let path = trace.path().display().to_string();
    let mut all: Vec<&str> = Vec::new();
    for c in config {
        all.extend(["-c", c.as_str()]);
    }
    all.extend(args);
    gitc::run(
        dir,
        &all,
        &[
            ("GIT_SSL_CAINFO", ca),
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_TRACE_CURL", path.as_str()),
            ("GIT_TRACE_CURL_NO_DATA", "1"),
            ("GIT_TRACE_PACKET", path.as_str()),
        ],
    );
    let text = std::fs::read_to_string(trace.path()).expect("read trace");
    let mut requests = Vec::new();
    let (mut sent, mut versions) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(h) = line.split("=> Send header: ").nth(1) {
            let mut w = h.split_whitespace();
            if let (Some(m @ ("GET" | "POST")), Some(p)) = (w.next(), w.next()) {
                requests.push(Request {
                    method: m.to_owned(),
                    path: p.to_owned(),
                    status: 0,
                });
            }
        } else if let Some(h) = line.split("<= Recv header: ").nth(1) {
            let mut w = h.split_whitespace();
            if let (Some(v), Some(code)) = (w.next(), w.next()) {
                if v.starts_with("HTTP/") && code != "100" {
                    versions.push(v.to_owned());
                    if let Some(r) = requests.iter_mut().rev().find(|r| r.status == 0) {
                        r.status = code.parse().unwrap_or(0);
                    }
                }
            }
        } else if let Some(p) = line.split("packet:").nth(1) {
            // `fetch> …` (or `git> …`): what the command sent.
            if let Some((who, what)) = p.trim_start().split_once(' ') {
                if who.ends_with('>') {
                    sent.push(what.trim().to_owned());
                }
            }
        }
    }
    Trace {
        requests,
        sent,
        versions,
        text,
    }
}

/// The requests of a no-op fetch that needed no second round trip: the ref advertisement, then
/// one `ls-refs` with ref prefixes, both answered 200 over `version`, and nothing fetched.
fn assert_two_round_trips(t: &Trace, version: &str, what: &str) {
    let shape: Vec<(&str, bool, u16)> = t
        .requests
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.ends_with("/info/refs?service=git-upload-pack"),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [("GET", true, 200), ("POST", false, 200)],
        "{what}: {:?}\n{}",
        t.requests,
        t.text
    );
    assert!(
        t.requests[1].path.ends_with("/git-upload-pack"),
        "{what}: {:?}",
        t.requests
    );
    assert!(
        t.versions.iter().all(|v| v == version),
        "{what}: answered over {:?}, not {version}",
        t.versions
    );
    assert!(
        t.sent.iter().any(|p| p == "command=ls-refs"),
        "{what}: no v2 ls-refs: {:?}",
        t.sent
    );
    assert!(
        t.sent.iter().any(|p| p.starts_with("ref-prefix ")),
        "{what}: ls-refs without ref prefixes: {:?}",
        t.sent
    );
    assert!(
        !t.sent.iter().any(|p| p == "command=fetch"),
        "{what}: a no-op fetch asked for objects: {:?}",
        t.sent
    );
}

fn git_at_least(want: (u32, u32)) -> bool {
    let v = gitc::run(None, &["--version"], &[]);
    let mut n = v
        .trim()
        .trim_start_matches("git version ")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (n.next().unwrap_or(0), n.next().unwrap_or(0)) >= want
}

#[test]
fn a_no_op_fetch_through_the_lb_takes_two_requests_with_a_session_or_proactive_auth() {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let http = HttpUpstream::start(&up.root(), &[ALICE], &[("P/r", &["alice"])]);
    let node = Node::start(
        &up.ssh_url(),
        &format!(
            "mirror.repos=P/r\nmirror.access=authenticated\n{}",
            http.properties()
        ),
    );
    node.authorize_and_sync(&up, LIMIT);
    let lb = Lb::start(&backends(&[&node]), "");
    lb.wait_healthy(1, LIMIT);

    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = lb.ca().display().to_string();
    let url = lb.https_url("P", "r");
    let with_password = url.replacen("https://", &format!("https://{}:{}@", ALICE.0, ALICE.1), 1);
    let jar = tmp.path().join("cookies");
    let cookies = [
        format!("http.cookieFile={}", jar.display()),
        "http.saveCookies=true".to_owned(),
    ];
    let clone = tmp.path().join("clone");
    let clone_s = clone.to_str().expect("utf8");
    // The clone authenticates and git keeps the session cookie.
    let t = traced(
        None,
        &cookies,
        &["clone", "-q", "--bare", &with_password, clone_s],
        &ca,
    );
    assert!(
        t.requests.iter().any(|r| r.status == 401) && t.requests.iter().any(|r| r.status == 200),
        "{:?}",
        t.requests
    );
    assert!(
        std::fs::read_to_string(&jar)
            .unwrap_or_default()
            .contains("BITBUCKETSESSIONID"),
        "git did not save the session cookie"
    );

    let fetch = ["fetch", "-q", url.as_str(), "+refs/*:refs/*"];
    let h1 = "http.version=HTTP/1.1".to_owned();
    for (version, extra) in [("HTTP/2", None), ("HTTP/1.1", Some(&h1))] {
        // With the session cookie: no credentials needed, no 401.
        let mut config = cookies.to_vec();
        config.extend(extra.cloned());
        let t = traced(Some(&clone), &config, &fetch, &ca);
        assert_two_round_trips(&t, version, &format!("{version}, session cookie"));

        // Credentials alone: git asks without them first (its default), then again with them.
        let creds = ["fetch", "-q", with_password.as_str(), "+refs/*:refs/*"];
        let config: Vec<String> = extra.cloned().into_iter().collect();
        let t = traced(Some(&clone), &config, &creds, &ca);
        let statuses: Vec<u16> = t.requests.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [401, 200, 200],
            "{version}, credentials: {:?}",
            t.requests
        );

        // … unless told to send them at once (git ≥ 2.46).
        if git_at_least((2, 46)) {
            let mut config = vec!["http.proactiveAuth=basic".to_owned()];
            config.extend(extra.cloned());
            let t = traced(Some(&clone), &config, &creds, &ca);
            assert_two_round_trips(&t, version, &format!("{version}, http.proactiveAuth=basic"));
        } else {
            eprintln!("git older than 2.46: http.proactiveAuth not checked");
        }
    }
}
