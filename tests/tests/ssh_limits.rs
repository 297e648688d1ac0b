//! SSH limits: at most `plugin.ssh.maxConnections` connections at once (one more is told so and
//! closed), and a connection that has not sent a command within `plugin.ssh.firstCommandTimeout`
//! is closed, freeing its place.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::time::Duration;

use mirrorfarm_tests::gitc;
use mirrorfarm_tests::node::serving_p_r;

const LIMIT: Duration = Duration::from_secs(60);

/// Connects and reads the server's first line (its version string, or why it will not talk).
fn connect(port: u16) -> (TcpStream, String) {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut line = String::new();
    BufReader::new(s.try_clone().expect("clone"))
        .read_line(&mut line)
        .expect("first line");
    (s, line)
}

/// Reads until the server closes (bounded by the read timeout); true when it did.
fn closed_by_server(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn connections_are_bounded_and_silent_ones_cut() {
    let (_up, node) =
        serving_p_r("plugin.ssh.maxConnections=2\nplugin.ssh.firstCommandTimeout=3\n");
    let (a, first) = connect(node.ssh);
    let (b, second) = connect(node.ssh);
    assert!(
        first.starts_with("SSH-2.0-mirrorfarm") && second.starts_with("SSH-2.0-"),
        "{first}{second}"
    );
    // A third is told why and closed.
    let (c, refused) = connect(node.ssh);
    assert!(refused.contains("too many SSH connections"), "{refused:?}");
    assert!(closed_by_server(c));
    // The two silent ones are closed by the first-command deadline (3 s; the read timeout is 20 s).
    let started = std::time::Instant::now();
    assert!(
        closed_by_server(a) && closed_by_server(b),
        "silent connections were not closed"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // Their places are free again: a real client is served.
    let refs = gitc::ls_remote(
        &node.ssh_url("P", "r"),
        &[("GIT_SSH_COMMAND", &node.git_ssh())],
    );
    assert!(refs.contains_key("refs/heads/main"), "{refs:?}");
}

#[test]
fn the_lb_bounds_ssh_connections_per_worker() {
    use mirrorfarm_tests::lb::{backends, Lb};
    let (_up, node) = serving_p_r("");
    let lb = Lb::start(
        &backends(&[&node]),
        "lb.threads=1\nlb.ssh.maxConnections=1\n",
    );
    lb.wait_healthy(1, LIMIT);
    let port = lb
        .ssh_url("P", "r")
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("LB SSH port");
    // One connection passes through to the node.
    let (a, first) = connect(port);
    assert!(first.starts_with("SSH-2.0-mirrorfarm"), "{first:?}");
    // A second is told why and closed by the LB.
    let (b, refused) = connect(port);
    assert!(
        refused.contains("too many SSH connections through this load balancer"),
        "{refused:?}"
    );
    assert!(closed_by_server(b));
    // The first ends: its place is free again, and a clone through the LB works.
    drop(a);
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("r");
    mirrorfarm_tests::wait_for("a clone through the LB over SSH", LIMIT, || {
        let _ = std::fs::remove_dir_all(&dest);
        gitc::try_run(
            None,
            &[
                "clone",
                "-q",
                &lb.ssh_url("P", "r"),
                dest.to_str().expect("utf8"),
            ],
            &[("GIT_SSH_COMMAND", &node.git_ssh())],
        )
        .status
        .success()
        .then_some(())
    });
}
