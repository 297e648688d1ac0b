//! Serving: clones over smart HTTP (v0, v2) and SSH equal the upstream ref for ref; shallow and
//! partial clones; gzip requests; pushes refused; bad paths refused; 401 and 503 in authenticated mode without a reachable credential check.

use std::io::{Read, Write};
use std::time::Duration;

use mirrorfarm_tests::gitc;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};

const LIMIT: Duration = Duration::from_secs(60);

fn farm() -> (Upstream, Node) {
    let up = Upstream::new();
    let path = up.create(
        "PROJ",
        "repo",
        &Shape {
            commits: 60,
            blob_bytes: 2000,
            branches: 4,
            tags: 3,
        },
    );
    // Refs beyond branches and tags are mirrored too.
    let head = gitc::run(Some(&path), &["rev-parse", "refs/heads/main~3"], &[]);
    gitc::run(
        Some(&path),
        &["update-ref", "refs/notes/commits", head.trim()],
        &[],
    );
    gitc::run(
        Some(&path),
        &["update-ref", "refs/pull/1/head", head.trim()],
        &[],
    );
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=PROJ/repo\nmirror.access=anonymous\n",
    );
    // Until the sync is over: the mirror's maintenance (bitmap, commit-graph) follows the flip.
    node.wait_synchronized(LIMIT);
    (up, node)
}

fn raw_status(port: u16, request: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("read");
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn clones_over_http_v0_v2_and_ssh_equal_upstream() {
    let (up, node) = farm();
    let want = gitc::refs(&up.repo("PROJ", "repo"));
    assert!(want.contains_key("refs/notes/commits") && want.contains_key("refs/tags/v0.0"));
    let ssh = node.git_ssh();
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("http-v0", node.http_url("PROJ", "repo"), "0"),
        ("http-v2", node.http_url("PROJ", "repo"), "2"),
        ("ssh-v0", node.ssh_url("PROJ", "repo"), "0"),
        ("ssh-v2", node.ssh_url("PROJ", "repo"), "2"),
        (
            "ssh-scp-path",
            format!("ssh://git@127.0.0.1:{}/PROJ/repo", node.ssh),
            "2",
        ),
    ];
    for (name, url, version) in cases {
        let envs = [("GIT_SSH_COMMAND", ssh.as_str())];
        let listed = gitc::ls_remote(&url, &envs);
        assert_eq!(listed, want, "{name}: ls-remote differs from upstream");
        let dest = tmp.path().join(name);
        let proto = format!("protocol.version={version}");
        gitc::run(
            None,
            &[
                "-c",
                &proto,
                "clone",
                "-q",
                "--mirror",
                &url,
                dest.to_str().expect("utf8"),
            ],
            &envs,
        );
        let got = gitc::refs(&dest);
        assert_eq!(got, want, "{name}: cloned refs differ from upstream");
        gitc::run(Some(&dest), &["fsck", "--no-dangling"], &[]);
    }
    assert!(node.log().contains("served"), "no serve log line");
    // The mirror is kept in serving shape: a reachability bitmap and a commit-graph.
    let mirror = node.mirror_path("PROJ", "repo");
    let packs: Vec<String> = std::fs::read_dir(mirror.join("objects/pack"))
        .expect("pack dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        packs.iter().any(|n| n.ends_with(".bitmap")),
        "no bitmap: {packs:?}"
    );
    assert!(
        mirror.join("objects/info/commit-graph").exists(),
        "no commit-graph"
    );
}

#[test]
fn shallow_partial_and_gzip_requests() {
    let (_up, node) = farm();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ssh = node.git_ssh();
    let envs = [("GIT_SSH_COMMAND", ssh.as_str())];
    for (name, url) in [
        ("http", node.http_url("PROJ", "repo")),
        ("ssh", node.ssh_url("PROJ", "repo")),
    ] {
        let shallow = tmp.path().join(format!("shallow-{name}"));
        gitc::run(
            None,
            &[
                "clone",
                "-q",
                "--depth",
                "1",
                &url,
                shallow.to_str().expect("utf8"),
            ],
            &envs,
        );
        assert_eq!(
            gitc::run(Some(&shallow), &["rev-list", "--count", "HEAD"], &[]).trim(),
            "1"
        );
        assert!(
            shallow.join(".git/shallow").exists(),
            "{name}: not a shallow clone"
        );
        let partial = tmp.path().join(format!("partial-{name}"));
        gitc::run(
            None,
            &[
                "clone",
                "-q",
                "--filter=blob:none",
                "--no-checkout",
                &url,
                partial.to_str().expect("utf8"),
            ],
            &envs,
        );
        let missing = gitc::run(
            Some(&partial),
            &["rev-list", "--objects", "--missing=print", "--all"],
            &[],
        );
        let n = missing.lines().filter(|l| l.starts_with('?')).count();
        assert!(
            n >= 50,
            "{name}: blobs were sent to a blob:none clone ({n} missing)"
        );
    }
    // A gzip-compressed protocol v2 ls-refs request.
    let body = b"0014command=ls-refs\n00010009peel\n000csymrefs\n0000";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).expect("gzip");
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/git-upload-pack", node.http_url("PROJ", "repo")))
        .header("Content-Type", "application/x-git-upload-pack-request")
        .header("Content-Encoding", "gzip")
        .header("Git-Protocol", "version=2")
        .body(gz.finish().expect("gzip"))
        .send()
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().expect("body");
    assert!(
        text.contains("HEAD symref-target:refs/heads/main"),
        "{text}"
    );
    assert!(text.contains("refs/tags/v0.0 peeled:"), "{text}");
}

