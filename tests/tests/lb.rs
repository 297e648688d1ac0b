//! The load balancer, with real nodes, real TLS (verified certificates) and the real git client:
//! HTTPS and SSH clones, cookie stickiness and fail-over, dead backends, refusals, slow clients,
//! redirect, certificate reload and graceful stop.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use mirrorfarm_tests::lb::{backends, Lb};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(60);
const NODE_PROPS: &str =
    "mirror.repos=PROJ/repo\nmirror.access=anonymous\nplugin.ssh.proxyProtocol=true\n";

fn farm(n: usize, lb_extra: &str) -> (Upstream, Vec<Node>, Lb) {
    let up = Upstream::new();
    up.create(
        "PROJ",
        "repo",
        &Shape {
            commits: 40,
            blob_bytes: 4000,
            branches: 3,
            tags: 2,
        },
    );
    let nodes: Vec<Node> = (0..n)
        .map(|_| Node::start(&up.file_url(), NODE_PROPS))
        .collect();
    for node in &nodes {
        node.wait_state("SYNCHRONIZED", LIMIT);
    }
    let extra = format!("lb.ssh.proxyProtocol=true\n{lb_extra}");
    let lb = Lb::start(&backends(&nodes.iter().collect::<Vec<_>>()), &extra);
    lb.wait_healthy(n as u64, LIMIT);
    (up, nodes, lb)
}

fn envs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

fn node_id_via_lb(lb: &Lb, jar: &std::path::Path) -> String {
    let jar = jar.to_str().expect("utf8");
    let out = lb.curl("/status", &["-b", jar, "-c", jar]);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    v["nodeId"].as_str().expect("nodeId").to_owned()
}

