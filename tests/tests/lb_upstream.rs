//! The LB's own upstream leg for requests without a body: responses arrive whole (headers and
//! body, through HTTP/1.1 and h2), HEAD gets headers only, and a kept-alive connection to a node
//! that has restarted since is replaced without the client noticing.

use std::time::Duration;

use mirrorfarm_tests::lb::{backends, Lb};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::wait_for;

const LIMIT: Duration = Duration::from_secs(60);
const PATH: &str = "/scm/P/r.git/info/refs?service=git-upload-pack";

fn body(lb: &Lb, args: &[&str]) -> (String, Vec<u8>) {
    let out = lb.curl(PATH, &[&["-D", "-"][..], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = out.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    (
        String::from_utf8_lossy(&text[..split]).to_ascii_lowercase(),
        text[split + 4..].to_vec(),
    )
}

#[test]
fn bodiless_requests_through_the_lb_survive_a_node_restart() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let mut node = Node::start(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let lb = Lb::start(&backends(&[&node]), "");
    lb.wait_healthy(1, LIMIT);
    let direct = reqwest::blocking::get(format!(
        "{}/info/refs?service=git-upload-pack",
        node.http_url("P", "r")
    ))
    .and_then(|r| r.bytes())
    .expect("direct request");

    for proto in ["--http1.1", "--http2"] {
        let (head, got) = body(&lb, &[proto]);
        assert!(head.contains(" 200"), "{head}");
        assert!(
            head.contains("application/x-git-upload-pack-advertisement"),
            "{head}"
        );
        assert!(head.contains("set-cookie: bitbucketsessionid="), "{head}");
        assert_eq!(got, direct.to_vec(), "{proto}");
    }
    // HEAD, then GET on the same kept-alive client connection: a body sent after the HEAD
    // would be taken for the second response.
    let url = format!("https://localhost:{}{PATH}", lb.https);
    let ca = lb.ca();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(&ca)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}:",
            "--head",
            &url,
            "--next",
            "-sS",
        ])
        .args(["--http1.1", "--cacert"])
        .arg(&ca)
        .args(["-w", ":%{num_connects}", &url])
        .output()
        .expect("run curl");
    let mut expected = b"200:".to_vec();
    expected.extend_from_slice(&direct);
    expected.extend_from_slice(b":0");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&expected),
        "HEAD then GET on one connection"
    );

    // The LB keeps a connection to the node; the node restarts; the next request still works.
    node.stop();
    node.spawn();
    node.wait_state("SYNCHRONIZED", LIMIT);
    wait_for("the node healthy again", LIMIT, || {
        (lb.admin_status()["healthyBackends"] == 1).then_some(())
    });
    for _ in 0..5 {
        let (head, got) = body(&lb, &["--http1.1"]);
        assert!(head.contains(" 200"), "{head}");
        assert_eq!(got, direct.to_vec());
    }
}
