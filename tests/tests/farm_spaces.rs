//! A farm whose node homes and binary path contain spaces fetches each change from the upstream
//! once, and from the leader otherwise, like any other (git's `ext::` transport, used before the
//! farm channel spoke HTTPS, could not take such paths: every member fetched from the upstream).
//! The upstream's host key is pinned in the node's own known_hosts (ssh splits `-o` values at
//! spaces: unquoted, the key went to `/tmp/mf`, shared by every such node).

use std::time::Duration;

use mirrorfarm_tests::bin;
use mirrorfarm_tests::farm::{sessions_for_one_change_per_node, ssh_farm_placed};
use mirrorfarm_tests::node::Placement;

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn a_farm_with_spaces_in_its_paths_fetches_each_change_once() {
    let dir = tempfile::Builder::new()
        .prefix("mf bin ")
        .tempdir()
        .expect("tempdir");
    let exe = dir.path().join("mirror farm");
    if std::fs::hard_link(bin(), &exe).is_err() {
        std::fs::copy(bin(), &exe).expect("copy the binary");
    }
    let placement = Placement {
        home_prefix: Some("mf node home ".into()),
        bin: Some(exe),
        ..Default::default()
    };
    let (up, nodes) = ssh_farm_placed(3, LIMIT, "", &placement);
    for n in &nodes {
        assert!(
            n.home().to_string_lossy().contains(' '),
            "{}",
            n.home().display()
        );
    }
    let pinned = std::fs::read_to_string(nodes[0].home().join("ssh/known_hosts"))
        .expect("the first member's known_hosts");
    assert!(
        pinned.contains(&format!("[127.0.0.1]:{}", up.sshd_port())),
        "the upstream's key is not pinned in the node's home: {pinned:?}"
    );
    let fetched = sessions_for_one_change_per_node(&up, &nodes, LIMIT);
    assert_eq!(fetched, 3, "3 changes cost the upstream {fetched} fetches");
}