#[test]
fn https_and_ssh_clones_through_the_lb() {
    let (up, nodes, lb) = farm(2, "");
    let want = gitc::refs(&up.repo("PROJ", "repo"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let env = lb.git_env();
    for (name, version) in [("h1", "HTTP/1.1"), ("h2", "HTTP/2")] {
        let dest = tmp.path().join(name);
        let cfg = format!("http.version={version}");
        gitc::run(
            None,
            &[
                "-c",
                &cfg,
                "clone",
                "-q",
                "--mirror",
                &lb.https_url("PROJ", "repo"),
                dest.to_str().expect("utf8"),
            ],
            &envs(&env),
        );
        assert_eq!(gitc::refs(&dest), want, "{name}");
        gitc::run(Some(&dest), &["fsck", "--no-dangling"], &[]);
    }
    // The certificate really is verified: without the CA, git refuses.
    let out = gitc::try_run(None, &["ls-remote", &lb.https_url("PROJ", "repo")], &[]);
    assert!(
        !out.status.success(),
        "an unverified certificate was accepted"
    );

    let ssh = nodes[0].git_ssh();
    let dest = tmp.path().join("ssh");
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            "--mirror",
            &lb.ssh_url("PROJ", "repo"),
            dest.to_str().expect("utf8"),
        ],
        &[("GIT_SSH_COMMAND", &ssh)],
    );
    assert_eq!(gitc::refs(&dest), want);
    // Nodes expecting a PROXY header refuse direct connections without one.
    let out = gitc::try_run(
        None,
        &["ls-remote", &nodes[0].ssh_url("PROJ", "repo")],
        &[("GIT_SSH_COMMAND", &ssh)],
    );
    assert!(
        !out.status.success(),
        "node accepted SSH without a PROXY header"
    );
    assert!(nodes.iter().any(|n| n
        .log()
        .contains("refusing SSH connection without a valid PROXY header")));

    // What the LB keeps from the world, and requests for other hosts.
    let out = lb.curl(
        "/rest/mirroring/latest/sync",
        &["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    let out = lb.curl(
        "/status",
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: evil.example.com",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "421");
    // The nodes saw X-Forwarded-For … and the admin listener is only on 127.0.0.1.
    let admin = lb.admin_status();
    assert_eq!(admin["backends"].as_array().map(Vec::len), Some(2));
    assert!(admin["certificate"]["sha256"]
        .as_str()
        .is_some_and(|s| s.len() == 95));
}

#[test]
fn the_cookie_keeps_a_client_on_one_node_and_fails_over() {
    let (_up, mut nodes, lb) = farm(3, "");
    let tmp = tempfile::tempdir().expect("tempdir");
    let jar = tmp.path().join("cookies");
    let first = node_id_via_lb(&lb, &jar);
    for _ in 0..20 {
        assert_eq!(
            node_id_via_lb(&lb, &jar),
            first,
            "the cookie did not keep the client on one node"
        );
    }
    // Without the cookie, requests spread over the nodes.
    let spread: BTreeSet<String> = (0..12)
        .map(|i| node_id_via_lb(&lb, &tmp.path().join(format!("fresh{i}"))))
        .collect();
    assert!(
        spread.len() >= 2,
        "requests without a cookie all went to one node"
    );

    // Kill the sticky node: the same client goes elsewhere at once, and sticks there.
    let idx = nodes
        .iter()
        .position(|n| n.status()["nodeId"] == first.as_str())
        .expect("sticky node");
    nodes[idx].kill9();
    let second = node_id_via_lb(&lb, &jar);
    assert_ne!(second, first);
    for _ in 0..5 {
        assert_eq!(
            node_id_via_lb(&lb, &jar),
            second,
            "not sticky after fail-over"
        );
    }
    // New clones work straight away.
    lb.clone_repo("PROJ", "repo", &tmp.path().join("clone"), &[]);
    wait_for("the dead node out of rotation", LIMIT, || {
        (lb.admin_status()["healthyBackends"] == 2).then_some(())
    });
    // It comes back into rotation when it returns.
    nodes[idx].spawn();
    lb.wait_healthy(3, LIMIT);
}

#[test]
fn ssh_goes_to_a_live_node_when_one_is_dead() {
    let (_up, mut nodes, lb) = farm(2, "");
    let ssh = nodes[1].git_ssh();
    nodes[0].kill9();
    for _ in 0..4 {
        let out = gitc::try_run(
            None,
            &["ls-remote", &lb.ssh_url("PROJ", "repo")],
            &[("GIT_SSH_COMMAND", &ssh)],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn slow_clients_do_not_block_others() {
    let (_up, _nodes, lb) = farm(1, "");
    let mut idle = Vec::new();
    for i in 0..150 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", lb.https)).expect("connect");
        if i % 2 == 0 {
            // Half send the start of a TLS ClientHello and stall.
            let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
        }
        idle.push(s);
    }
    for _ in 0..50 {
        idle.push(std::net::TcpStream::connect(("127.0.0.1", lb.ssh)).expect("connect ssh"));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    for i in 0..3 {
        lb.clone_repo("PROJ", "repo", &tmp.path().join(format!("c{i}")), &[]);
    }
    drop(idle);
}

#[test]
fn bad_certificate_settings_exit_64() {
    let home = tempfile::tempdir().expect("tempdir");
    let props = "lb.hostname=localhost\nlb.backends=127.0.0.1:1:2\nlb.tls.certificate=/nonexistent/cert.pem\nlb.tls.key=/nonexistent/key.pem\n";
    std::fs::write(home.path().join("mirrorfarm-lb.properties"), props).expect("write");
    let out = Command::new(mirrorfarm_tests::bin())
        .args(["lb", "--home"])
        .arg(home.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mirrorfarm-lb.properties:3: lb.tls.certificate:"),
        "{err}"
    );
    std::fs::write(
        home.path().join("mirrorfarm-lb.properties"),
        "lb.hostname=localhost\nlb.backend=127.0.0.1:1:2\n",
    )
    .expect("write");
    let out = Command::new(mirrorfarm_tests::bin())
        .args(["config", "check", "--home"])
        .arg(home.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2: lb.backend: unknown key"));
}

fn openssl_cert(dir: &std::path::Path) {
    cert_for(dir, "localhost", 2, None);
}

#[test]
fn redirect_certificate_reload_and_graceful_stop() {
    let up = Upstream::new();
    up.create("PROJ", "repo", &Shape::small());
    let node = Node::start(&up.file_url(), NODE_PROPS);
    node.wait_state("SYNCHRONIZED", LIMIT);
    let certs = tempfile::tempdir().expect("tempdir");
    openssl_cert(certs.path());
    let http = mirrorfarm_tests::free_port();
    let extra = format!(
        "lb.ssh.proxyProtocol=true\nlb.http.port={http}\nlb.tls.certificate={}\nlb.tls.key={}\n",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    );
    let mut lb = Lb::start(&backends(&[&node]), &extra);
    lb.wait_healthy(1, LIMIT);
    let curl = |ca: &std::path::Path| {
        lb.curl_with_ca(ca, "/status", &["-o", "/dev/null", "-w", "%{http_code}"])
    };
    let old_ca = certs.path().join("old-ca.pem");
    std::fs::copy(certs.path().join("cert.pem"), &old_ca).expect("copy");
    assert_eq!(String::from_utf8_lossy(&curl(&old_ca).stdout), "200");
    // Plain HTTP redirects to HTTPS.
    let resp = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!(
            "http://127.0.0.1:{http}/scm/PROJ/repo.git/info/refs?service=git-upload-pack"
        ))
        .send()
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 301);
    let loc = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(
        loc,
        format!(
            "https://localhost:{}/scm/PROJ/repo.git/info/refs?service=git-upload-pack",
            lb.https
        )
    );
    // A new certificate is picked up on SIGHUP without a restart.
    let before = lb.admin_status()["certificate"]["sha256"].clone();
    openssl_cert(certs.path());
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(lb.pid().expect("pid").to_string())
        .status();
    wait_for("the new certificate", LIMIT, || {
        (lb.admin_status()["certificate"]["sha256"] != before).then_some(())
    });
    assert_eq!(
        String::from_utf8_lossy(&curl(&certs.path().join("cert.pem")).stdout),
        "200"
    );
    assert_ne!(
        String::from_utf8_lossy(&curl(&old_ca).stdout),
        "200",
        "old certificate still served"
    );
    // SIGTERM: stops accepting, drains, exits 0.
    assert_eq!(lb.stop(), Some(0));
}

/// A certificate by openssl for `name`, valid `days` from now, or from `start` (a date faketime
/// reads) when given.
fn cert_for(dir: &std::path::Path, name: &str, days: u32, start: Option<&str>) {
    let mut cmd = match start {
        Some(at) => {
            let mut c = Command::new("faketime");
            c.arg(at).arg("openssl");
            c
        }
        None => Command::new("openssl"),
    };
    let ok = cmd
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            &days.to_string(),
            "-subj",
            &format!("/CN={name}"),
        ])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl req failed");
}

/// Runs `mirrorfarm lb` on `home` expecting it to stop at once; its exit code and stderr.
fn lb_exit(home: &std::path::Path, certs: &std::path::Path) -> (Option<i32>, String) {
    let props = format!(
        "lb.hostname=localhost\nlb.backends=127.0.0.1:1:2\nlb.tls.certificate={}\nlb.tls.key={}\n",
        certs.join("cert.pem").display(),
        certs.join("key.pem").display()
    );
    std::fs::write(home.join("mirrorfarm-lb.properties"), props).expect("write");
    let out = Command::new(mirrorfarm_tests::bin())
        .args(["lb", "--home"])
        .arg(home)
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn certificates_the_lb_may_not_serve_stop_it_and_expiry_is_warned() {
    let home = tempfile::tempdir().expect("home");
    let certs = tempfile::tempdir().expect("certs");
    cert_for(certs.path(), "localhost", 2, Some("2020-01-01 00:00:00"));
    let (code, err) = lb_exit(home.path(), certs.path());
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("lb.tls.certificate") && err.contains("expired"),
        "{err}"
    );
    assert!(
        err.contains(&certs.path().join("cert.pem").display().to_string()),
        "names the file: {err}"
    );
    cert_for(certs.path(), "other.example.com", 90, None);
    let (code, err) = lb_exit(home.path(), certs.path());
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("not valid for lb.hostname localhost"), "{err}");

    // Ten days left: served, with a warning and the metric.
    cert_for(certs.path(), "localhost", 10, None);
    let extra = format!(
        "lb.tls.certificate={}\nlb.tls.key={}\n",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    );
    let lb = Lb::start("127.0.0.1:1:2", &extra);
    wait_for("the LB's admin listener", LIMIT, || {
        reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", lb.admin))
            .and_then(|r| r.text())
            .ok()
    });
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", lb.admin))
        .and_then(|r| r.text())
        .expect("metrics");
    let left: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mirrorfarm_lb_certificate_expiry_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no expiry metric in {metrics}"));
    assert!((9.0 * 86_400.0..=10.0 * 86_400.0).contains(&left), "{left}");
    assert!(lb.log().contains("expires within 30 days"), "{}", lb.log());
    // A certificate for another name is not swapped in on reload.
    cert_for(certs.path(), "other.example.com", 90, None);
    wait_for("the refused reload logged", LIMIT, || {
        lb.log()
            .contains("not valid for lb.hostname localhost")
            .then_some(())
    });
    assert!(lb.log().contains("still serving the previous one"));
}
