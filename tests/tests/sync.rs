//! Syncing: an OpenSSH upstream that first refuses the farm key, then changes that arrive on
//! trigger (new commits, new and deleted branches), a pinned host key, crash safety under kill -9,
//! and repositories that stop being served when removed.

use std::collections::BTreeMap;
use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn ssh_upstream_authorization_changes_and_host_key_pinning() {
    let mut up = Upstream::new();
    up.create("PROJ", "repo", &Shape::small());
    up.start_sshd();
    let node = Node::start(
        &up.ssh_url(),
        "mirror.repos=PROJ/repo\nmirror.access=anonymous\n",
    );
    // The upstream does not know the farm key yet.
    let s = node.wait_state("AWAITING_AUTHORIZATION", LIMIT);
    let key = s["publicKey"].as_str().expect("publicKey").to_owned();
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
    let page = reqwest::blocking::get(format!("http://127.0.0.1:{}/", node.http))
        .expect("GET /")
        .text()
        .expect("html");
    assert!(
        page.contains(key.split(' ').nth(1).expect("key body")),
        "GET / does not show the key"
    );
    assert!(
        page.contains(s["farmId"].as_str().expect("farmId")),
        "GET / does not show the farm ID"
    );
    assert_eq!(
        node.repo_status("PROJ", "repo").expect("repo")["state"],
        "AWAITING_AUTHORIZATION"
    );

    // Authorized: the node syncs by itself (retry) or on trigger.
    up.authorize(&key);
    assert_eq!(node.trigger(Some(("PROJ", "repo"))), 202);
    node.wait_state("SYNCHRONIZED", LIMIT);
    let upstream_repo = up.repo("PROJ", "repo");
    assert_eq!(
        gitc::ls_remote(&node.http_url("PROJ", "repo"), &[]),
        gitc::refs(&upstream_repo)
    );
    let kh = std::fs::read_to_string(node.home().join("ssh/known_hosts")).expect("known_hosts");
    assert!(kh.contains("[127.0.0.1]:"), "host key not pinned: {kh}");

    // Push upstream, add and delete branches, trigger: the mirror follows.
    let gen = node.repo_status("PROJ", "repo").expect("repo")["generation"]
        .as_u64()
        .expect("gen");
    up.commit("PROJ", "repo", "main", "new work");
    up.commit("PROJ", "repo", "feature/x", "a feature");
    gitc::run(
        Some(&upstream_repo),
        &["update-ref", "-d", "refs/heads/branch-0"],
        &[],
    );
    assert_eq!(node.trigger(Some(("PROJ", "repo"))), 202);
    node.wait_generation("PROJ", "repo", gen + 1, LIMIT);
    let listed = gitc::ls_remote(&node.http_url("PROJ", "repo"), &[]);
    assert_eq!(listed, gitc::refs(&upstream_repo));
    assert!(
        !listed.contains_key("refs/heads/branch-0") && listed.contains_key("refs/heads/feature/x")
    );

    // A trigger for everything (no body) is accepted too; a bad one is refused.
    assert_eq!(node.trigger(None), 202);
    assert_eq!(node.trigger(Some(("PROJ", "nope"))), 404);

    // The upstream goes away: the last state keeps being served; /status says so.
    up.stop_sshd();
    assert_eq!(node.trigger(Some(("PROJ", "repo"))), 202);
    let s = wait_for("upstream reported unreachable", LIMIT, || {
        let s = node.status();
        (s["upstream"]["reachable"] == false).then_some(s)
    });
    assert!(s["upstream"]["lastSuccessfulSync"].is_string(), "{s}");
    assert_eq!(s["repos"][0]["lastResult"], "UNREACHABLE");
    assert_eq!(
        s["state"], "STALE",
        "a node with a complete state keeps serving it, and says it is stale"
    );
    assert!(s["staleSeconds"].is_u64(), "{s}");
    assert_eq!(s["ready"], true, "a stale node stays in the LB's rotation");
    assert_eq!(gitc::ls_remote(&node.http_url("PROJ", "repo"), &[]), listed);
    // The upstream returns: the node catches up.
    up.restart_sshd();
    assert_eq!(node.trigger(Some(("PROJ", "repo"))), 202);
    let s = node.wait_state("SYNCHRONIZED", LIMIT);
    assert!(s["staleSeconds"].is_null(), "{s}");

    // The upstream's host key changes: sync stops with an error naming the host; serving goes on.
    up.change_host_key();
    up.commit("PROJ", "repo", "main", "after key change");
    assert_eq!(node.trigger(Some(("PROJ", "repo"))), 202);
    let s = node.wait_state("ERROR", LIMIT);
    let msg = s["repos"][0]["lastMessage"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("host key") && msg.contains("[127.0.0.1]:"),
        "{msg}"
    );
    assert_eq!(
        gitc::ls_remote(&node.http_url("PROJ", "repo"), &[]),
        listed,
        "must keep serving the last state"
    );
}

fn visible(node: &Node) -> BTreeMap<String, String> {
    gitc::refs(&node.mirror_path("BIG", "repo"))
}

