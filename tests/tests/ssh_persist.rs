//! `mirror.sync.sshPersist` (by default, 60 s): fetches from an ssh:// upstream share one OpenSSH
//! connection (one authentication, one session per fetch), and the node closes it when it stops.

use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn fetches_share_one_connection_and_it_is_closed_at_stop() {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let mut node = Node::start(&up.ssh_url(), "mirror.repos=P/r\nmirror.access=anonymous\n");
    let s = node.wait_state("AWAITING_AUTHORIZATION", LIMIT);
    up.authorize(s["publicKey"].as_str().expect("publicKey"));
    let auth_before = up.accepted_sessions();
    assert_eq!(node.trigger(Some(("P", "r"))), 202);
    node.wait_state("SYNCHRONIZED", LIMIT);
    for i in 0..3 {
        let new = up.commit("P", "r", "main", &format!("change {i}"));
        assert_eq!(node.trigger(Some(("P", "r"))), 202);
        wait_for("the change mirrored", LIMIT, || {
            let refs = gitc::ls_remote(&node.http_url("P", "r"), &[]);
            (refs.get("refs/heads/main") == Some(&new)).then_some(())
        });
    }
    assert_eq!(
        up.accepted_sessions() - auth_before,
        1,
        "4 fetches should authenticate once"
    );
    assert!(up.command_sessions() >= 4);
    assert_eq!(node.shared_ssh_connections(), 1, "one shared connection");
    assert_eq!(node.stop(), Some(0));
    wait_for("the shared connection closed", LIMIT, || {
        (node.shared_ssh_connections() == 0).then_some(())
    });
}
