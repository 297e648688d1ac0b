//! One upstream fetch per change: in a farm of three nodes over an OpenSSH upstream, only each
//! repository's leader fetches from the upstream; the others take the new state from the leader
//! over the farm's authenticated channel. A trigger sent to any node works. Members tell each
//! other what they staged over that channel (not only through gossip). The members' environment
//! and git's global configuration name an HTTP proxy that answers nothing (a member's fetch from
//! another reaches it directly), and their environment a `GIT_DIR` (no git of a node's may take it).

use std::time::Duration;

use mirrorfarm_tests::farm::{sessions_for_one_change_per_node, ssh_farm_placed};
use mirrorfarm_tests::node::Placement;
use mirrorfarm_tests::{wait_for, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn a_farm_fetches_each_change_from_the_upstream_once() {
    // Port 9 (discard): nothing listens there; a fetch through this proxy fails.
    let proxy = "http://127.0.0.1:9".to_owned();
    let global = tempfile::tempdir().expect("tempdir");
    let gitconfig = global.path().join("gitconfig");
    std::fs::write(&gitconfig, format!("[http]\n\tproxy = {proxy}\n")).expect("write gitconfig");
    let placement = Placement {
        env: vec![
            ("https_proxy".into(), proxy.clone()),
            ("HTTPS_PROXY".into(), proxy),
            ("GIT_CONFIG_GLOBAL".into(), gitconfig.display().to_string()),
            ("GIT_DIR".into(), "/nonexistent".into()),
        ],
        ..Placement::default()
    };
    let (up, nodes) = ssh_farm_placed(3, LIMIT, "", &placement);
    let fetched = sessions_for_one_change_per_node(&up, &nodes, LIMIT);
    assert_eq!(fetched, 3, "3 changes cost the upstream {fetched} fetches");
    // Every member shows every member serving the same ref state (generation) of the repository.
    for n in &nodes {
        let s = wait_for("one ref state on every member", LIMIT, || {
            let s = n.status();
            let states: std::collections::BTreeSet<String> = s["members"]
                .as_array()?
                .iter()
                .filter_map(|m| {
                    let st = &m["repoStates"]["P/r"];
                    Some(format!("{} {}", st["generation"], st["refsHash"].as_str()?))
                })
                .collect();
            (states.len() == 1 && s["members"].as_array()?.len() == 3).then_some(s)
        });
        let st = &s["members"][0]["repoStates"]["P/r"];
        assert_eq!(st["refsHash"], s["repos"][0]["refsHash"]);
        assert_eq!(st["generation"], s["repos"][0]["generation"]);
    }
    // The followers' fetches of each staged state listed its refs from the leader's memory:
    // 3 changes, 2 followers each (a fetch after the leader flipped would go to git).
    let metrics = |n: &mirrorfarm_tests::node::Node| {
        reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", n.http))
            .and_then(|r| r.text())
            .unwrap_or_default()
    };
    let listed = |source: &str| -> f64 {
        let key = format!("mirrorfarm_advertisements_total{{source=\"{source}\"}} ");
        nodes
            .iter()
            .filter_map(|n| {
                metrics(n)
                    .lines()
                    .find_map(|l| l.strip_prefix(&key).map(str::to_owned))
            })
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum()
    };
    let (memory, git) = (listed("farm_memory"), listed("farm_git"));
    assert!(
        memory >= 6.0,
        "followers' ls-refs from the leader's memory: {memory}, from git: {git}"
    );
    // Each staged the 3 changes and told the 2 others each time (a word is counted when its
    // answer comes, which may be after the flip).
    for n in &nodes {
        let count = |m: &str, result: &str| -> f64 {
            let key = format!("mirrorfarm_farm_staged_words_total{{result=\"{result}\"}} ");
            m.lines()
                .find_map(|l| l.strip_prefix(&key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let metrics = || {
            reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", n.http))
                .and_then(|r| r.text())
                .unwrap_or_default()
        };
        wait_or_explain(
            "members' words about their staged states",
            LIMIT,
            || {
                let m = metrics();
                (count(&m, "sent") >= 6.0 && count(&m, "received") >= 6.0).then_some(())
            },
            || {
                let m = metrics();
                m.lines()
                    .filter(|l| l.contains("staged_words"))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        );
    }
}
