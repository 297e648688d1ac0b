//! `mirrorfarm farm-connect`, git's transport between members, exits when the member it talks to
//! goes away, even while git still holds its stdin open (git waits for it to exit first: a
//! transport that waited for stdin too hung the follower's sync until the sync timeout).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mirrorfarm_tests::farm::file_farm;
use mirrorfarm_tests::{bin, wait_for};

const LIMIT: Duration = Duration::from_secs(90);

/// Kills the transport if the test fails while it still runs.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_member_channel_ends_when_the_member_dies_with_stdin_still_open() {
    let (_up, mut nodes, p0) = file_farm(2, LIMIT);
    let leader_id = nodes[0].status()["nodeId"]
        .as_str()
        .expect("nodeId")
        .to_owned();
    let child = Command::new(bin())
        .arg("farm-connect")
        .arg("--home")
        .arg(nodes[1].home())
        .args(["--peer", &format!("127.0.0.1:{p0}"), "--node", &leader_id])
        .args(["P/r", "git-upload-pack"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start farm-connect");
    let mut child = Reap(child);
    // Hold stdin open, as git does while it waits for the advertisement to end.
    let _stdin = child.0.stdin.take().expect("stdin");
    let mut out = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut first = true;
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            if first {
                let _ = tx.send(buf[..4].to_vec());
                first = false;
            }
        }
    });
    let head = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the member's upload-pack advertisement");
    assert!(
        head.iter().all(u8::is_ascii_hexdigit),
        "not a pkt-line: {head:?}"
    );

    nodes[0].kill9();
    wait_for("farm-connect to exit", Duration::from_secs(20), || {
        child.0.try_wait().expect("try_wait")
    });
}
