//! `mirror.sync.probe` (default true): a reconcile against an ssh:// upstream reads every
//! repository's refs with one SSH command and fetches only those that changed — also the
//! reconcile a node starts with — and against an upstream that allows git's commands only
//! (`git-shell`) it fetches each repository, as before.

use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, poll_until};

const N: usize = 8;
const LIMIT: Duration = Duration::from_secs(120);

fn probes(node: &Node, result: &str) -> f64 {
    node.metric("mirrorfarm_reconcile_probes_total", &[("result", result)])
}

fn served(node: &Node, repo: &str) -> std::collections::BTreeMap<String, String> {
    gitc::ls_remote(&node.http_url("P", repo), &[])
}

fn counts(node: &Node) -> [f64; 3] {
    ["unchanged", "changed", "unanswered"].map(|r| probes(node, r))
}

fn fetches(node: &Node) -> f64 {
    node.metric("mirrorfarm_syncs_total", &[("result", "ok")])
}

/// Waits until the node's probes answered for `want` more repositories than `before` (per
/// result: unchanged, changed, unanswered) and its fetches reached `fetched`; returns the counts.
fn wait_probed(node: &Node, before: [f64; 3], want: [f64; 3], fetched: f64) -> [f64; 3] {
    let now = || counts(node);
    poll_until(LIMIT, || {
        let n = now();
        let reached = (0..3).all(|i| n[i] - before[i] >= want[i]);
        (reached && fetches(node) >= fetched).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "probes {:?} (from {before:?}, want +{want:?}), fetches {} (want {fetched}): {}",
            now(),
            fetches(node),
            node.explain(30)
        )
    });
    now()
}

#[test]
fn only_changed_repositories_are_fetched_and_git_shell_upstreams_still_sync() {
    let mut up = Upstream::new();
    let names: Vec<String> = (0..N).map(|i| format!("r{i}")).collect();
    for r in &names {
        up.create("P", r, &Shape::one_commit());
    }
    up.start_sshd();
    let repos: Vec<String> = names.iter().map(|r| format!("P/{r}")).collect();
    let mut node = Node::start(
        &up.ssh_url(),
        &format!(
            "mirror.repos={}\nmirror.access=anonymous\n",
            repos.join(",")
        ),
    );
    node.authorize_and_sync(&up, LIMIT);
    // The syncs that failed before the key was authorized may still be retried: wait for none to
    // run (a probe leaves a running one to its sync).
    poll_until(LIMIT, || {
        let s = node.status();
        let repos = s["repos"].as_array()?;
        (repos.len() == N && repos.iter().all(|r| r["syncing"] == false)).then_some(())
    })
    .expect("syncs still running");
    let f0 = fetches(&node);
    assert!(f0 >= N as f64, "{f0} fetches to start with");

    // Nothing changed: one probe, no fetch; the upstream's confirmation counts as a sync.
    let last =
        |node: &Node| node.repo_status("P", "r0").expect("P/r0")["lastSuccessfulSync"].clone();
    let synced = last(&node);
    let before = counts(&node);
    assert_eq!(node.trigger(None), 202);
    let after = wait_probed(&node, before, [N as f64, 0.0, 0.0], 0.0);
    assert_eq!(after, [before[0] + N as f64, before[1], before[2]]);
    assert_eq!(fetches(&node), f0, "an unchanged repository was fetched");
    assert_ne!(last(&node), synced, "the confirmation was not recorded");

    // One repository gains a commit, another a branch: those two are fetched, and served.
    let new = up.commit("P", "r1", "main", "moved on");
    gitc::run(Some(&up.repo("P", "r2")), &["branch", "side", "main"], &[]);
    assert_eq!(node.trigger(None), 202);
    let before = after;
    let after = wait_probed(&node, before, [N as f64 - 2.0, 2.0, 0.0], f0 + 2.0);
    assert_eq!(
        after,
        [before[0] + N as f64 - 2.0, before[1] + 2.0, before[2]]
    );
    assert_eq!(served(&node, "r1").get("refs/heads/main"), Some(&new));
    assert!(served(&node, "r2").contains_key("refs/heads/side"));
    assert_eq!(fetches(&node), f0 + 2.0);

    // A restart: the reconcile the node starts with probes too.
    let zero = [0.0; 3];
    node.stop();
    node.spawn();
    let after = wait_probed(&node, zero, [N as f64, 0.0, 0.0], 0.0);
    assert_eq!(after, [N as f64, 0.0, 0.0]);
    assert_eq!(
        fetches(&node),
        0.0,
        "fetched after a restart with nothing changed"
    );

    // An upstream that runs git's commands only: the probe is refused, every repository is
    // fetched as before, and the change made meanwhile arrives.
    up.restrict_to_git_shell();
    let newer = up.commit("P", "r3", "main", "under git-shell");
    node.stop();
    // The connection authenticated before the restriction is gone with the node.
    poll_until(LIMIT, || (node.shared_ssh_connections() == 0).then_some(()))
        .expect("the shared connection outlived the node");
    node.spawn();
    let after = wait_probed(&node, zero, [0.0, 0.0, N as f64], N as f64);
    assert_eq!(after, [0.0, 0.0, N as f64]);
    assert_eq!(served(&node, "r3").get("refs/heads/main"), Some(&newer));
    assert!(
        node.log().contains("did not answer the reconcile probe"),
        "no warning about the refused probe"
    );
}
