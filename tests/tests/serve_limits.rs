//! `mirror.serve.maxProcesses` and `mirror.serve.queueTimeout`: with every upload-pack place
//! taken, an HTTP request that needs git waits the queue timeout and gets 503 with `Retry-After`,
//! an SSH one gets a git `ERR` naming the limit; what is answered from memory needs no place; once
//! the place is free, requests are served again.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mirrorfarm_tests::node::{serving_p_r, Node};
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, pktline_request, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

/// A plain clone of P/r from `node` over HTTP succeeds.
fn clone_works(node: &Node) {
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("r");
    let url = node.http_url("P", "r");
    gitc::run(
        None,
        &["clone", "-q", &url, dest.to_str().expect("utf8")],
        &[],
    );
}

#[test]
fn upload_pack_processes_are_bounded_and_waiters_get_503() {
    let (up, node) = serving_p_r(
        "mirror.serve.maxProcesses=1\n\
         mirror.serve.queueTimeout=2\nmirror.cache.packs.maxSize=0\n",
    );
    let head = gitc::refs(&up.repo("P", "r"))
        .get("refs/heads/main")
        .cloned()
        .expect("main");

    // An SSH session takes the one place: upload-pack advertises, then waits for the client.
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} -p {} git@127.0.0.1 \"git-upload-pack '/P/r.git'\"",
            node.git_ssh(),
            node.ssh
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    let mut first = [0u8; 4];
    holder
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("the advertisement starts");

    let url = format!("{}/git-upload-pack", node.http_url("P", "r"));
    let body = pktline_request(&[&format!("want {head}\n")], &["done\n"]);
    let post = || {
        reqwest::blocking::Client::new()
            .post(&url)
            .header("Content-Type", "application/x-git-upload-pack-request")
            .body(body.clone())
            .timeout(Duration::from_secs(30))
            .send()
            .expect("POST")
    };
    // A clone's POST waits the queue timeout, then 503 + Retry-After naming the limit.
    let t = Instant::now();
    let r = post();
    let waited = t.elapsed();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        waited >= Duration::from_secs(2),
        "refused before the queue timeout: {waited:?}"
    );
    let text = r.text().expect("body");
    assert!(text.contains("git processes"), "{text}");
    // The ref advertisement from memory needs no place.
    let r = reqwest::blocking::get(format!(
        "{}/info/refs?service=git-upload-pack",
        node.http_url("P", "r")
    ))
    .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    // Over SSH (protocol v0 runs upload-pack at once): a git error naming the limit.
    let out = gitc::try_run(
        None,
        &[
            "-c",
            "protocol.version=0",
            "ls-remote",
            &node.ssh_url("P", "r"),
        ],
        &[("GIT_SSH_COMMAND", &node.git_ssh())],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("git processes of this node"), "{err}");
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", node.http))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("mirrorfarm_busy_refusals_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mirrorfarm_upload_pack_places{state=\"running\"} 1"),
        "{metrics}"
    );

    // The session ends: the place is free and clones are served again.
    drop(holder.stdin.take());
    let _ = holder.kill();
    let _ = holder.wait();
    wait_for("a POST to be served again", LIMIT, || {
        (post().status().as_u16() == 200).then_some(())
    });
    clone_works(&node);
}

#[test]
fn request_bodies_are_bounded_in_size_and_time() {
    use std::io::Write;
    let (_up, node) = serving_p_r(
        "mirror.serve.maxRequestSize=64k\n\
         server.bodyTimeout=2\n",
    );
    let url = format!("{}/git-upload-pack", node.http_url("P", "r"));
    let post = |body: Vec<u8>, gzip: bool| {
        let mut r = reqwest::blocking::Client::new()
            .post(&url)
            .header("Content-Type", "application/x-git-upload-pack-request")
            .timeout(Duration::from_secs(30))
            .body(body);
        if gzip {
            r = r.header("Content-Encoding", "gzip");
        }
        r.send().expect("POST")
    };
    // Over the limit: 413, not a request cut short and handed to git.
    let haves: Vec<String> = (0..2000).map(|i| format!("have {i:040x}\n")).collect();
    let haves: Vec<&str> = haves.iter().map(String::as_str).collect();
    let big = pktline_request(&haves, &["done\n"]);
    assert!(big.len() > 64 * 1024);
    let r = post(big.clone(), false);
    assert_eq!(r.status().as_u16(), 413);
    assert!(r
        .text()
        .unwrap_or_default()
        .contains("mirror.serve.maxRequestSize"));
    // A small gzip body that inflates past it: 413 too.
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&big).expect("gzip");
    let small = z.finish().expect("gzip");
    assert!(small.len() < 64 * 1024, "{}", small.len());
    assert_eq!(post(small, true).status().as_u16(), 413);

    // A body that stops coming: 408 once server.bodyTimeout passed.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.http)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let t = Instant::now();
    write!(
        s,
        "POST /scm/P/r.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-git-upload-pack-request\r\nContent-Length: 1000\r\n\r\n0032want "
    )
    .expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(t.elapsed() >= Duration::from_secs(2));

    // Within the limits, clones are served.
    clone_works(&node);
}

#[test]
fn a_mirror_fetch_with_30000_wants_works_over_ssh_v2_as_over_http() {
    let up = Upstream::new();
    let path = up.create("P", "many", &Shape::small());
    // 30 000 root commits, each on a branch of its own: a v2 fetch of all of them asks for 30 000
    // objects, a request of about 1.5 MB (more than SSH accepted before).
    let mut stream = String::new();
    for i in 0..30_000 {
        let msg = format!("c{i}\n");
        stream.push_str(&format!(
            "commit refs/heads/b{i}\ncommitter T <t@example.com> 1700000000 +0000\ndata {}\n{msg}\n",
            msg.len()
        ));
    }
    let mut fi = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    std::io::Write::write_all(fi.stdin.as_mut().expect("stdin"), stream.as_bytes()).expect("feed");
    drop(fi.stdin.take());
    assert!(fi.wait().expect("fast-import").success());
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=P/many\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", Duration::from_secs(180));
    let work = tempfile::tempdir().expect("tempdir");
    for (name, url, env) in [
        ("http", node.http_url("P", "many"), vec![]),
        (
            "ssh",
            node.ssh_url("P", "many"),
            vec![("GIT_SSH_COMMAND", node.git_ssh())],
        ),
    ] {
        let dest = work.path().join(name);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        gitc::run(
            None,
            &[
                "-c",
                "protocol.version=2",
                "clone",
                "-q",
                "--mirror",
                &url,
                dest.to_str().expect("utf8"),
            ],
            &env,
        );
        let refs = gitc::refs(&dest);
        assert!(refs.len() > 30_000, "{name}: {} refs", refs.len());
    }
}
