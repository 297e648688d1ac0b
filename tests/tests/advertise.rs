//! Ref advertisements served from memory are byte for byte what `git upload-pack` sends for the
//! same repository and request: v0 `info/refs`, the v2 capability advertisement, and v2 `ls-refs`
//! with every argument combination — on a repository with thousands of branches and annotated
//! tags and a symbolic HEAD, and on an empty one. A new state is advertised after a sync.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, prom};

const LIMIT: Duration = Duration::from_secs(120);

fn git_upload_pack(repo: &Path, protocol: Option<&str>, advertise: bool, stdin: &[u8]) -> Vec<u8> {
    let mut c = gitc::cmd(None);
    c.args(["upload-pack", "--stateless-rpc", "--strict"]);
    if advertise {
        c.arg("--advertise-refs");
    }
    c.arg(repo);
    if let Some(p) = protocol {
        c.env("GIT_PROTOCOL", p);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git upload-pack");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "git upload-pack failed");
    out.stdout
}

fn pkt(s: &str) -> Vec<u8> {
    let mut v = format!("{:04x}", s.len() + 4).into_bytes();
    v.extend_from_slice(s.as_bytes());
    v
}

fn ls_refs_body(args: &[&str]) -> Vec<u8> {
    let mut b = pkt("command=ls-refs\n");
    b.extend(pkt("agent=git/2.47.3\n"));
    b.extend(pkt("object-format=sha1\n"));
    b.extend(b"0001");
    for a in args {
        b.extend(pkt(&format!("{a}\n")));
    }
    b.extend(b"0000");
    b
}

fn get(url: &str, v2: bool) -> Vec<u8> {
    let c = reqwest::blocking::Client::new();
    let mut r = c.get(url);
    if v2 {
        r = r.header("Git-Protocol", "version=2");
    }
    let resp = r.send().expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    resp.bytes().expect("body").to_vec()
}

fn post_v2(url: &str, body: Vec<u8>) -> Vec<u8> {
    let resp = reqwest::blocking::Client::new()
        .post(url)
        .header("Content-Type", "application/x-git-upload-pack-request")
        .header("Git-Protocol", "version=2")
        .body(body)
        .send()
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 200);
    resp.bytes().expect("body").to_vec()
}

fn from_memory(node: &Node) -> f64 {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", node.http))
        .and_then(|r| r.text())
        .expect("metrics");
    prom::value(
        &prom::parse(&text),
        "mirrorfarm_advertisements_total",
        &[("source", "memory")],
    )
}

fn check_repo(node: &Node, project: &str, repo: &str) {
    let memory_before = from_memory(node);
    let mirror = node.mirror_path(project, repo);
    let base = node.http_url(project, repo);
    let mut want_v0 = b"001e# service=git-upload-pack\n0000".to_vec();
    want_v0.extend(git_upload_pack(&mirror, None, true, b""));
    let got = get(&format!("{base}/info/refs?service=git-upload-pack"), false);
    assert!(
        got == want_v0,
        "{project}/{repo}: v0 advertisement differs from git's ({} vs {} bytes)",
        got.len(),
        want_v0.len()
    );
    let want_v2 = git_upload_pack(&mirror, Some("version=2"), true, b"");
    assert_eq!(
        get(&format!("{base}/info/refs?service=git-upload-pack"), true),
        want_v2,
        "{project}/{repo}: v2 capabilities"
    );
    let combos: &[&[&str]] = &[
        &[],
        &["peel"],
        &["symrefs"],
        &["peel", "symrefs"],
        &["symrefs", "unborn"],
        &["unborn"],
        &["ref-prefix refs/tags/"],
        &["ref-prefix HEAD", "ref-prefix refs/heads/ma"],
        &[
            "peel",
            "symrefs",
            "unborn",
            "ref-prefix refs/heads/",
            "ref-prefix refs/tags/v1",
        ],
        &["ref-prefix refs/nothing/"],
    ];
    let metrics = format!("http://127.0.0.1:{}/metrics", node.http);
    let served = || {
        let text = reqwest::blocking::get(&metrics)
            .and_then(|r| r.text())
            .expect("metrics");
        prom::value(
            &prom::parse(&text),
            "mirrorfarm_served_requests_total",
            &[("kind", "ls_refs")],
        )
    };
    let before = served();
    for args in combos {
        let body = ls_refs_body(args);
        let want = git_upload_pack(&mirror, Some("version=2"), false, &body);
        let got = post_v2(&format!("{base}/git-upload-pack"), body);
        assert!(
            got == want,
            "{project}/{repo}: ls-refs {args:?} differs:\n got: {}\nwant: {}",
            String::from_utf8_lossy(&got[..got.len().min(300)]),
            String::from_utf8_lossy(&want[..want.len().min(300)])
        );
    }
    assert_eq!(
        served() - before,
        combos.len() as f64,
        "ls-refs was not answered from memory"
    );
    assert_eq!(
        from_memory(node) - memory_before,
        2.0 + combos.len() as f64,
        "advertisements not served from memory"
    );
}

#[test]
fn advertisements_from_memory_equal_gits_own() {
    let up = Upstream::new();
    up.create(
        "BIG",
        "refs",
        &Shape {
            commits: 60,
            blob_bytes: 100,
            branches: 3000,
            tags: 1500,
        },
    );
    up.create(
        "BIG",
        "empty",
        &Shape {
            commits: 0,
            blob_bytes: 0,
            branches: 0,
            tags: 0,
        },
    );
    let node = Node::start(
        &up.file_url(),
        "mirror.projects=BIG\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    assert!(gitc::refs(&node.mirror_path("BIG", "refs")).len() > 4500);
    check_repo(&node, "BIG", "refs");
    check_repo(&node, "BIG", "empty");

    // Over SSH (protocol v2) the same memory serves ls-refs, and clones share the pack cache.
    let ssh = node.git_ssh();
    let envs = [("GIT_SSH_COMMAND", ssh.as_str())];
    let before = from_memory(&node);
    let listed = gitc::ls_remote(&node.ssh_url("BIG", "refs"), &envs);
    assert_eq!(listed, gitc::refs(&node.mirror_path("BIG", "refs")));
    assert!(
        from_memory(&node) > before,
        "SSH ls-refs not served from memory"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    for i in 0..2 {
        let dest = tmp.path().join(format!("ssh{i}"));
        gitc::run(
            None,
            &[
                "clone",
                "-q",
                "--mirror",
                &node.ssh_url("BIG", "refs"),
                dest.to_str().expect("utf8"),
            ],
            &envs,
        );
        assert_eq!(gitc::refs(&dest), listed);
    }
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", node.http))
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        prom::value(
            &prom::parse(&text),
            "mirrorfarm_pack_cache_requests_total",
            &[("result", "hit")]
        ) >= 1.0
    );

    // A new state is advertised as soon as it is served.
    let gen = node.repo_status("BIG", "refs").expect("status")["generation"]
        .as_u64()
        .expect("gen");
    let new = up.commit("BIG", "refs", "main", "new");
    assert_eq!(node.trigger(Some(("BIG", "refs"))), 202);
    node.wait_generation("BIG", "refs", gen + 1, LIMIT);
    let listed = gitc::ls_remote(&node.http_url("BIG", "refs"), &[]);
    assert_eq!(listed["refs/heads/main"], new);
    check_repo(&node, "BIG", "refs");
}