#[test]
fn pushes_are_refused_naming_the_upstream() {
    let (up, node) = farm();
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("w");
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            &node.http_url("PROJ", "repo"),
            work.to_str().expect("utf8"),
        ],
        &[],
    );
    gitc::run(
        Some(&work),
        &["commit", "-q", "--allow-empty", "-m", "x"],
        &[],
    );
    let ssh = node.git_ssh();
    let want = format!("{}/PROJ/repo.git", up.file_url());
    for url in [node.http_url("PROJ", "repo"), node.ssh_url("PROJ", "repo")] {
        let out = gitc::try_run(
            Some(&work),
            &["push", &url, "HEAD:main"],
            &[("GIT_SSH_COMMAND", &ssh)],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "push to {url} succeeded");
        assert!(
            err.contains("read-only mirror") && err.contains(&want),
            "{url}: {err}"
        );
    }
    assert_eq!(
        gitc::refs(&up.repo("PROJ", "repo"))["refs/heads/main"],
        gitc::ls_remote(&node.http_url("PROJ", "repo"), &[])["refs/heads/main"]
    );
}

#[test]
fn bad_paths_and_unknown_repos_are_refused() {
    let (_up, node) = farm();
    let get = |path: &str| {
        raw_status(
            node.http,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    };
    let q = "info/refs?service=git-upload-pack";
    assert_eq!(get(&format!("/scm/PROJ/repo.git/{q}")), 200);
    assert_eq!(
        get(&format!("/scm/PROJ/repo/{q}")),
        200,
        "path without .git"
    );
    for bad in [
        "/scm/PROJ/../../etc/",
        "/scm/PROJ/..%2f..%2fetc/",
        "/scm/PROJ%2frepo/",
        "/scm/PROJ/re$po/",
        "/scm//etc/passwd/",
        "/scm/PROJ/.git/",
    ] {
        assert_eq!(get(&format!("{bad}{q}")), 400, "{bad}");
    }
    assert_eq!(get(&format!("/scm/PROJ/other/{q}")), 404);
    assert_eq!(
        get("/scm/PROJ/repo.git/info/refs"),
        403,
        "dumb HTTP must not be served"
    );
    assert_eq!(
        get("/scm/PROJ/repo.git/HEAD"),
        404,
        "raw files must not be served"
    );
    let ssh = node.git_ssh();
    let envs = [("GIT_SSH_COMMAND", ssh.as_str())];
    let out = gitc::try_run(None, &["ls-remote", &node.ssh_url("PROJ", "other")], &envs);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not mirrored"),
        "{out:?}"
    );
    let out = gitc::try_run(
        None,
        &[
            "ls-remote",
            &format!("ssh://git@127.0.0.1:{}/PROJ/../x.git", node.ssh),
        ],
        &envs,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad repository path"),
        "{out:?}"
    );
    // No shell.
    let mut cmd = std::process::Command::new("ssh");
    cmd.args(node.git_ssh().split(' ').skip(1)).args([
        "-p",
        &node.ssh.to_string(),
        "git@127.0.0.1",
        "cat /etc/passwd",
    ]);
    let out = cmd.output().expect("ssh");
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("root:"),
        "command ran"
    );
}

#[test]
fn a_slow_client_is_cut_off_at_the_header_timeout() {
    let up = Upstream::new();
    up.create("PROJ", "repo", &Shape::small());
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=PROJ/repo\nmirror.access=anonymous\nserver.headerTimeout=2\n",
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.http)).expect("connect");
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        .expect("partial headers");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let start = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "connection held for {waited:?}"
    );
    assert!(
        waited >= Duration::from_secs(1),
        "cut off too early ({waited:?})"
    );
    // Well-behaved clients are unaffected.
    assert_eq!(node.status()["repos"][0]["project"], "PROJ");
}

#[test]
fn authenticated_access_without_a_reachable_upstream_endpoint() {
    let up = Upstream::new();
    up.create("PROJ", "repo", &Shape::small());
    // Nothing listens on port 9: credentials cannot be checked.
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=PROJ/repo\nplugin.mirroring.upstream.auth.url=https://127.0.0.1:9/scm\n",
    );
    let s = node.wait_state("SYNCHRONIZED", LIMIT);
    assert_eq!(s["access"], "authenticated", "{s}");
    let url = format!(
        "{}/info/refs?service=git-upload-pack",
        node.http_url("PROJ", "repo")
    );
    // No credentials: 401 asking for them.
    let r = reqwest::blocking::get(&url).expect("GET");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // Credentials nobody can check: 503 (a 401 would make git drop the user's password).
    let r = reqwest::blocking::Client::new()
        .get(&url)
        .basic_auth("alice", Some("pw"))
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 503);
    assert!(node.status()["authOffline"] == true);
    let out = gitc::try_run(
        None,
        &["ls-remote", &node.ssh_url("PROJ", "repo")],
        &[("GIT_SSH_COMMAND", &node.git_ssh())],
    );
    assert!(!out.status.success());
    // A key the farm does not know fails SSH authentication itself.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
}
