//! A repository's leader killed in the middle of fetching a large change: another member takes the
//! repository over, fetches the change from the upstream itself, and the surviving members flip
//! to it together; the killed node, restarted, rejoins and catches up.

use std::time::Duration;

use mirrorfarm_tests::farm::{advertised_objects_present, main_of, member};
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_leader_killed_mid_sync_is_taken_over() {
    let up = Upstream::new();
    up.create(
        "P",
        "r",
        &Shape {
            commits: 20,
            blob_bytes: 1 << 16,
            branches: 1,
            tags: 1,
        },
    );
    let p0 = free_udp_port();
    let mut nodes = vec![member(&up.file_url(), p0, None)];
    for _ in 0..2 {
        nodes.push(member(&up.file_url(), free_udp_port(), Some(p0)));
    }
    for n in &nodes {
        n.wait_state("SYNCHRONIZED", LIMIT);
        wait_for("3 members", LIMIT, || {
            (n.status()["memberCount"] == 3).then_some(())
        });
    }
    let leader_id = nodes[0].repo_status("P", "r").expect("P/r")["leader"]
        .as_str()
        .expect("a leader on /status")
        .to_owned();
    let li = nodes
        .iter()
        .position(|n| n.status()["nodeId"] == leader_id.as_str())
        .expect("the leader is one of the nodes");
    let other = (li + 1) % 3;

    // A large change (~100 MB of new objects); the trigger goes to a follower, which passes it on.
    up.grow("P", "r", 100, 1 << 20, 11);
    let new = gitc::refs(&up.repo("P", "r"))["refs/heads/main"].clone();
    assert_eq!(nodes[other].trigger(Some(("P", "r"))), 202);
    wait_for("the leader fetching", LIMIT, || {
        let r = nodes[li].repo_status("P", "r")?;
        (r["syncing"] == true).then_some(())
    });
    std::thread::sleep(Duration::from_millis(150));
    nodes[li].kill9();
    let on_killed = gitc::try_run(
        Some(&nodes[li].mirror_path("P", "r")),
        &["rev-parse", "refs/heads/main"],
        &[],
    );
    assert_ne!(
        String::from_utf8_lossy(&on_killed.stdout).trim(),
        new,
        "the kill landed after the leader had finished; nothing was tested"
    );

    let survivors: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    for &i in &survivors {
        wait_for("the change on a surviving member", LIMIT, || {
            (main_of(&nodes[i]).as_deref() == Some(new.as_str())).then_some(())
        });
    }
    let states: Vec<(String, u64)> = survivors
        .iter()
        .map(|&i| {
            let r = nodes[i].repo_status("P", "r").expect("P/r");
            assert_ne!(
                r["leader"],
                leader_id.as_str(),
                "the dead leader still leads"
            );
            (
                r["refsHash"].as_str().unwrap_or_default().to_owned(),
                r["generation"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(states[0], states[1], "the survivors serve different states");
    for &i in &survivors {
        advertised_objects_present(&nodes[i]).expect("advertised objects present");
    }

    // The killed node comes back, rejoins and catches up with the farm's generation.
    nodes[li].spawn();
    wait_for("the killed node catching up", LIMIT, || {
        let r = nodes[li].repo_status("P", "r")?;
        (r["refsHash"] == states[0].0.as_str() && r["generation"] == states[0].1).then_some(())
    });
    assert_eq!(main_of(&nodes[li]).as_deref(), Some(new.as_str()));
    advertised_objects_present(&nodes[li]).expect("advertised objects present");
}
