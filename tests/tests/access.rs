//! HTTP access in authenticated mode, against a real upstream endpoint (nginx + HTTP Basic +
//! `git http-backend`, alice may use PROJ/a, bob PROJ/b) while the node fetches over OpenSSH:
//! credentials are checked with the upstream and cached (one check for a burst, denials cached
//! too), a repository the user may not read answers as one not mirrored, sessions cover what was
//! checked and their grants expire, cached grants outlive an unreachable upstream while new users
//! get 503, and a push through the node lands upstream and is advertised when it returns.

use std::sync::Barrier;
use std::time::Duration;

use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(60);
const ALICE: (&str, &str) = ("alice", "alice-pw");
const BOB: (&str, &str) = ("bob", "bob-pw");

/// An sshd upstream holding PROJ/a and PROJ/b, and its HTTP endpoint.
fn upstreams() -> (Upstream, HttpUpstream) {
    let mut up = Upstream::new();
    up.create("PROJ", "a", &Shape::small());
    up.create("PROJ", "b", &Shape::small());
    up.start_sshd();
    let http = HttpUpstream::start(
        &up.root(),
        &[ALICE, BOB],
        &[("PROJ/a", &["alice"]), ("PROJ/b", &["bob"])],
    );
    (up, http)
}

/// An authenticated node mirroring both over sshd, synchronized.
fn node(up: &Upstream, http: &HttpUpstream, extra: &str) -> Node {
    let node = Node::start(
        &up.ssh_url(),
        &format!(
            "mirror.repos=PROJ/a,PROJ/b\nmirror.access=authenticated\n{}{extra}",
            http.properties()
        ),
    );
    node.authorize_and_sync(up, LIMIT);
    node
}

struct Answer {
    status: u16,
    set_cookie: Option<String>,
    www: Option<String>,
    body: String,
}

fn info_refs(node: &Node, repo: &str, who: Option<(&str, &str)>, cookie: Option<&str>) -> Answer {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut r = c.get(format!(
        "{}/info/refs?service=git-upload-pack",
        node.http_url("PROJ", repo)
    ));
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    if let Some(c) = cookie {
        r = r.header("Cookie", c);
    }
    let resp = r.send().expect("GET info/refs");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Answer {
        status: resp.status().as_u16(),
        set_cookie: header("set-cookie"),
        www: header("www-authenticate"),
        body: resp.text().unwrap_or_default(),
    }
}

/// `http://user:password@127.0.0.1:port/scm/PROJ/<repo>.git`.
fn url_as(node: &Node, repo: &str, (u, p): (&str, &str)) -> String {
    node.http_url("PROJ", repo)
        .replacen("http://", &format!("http://{u}:{p}@"), 1)
}

const NO_PROMPT: [(&str, &str); 1] = [("GIT_TERMINAL_PROMPT", "0")];

