//! A farm whose node homes and binary path contain spaces fetches each change from the upstream
//! once, and from the leader otherwise, like any other (git's `ext::` transport, used before the
//! farm channel spoke HTTPS, could not take such paths: every member fetched from the upstream).

use std::time::Duration;

use mirrorfarm_tests::farm::{main_of, ssh_farm_placed};
use mirrorfarm_tests::node::Placement;
use mirrorfarm_tests::{bin, wait_for};

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
    };
    let (up, nodes) = ssh_farm_placed(3, LIMIT, "", &placement);
    for n in &nodes {
        assert!(
            n.home().to_string_lossy().contains(' '),
            "{}",
            n.home().display()
        );
    }
    // Sessions counted from here on, once no start-up sync runs: each change once, whichever
    // node is triggered.
    for n in &nodes {
        wait_for("start-up syncs to end", LIMIT, || {
            (n.repo_status("P", "r")?["syncing"] == false).then_some(())
        });
    }
    let before = up.accepted_sessions();
    for (i, n) in nodes.iter().enumerate() {
        let new = up.commit("P", "r", "main", &format!("change {i}"));
        assert_eq!(n.trigger(Some(("P", "r"))), 202);
        for m in &nodes {
            wait_for("the change on every node", LIMIT, || {
                (main_of(m).as_deref() == Some(new.as_str())).then_some(())
            });
        }
    }
    // Late upstream sessions (a follower falling back to the upstream) would show up here.
    std::thread::sleep(Duration::from_secs(2));
    let fetched = up.accepted_sessions() - before;
    assert_eq!(
        fetched, 3,
        "3 changes cost the upstream {fetched} SSH sessions"
    );
}