#[test]
fn kill_9_during_sync_leaves_a_consistent_served_state() {
    let up = Upstream::new();
    up.create(
        "BIG",
        "repo",
        &Shape {
            commits: 30,
            blob_bytes: 1 << 20,
            branches: 2,
            tags: 2,
        },
    );
    let mut node = Node::start(
        &up.file_url(),
        "mirror.repos=BIG/repo\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let old = visible(&node);
    assert_eq!(old, gitc::refs(&up.repo("BIG", "repo")));

    // A large change upstream; kill the node at several moments of the sync that follows.
    up.grow("BIG", "repo", 80, 1 << 20, 7);
    let new = gitc::refs(&up.repo("BIG", "repo"));
    assert_ne!(old, new);
    node.kill9();
    for delay_ms in [0u64, 100, 200, 300, 450, 600, 900] {
        node.spawn(); // a start triggers a sync
        std::thread::sleep(Duration::from_millis(delay_ms));
        node.kill9();
        let mirror = node.mirror_path("BIG", "repo");
        let out = gitc::try_run(
            Some(&mirror),
            &["fsck", "--no-dangling", "--no-progress"],
            &[],
        );
        assert!(
            out.status.success(),
            "fsck after kill at {delay_ms} ms: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let refs = visible(&node);
        assert!(
            refs == old || refs == new,
            "half-applied state after kill at {delay_ms} ms: {refs:?}"
        );
    }
    assert!(
        node.log().contains("cleaned up after an interrupted sync"),
        "no kill landed in the middle of a fetch: {}",
        node.log()
    );
    node.spawn();
    wait_for("the new state after restarts", LIMIT, || {
        (visible(&node) == new).then_some(())
    });
    node.wait_state("SYNCHRONIZED", LIMIT);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("c");
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            "--mirror",
            &node.http_url("BIG", "repo"),
            dest.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(gitc::refs(&dest), new);
    gitc::run(
        Some(&dest),
        &["fsck", "--no-dangling", "--no-progress"],
        &[],
    );
}

#[test]
fn triggers_during_a_sync_coalesce_into_one_follow_up() {
    let up = Upstream::new();
    up.create(
        "BIG",
        "repo",
        &Shape {
            commits: 40,
            blob_bytes: 1 << 20,
            branches: 1,
            tags: 1,
        },
    );
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=BIG/repo\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let syncs = |n: &Node| n.log().matches("sync ok repo=BIG/repo").count();
    // The status turns SYNCHRONIZED at the flip, a moment before the sync's log line is written.
    let before = wait_for("the first sync's log line", LIMIT, || {
        let n = syncs(&node);
        (n >= 1).then_some(n)
    });
    up.grow("BIG", "repo", 60, 1 << 20, 3);
    // All ten arrive within milliseconds, well inside the sync of 60 MB they start.
    assert_eq!(node.trigger_together("BIG", "repo", 10), vec![202; 10]);
    let want = gitc::refs(&up.repo("BIG", "repo"));
    wait_for("the change to arrive", LIMIT, || {
        (visible(&node) == want).then_some(())
    });
    node.wait_generation("BIG", "repo", 2, LIMIT);
    std::thread::sleep(Duration::from_millis(500));
    let ran = syncs(&node) - before;
    // The first trigger's sync, and one follow-up for the nine that arrived during it (they
    // may have come after its fetch began, so it cannot be dropped either).
    assert!(
        ran == 2,
        "10 triggers during one sync ran {ran} syncs, not 2; log:\n{}",
        node.log()
    );
}

#[test]
fn removed_and_deleted_repositories_stop_being_served() {
    let up = Upstream::new();
    for (p, r) in [("A", "one"), ("A", "two"), ("B", "three")] {
        up.create(p, r, &Shape::small());
    }
    let node = Node::start(
        &up.file_url(),
        "mirror.projects=A\nmirror.repos=B/three\nmirror.access=anonymous\n",
    );
    let s = node.wait_state("SYNCHRONIZED", LIMIT);
    assert_eq!(s["totalRepos"], 3);
    assert_eq!(s["syncedRepos"], 3);
    let code = |p: &str, r: &str| {
        reqwest::blocking::get(format!(
            "{}/info/refs?service=git-upload-pack",
            node.http_url(p, r)
        ))
        .expect("GET")
        .status()
        .as_u16()
    };
    assert_eq!(code("A", "two"), 200);
    assert_eq!(code("B", "three"), 200);
    std::fs::remove_dir_all(up.repo("A", "two")).expect("rm");
    std::fs::remove_dir_all(up.repo("B", "three")).expect("rm");
    assert_eq!(node.trigger(None), 202);
    wait_for("deleted repositories to stop being served", LIMIT, || {
        (code("A", "two") == 404 && code("B", "three") == 404).then_some(())
    });
    assert_eq!(code("A", "one"), 200);
    let st = node
        .repo_status("B", "three")
        .expect("still listed (configured)");
    assert_eq!(st["state"], "NOT_FOUND");
    assert!(
        node.repo_status("A", "two").is_none(),
        "a repo no longer listed upstream must leave /status"
    );
}