#[test]
fn credentials_decide_what_each_user_reads() {
    let (up, http) = upstreams();
    let node = node(&up, &http, "");

    // No credentials: 401 in this farm's realm, and not one ref name — for a repository that is
    // mirrored and for one that is not alike.
    for repo in ["a", "nope"] {
        let r = info_refs(&node, repo, None, None);
        assert_eq!(r.status, 401, "{repo}: {}", r.body);
        assert_eq!(r.www.as_deref(), Some("Basic realm=\"Test mirror\""));
        assert!(!r.body.contains("refs/"), "{}", r.body);
        assert!(r.set_cookie.is_none());
    }
    let out = gitc::try_run(
        None,
        &["ls-remote", &node.http_url("PROJ", "a")],
        &NO_PROMPT,
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());

    // A wrong password: 401, and the denial is cached (the upstream is asked once).
    let before = http.checks();
    for _ in 0..2 {
        let r = info_refs(&node, "a", Some(("alice", "wrong")), None);
        assert_eq!(r.status, 401);
        assert!(!r.body.contains("refs/"));
    }
    assert_eq!(
        http.checks(),
        before + 1,
        "one check for a repeated wrong password"
    );

    // alice reads A with git; B answers exactly as a repository that is not mirrored.
    let refs = gitc::ls_remote(&url_as(&node, "a", ALICE), &NO_PROMPT);
    assert!(refs.contains_key("refs/heads/main"), "{refs:?}");
    let out = gitc::try_run(None, &["ls-remote", &url_as(&node, "b", ALICE)], &NO_PROMPT);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "not one ref of B");
    let b = info_refs(&node, "b", Some(ALICE), None);
    let nope = info_refs(&node, "nope", Some(ALICE), None);
    assert_eq!((b.status, nope.status), (404, 404));
    assert_eq!(
        b.body.replace("PROJ/b", "X"),
        nope.body.replace("PROJ/nope", "X")
    );

    // 100 first requests of one new credential at once: one upstream check. Those that arrive
    // while it runs share its answer, those after it find it cached: every one is counted as granted.
    let before = http.checks();
    let granted = |source: &str| {
        node.metric(
            "mirrorfarm_auth_decisions_total",
            &[("source", source), ("outcome", "granted")],
        )
    };
    let sum_granted = || granted("upstream") + granted("shared") + granted("cache");
    let (upstream_before, all_before) = (granted("upstream"), sum_granted());
    let start = Barrier::new(100);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..100)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    info_refs(&node, "b", Some(BOB), None).status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        http.checks(),
        before + 1,
        "100 requests, one upstream check"
    );
    assert_eq!(granted("upstream") - upstream_before, 1.0);
    assert_eq!(
        sum_granted() - all_before,
        100.0,
        "each request counted once"
    );

    // A session: the cookie alone reads what its grant covers, nothing else.
    let r = info_refs(&node, "a", Some(ALICE), None);
    assert_eq!(r.status, 200);
    let set = r.set_cookie.expect("a session cookie");
    assert!(set.starts_with("BITBUCKETSESSIONID="), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let cookie = set.split(';').next().expect("cookie").to_owned();
    // A client that keeps no cookies (git by default) gets the same session back, not a new one.
    let again = info_refs(&node, "a", Some(ALICE), None)
        .set_cookie
        .expect("cookie");
    assert_eq!(again.split(';').next(), Some(cookie.as_str()));
    let value = cookie.trim_start_matches("BITBUCKETSESSIONID=");
    let (random, route) = value.split_once('.').expect("route suffix");
    assert_eq!(random.len(), 32, "128 random bits");
    assert!(!route.is_empty());
    let before = http.checks();
    let r = info_refs(&node, "a", None, Some(&cookie));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("refs/heads/main"));
    assert_eq!(info_refs(&node, "b", None, Some(&cookie)).status, 401);
    assert_eq!(http.checks(), before, "a session needs no check");
    let bogus = format!("BITBUCKETSESSIONID={}.{route}", "0".repeat(32));
    assert_eq!(info_refs(&node, "a", None, Some(&bogus)).status, 401);

    // What it counted.
    let m = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", node.http))
        .expect("metrics")
        .text()
        .expect("text");
    for needle in [
        "mirrorfarm_auth_decisions_total{source=\"upstream\",outcome=\"granted\"}",
        "mirrorfarm_auth_decisions_total{source=\"cache\",outcome=\"bad_credentials\"} 1",
        "mirrorfarm_sessions_live",
    ] {
        assert!(m.contains(needle), "{needle} in\n{m}");
    }
}

