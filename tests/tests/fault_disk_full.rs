//! A standalone node's disk fills up (its home on a size-limited tmpfs): the sync fails with a clear
//! status, the last complete state is still served (every advertised object present, clones
//! work), and once space returns the node catches up by itself. Needs root (mount; CI runs as
//! root).

use std::time::Duration;

use mirrorfarm_tests::farm::advertised_objects_present;
use mirrorfarm_tests::node::{Node, Placement};
use mirrorfarm_tests::tmpfs::Tmpfs;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn a_full_disk_fails_syncs_clearly_keeps_serving_and_recovers() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let fs = Tmpfs::mount(64);
    let mut node = Node::start_placed(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\nplugin.mirroring.synchronization.interval=10\n",
        &Placement {
            home_in: Some(fs.path.clone()),
            ..Default::default()
        },
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let served = gitc::ls_remote(&node.http_url("P", "r"), &[]);
    let generation = node.repo_status("P", "r").expect("repo")["generation"].clone();

    let filler = fs.fill();
    // The upstream moves on by more than would fit.
    up.grow("P", "r", 12, 512 * 1024, 99);
    assert_eq!(node.trigger(Some(("P", "r"))), 202);
    let failed = wait_or_explain(
        "the sync to fail for want of space",
        LIMIT,
        || {
            let r = node.repo_status("P", "r")?;
            (r["lastResult"] == "FAILED").then_some(r)
        },
        || format!("{}", node.status()),
    );
    let message = failed["lastMessage"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.to_ascii_lowercase().contains("space"),
        "the status should say why: {failed}"
    );
    // Still served: the last complete state, whole.
    assert_eq!(failed["generation"], generation);
    assert_eq!(gitc::ls_remote(&node.http_url("P", "r"), &[]), served);
    advertised_objects_present(&node).expect("every advertised object present");
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("r");
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            &node.http_url("P", "r"),
            dest.to_str().expect("utf8"),
        ],
        &[],
    );

    // Space returns: the node catches up by itself (its retry), no trigger.
    drop(filler);
    let upstream = gitc::refs(&up.repo("P", "r"));
    wait_or_explain(
        "the node to catch up once space returned",
        LIMIT,
        || {
            let now = gitc::ls_remote(&node.http_url("P", "r"), &[]);
            (now.get("refs/heads/main") == upstream.get("refs/heads/main")).then_some(())
        },
        || format!("{}", node.status()),
    );
    advertised_objects_present(&node).expect("every advertised object present");
    assert_eq!(node.stop(), Some(0));
}

/// Log output that cannot be written (stderr on `/dev/full`, as under a full disk) is dropped:
/// the node starts, syncs and serves every clone whole. (Reporting a failed log write used to
/// `eprintln!`, which panics when stderr cannot be written, in the task that logged: a farm
/// member with a full disk cut a client's response off at its "served" line.)
#[test]
fn log_lines_that_cannot_be_written_are_dropped_and_clones_stay_whole() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let node = Node::start_placed(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\n",
        &Placement {
            stderr: Some("/dev/full".into()),
            ..Default::default()
        },
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let tmp = tempfile::tempdir().expect("tempdir");
    for i in 0..5 {
        let dest = tmp.path().join(format!("c{i}"));
        let url = node.http_url("P", "r");
        gitc::run(
            None,
            &["clone", "-q", "--bare", &url, dest.to_str().expect("utf8")],
            &[],
        );
        gitc::run(
            Some(&dest),
            &["fsck", "--no-dangling", "--no-progress"],
            &[],
        );
    }
    // The lines were logged (to the file; stderr refused each one).
    let log = std::fs::read_to_string(node.home().join("logs/node.log")).expect("node.log");
    assert!(
        log.matches("served repo=P/r").count() >= 5,
        "each clone logged as served:\n{log}"
    );
}