#[test]
fn cached_grants_outlive_the_upstream_and_session_grants_expire() {
    let (up, mut http) = upstreams();
    let node = node(&up, &http, "mirror.auth.cacheTtl=2\n");
    let r = info_refs(&node, "a", Some(ALICE), None);
    assert_eq!(r.status, 200);
    let cookie = r
        .set_cookie
        .expect("cookie")
        .split(';')
        .next()
        .expect("c")
        .to_owned();
    // The session's grant lasts mirror.auth.cacheTtl; then the cookie alone gets 401.
    wait_for("the session's grant to expire", LIMIT, || {
        (info_refs(&node, "a", None, Some(&cookie)).status == 401).then_some(())
    });

    // The upstream's endpoint goes down: alice's cached grant (past its TTL, within
    // mirror.auth.offlineTtl) still reads; bob, never checked, gets 503, not 401.
    http.stop();
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("a");
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            &url_as(&node, "a", ALICE),
            dest.to_str().expect("utf8"),
        ],
        &NO_PROMPT,
    );
    assert_eq!(
        gitc::refs(&dest).get("refs/remotes/origin/main"),
        gitc::refs(&up.repo("PROJ", "a")).get("refs/heads/main")
    );
    let r = info_refs(&node, "b", Some(BOB), None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("cannot check your credentials"),
        "{}",
        r.body
    );
    let s = node.status();
    assert_eq!(s["authOffline"], true, "{s}");
    assert!(
        s["accessMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("cached grants"),
        "{s}"
    );

    // Back: checks resume and the status says so.
    http.restart();
    assert_eq!(info_refs(&node, "b", Some(BOB), None).status, 200);
    assert_eq!(node.status()["authOffline"], false);
}

#[test]
fn a_push_through_the_node_lands_upstream_and_is_advertised_when_it_returns() {
    let (up, http) = upstreams();
    let node = node(&up, &http, "");
    let work = tempfile::tempdir().expect("tempdir");
    let clone = work.path().join("a");
    let url = url_as(&node, "a", ALICE);
    gitc::run(
        None,
        &["clone", "-q", &url, clone.to_str().expect("utf8")],
        &NO_PROMPT,
    );
    let id = [
        ("GIT_AUTHOR_NAME", "A"),
        ("GIT_AUTHOR_EMAIL", "a@example.com"),
        ("GIT_COMMITTER_NAME", "A"),
        ("GIT_COMMITTER_EMAIL", "a@example.com"),
    ];
    gitc::run(
        Some(&clone),
        &["commit", "-q", "--allow-empty", "-m", "through the farm"],
        &id,
    );
    let tip = gitc::run(Some(&clone), &["rev-parse", "HEAD"], &[])
        .trim()
        .to_owned();
    let pushes = http.pushes();
    let out = gitc::try_run(
        Some(&clone),
        &[
            "push",
            "origin",
            "HEAD:refs/heads/main",
            "HEAD:refs/heads/pushed",
        ],
        &NO_PROMPT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http.pushes(), pushes + 1);
    // Upstream has it, and the node advertises it the moment the push returned.
    let upstream = gitc::refs(&up.repo("PROJ", "a"));
    assert_eq!(upstream.get("refs/heads/main"), Some(&tip));
    let seen = gitc::ls_remote(&url, &NO_PROMPT);
    assert_eq!(seen.get("refs/heads/main"), Some(&tip), "read your writes");
    assert_eq!(seen.get("refs/heads/pushed"), Some(&tip));

    // bob may not push to A: the upstream's refusal reaches him, nothing changes.
    gitc::run(
        Some(&clone),
        &["commit", "-q", "--allow-empty", "-m", "bob's"],
        &id,
    );
    let out = gitc::try_run(
        Some(&clone),
        &["push", &url_as(&node, "a", BOB), "HEAD:refs/heads/main"],
        &NO_PROMPT,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );
    assert_eq!(
        gitc::refs(&up.repo("PROJ", "a")).get("refs/heads/main"),
        Some(&tip)
    );
    // A non-fast-forward is refused by the upstream, verbatim.
    gitc::run(Some(&clone), &["reset", "-q", "--hard", "HEAD~2"], &[]);
    gitc::run(
        Some(&clone),
        &["commit", "-q", "--allow-empty", "-m", "diverged"],
        &id,
    );
    let out = gitc::try_run(
        Some(&clone),
        &["push", "origin", "HEAD:refs/heads/main"],
        &NO_PROMPT,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rejected") || err.contains("non-fast-forward"),
        "{err}"
    );
}
