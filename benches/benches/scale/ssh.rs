//! The scale benchmark's `ssh://` phase: the farm's members move to the same repositories over
//! `ssh://` (a real OpenSSH sshd and bare repositories: nothing lists them, so `mirror.repos`
//! names them all) and restart; once the reconcile every member starts with is over, one full
//! reconcile is measured: its time, the SSH connections sshd accepted for it, the fetches (the
//! members' syncs: at rest each member fetches the repositories it leads, from the upstream,
//! and follows the others), the busiest member's own CPU per repository. Twice: first fetching
//! every repository (`mirror.sync.probe=false`, the baseline), then with the reconcile probe
//! (the default: one SSH command per member reads every repository's refs, only changed ones
//! are fetched).

use std::time::{Duration, Instant};

use mirrorfarm_tests::measure::cpu_seconds;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::poll_every;
use mirrorfarm_tests::upstream::Upstream;

use super::{names, wait_ready};

/// How long no member may finish a sync for the farm to count as at rest: longer than a shared
/// connection's idle life (`mirror.sync.sshPersist`, 60 s by default), so the measured reconcile
/// opens its connections as a periodic one (every 180 s by default) does.
const QUIET: Duration = Duration::from_secs(70);

/// What a full reconcile against the `ssh://` upstream cost.
pub struct SshReconcile {
    /// Its time (s).
    pub secs: f64,
    /// SSH connections sshd accepted meanwhile.
    pub connections: usize,
    /// Syncs the members made (one fetch each).
    pub fetches: f64,
    /// The busiest member's own CPU per repository (ms).
    pub cpu_ms: f64,
    /// Repositories the members' probes found unchanged (not fetched).
    pub unchanged: f64,
}

/// The `ssh://` phase's two reconciles.
pub struct SshFigures {
    /// Fetching every repository (`mirror.sync.probe=false`).
    pub fetching: SshReconcile,
    /// With the reconcile probe (the default).
    pub probing: SshReconcile,
}

/// Every member's syncs and probed repositories, all results: what moves while a reconcile runs.
fn activity(nodes: &[Node]) -> Vec<f64> {
    let m = super::reconcile::Mark::now(nodes);
    let mut all = syncs(nodes);
    all.extend(m.unchanged_and_to_fetch());
    all
}

/// Every member's syncs, any result.
fn syncs(nodes: &[Node]) -> Vec<f64> {
    nodes
        .iter()
        .map(|n| n.metric("mirrorfarm_syncs_total", &[]))
        .collect()
}

fn delta(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| y - x).collect()
}

/// Waits until no member has finished a sync or a probe for [`QUIET`].
fn wait_quiet(nodes: &[Node], limit: Duration) {
    let mut last = (activity(nodes), Instant::now());
    let quiet = poll_every(limit, Duration::from_secs(1), || {
        let now = activity(nodes);
        if now != last.0 {
            last = (now, Instant::now());
        }
        (last.1.elapsed() >= QUIET).then_some(())
    });
    assert!(
        quiet.is_some(),
        "the farm did not come to rest within {limit:?}"
    );
}

/// Moves the farm to `ssh://` and measures a full reconcile of its `n` unchanged repositories,
/// fetching each, then probing.
pub fn reconcile(up: &mut Upstream, nodes: &mut [Node], n: usize) -> SshFigures {
    up.start_sshd();
    let mut keys: Vec<String> = nodes
        .iter()
        .map(|node| {
            node.status()["publicKey"]
                .as_str()
                .expect("publicKey")
                .to_owned()
        })
        .collect();
    keys.sort();
    keys.dedup();
    for k in &keys {
        up.authorize(k);
    }
    SshFigures {
        fetching: measure(up, nodes, n, false),
        probing: measure(up, nodes, n, true),
    }
}

/// Restarts the members on the `ssh://` upstream (`probe`: `mirror.sync.probe`), lets their
/// start-up reconcile end, and measures the next full reconcile.
fn measure(up: &Upstream, nodes: &mut [Node], n: usize, probe: bool) -> SshReconcile {
    let repos = format!("mirror.repos={}\n", names(n).join(","));
    for node in nodes.iter_mut() {
        node.stop();
        let path = node.home().join("mirrorfarm.properties");
        let props = std::fs::read_to_string(&path).expect("read properties");
        let mut props: String = props
            .lines()
            .filter(|l| !l.starts_with("mirror.sync.probe="))
            .map(|l| {
                if l.starts_with("plugin.mirroring.upstream.url=") {
                    format!("plugin.mirroring.upstream.url={}\n", up.ssh_url())
                } else if l == "mirror.projects=*" {
                    repos.clone()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        if !probe {
            props.push_str("mirror.sync.probe=false\n");
        }
        std::fs::write(&path, props).expect("write properties");
    }
    for node in nodes.iter_mut() {
        node.spawn();
    }
    let nodes: &[Node] = nodes;
    let limit = Duration::from_secs(600 + n as u64 / 2);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_ready(&refs, n, limit);
    // Every member reconciles what it leads as it starts: measured is the next one.
    wait_quiet(nodes, limit);
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid().expect("pid")).collect();
    let mark = super::reconcile::Mark::now(nodes);
    let conns = up.accepted_sessions();
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let t = Instant::now();
    for node in nodes {
        node.trigger(None);
    }
    let done = poll_every(limit, Duration::from_millis(500), || {
        mark.since(nodes).covers(n).then_some(())
    });
    assert!(
        done.is_some(),
        "no full reconcile over ssh:// within {limit:?}: {}",
        nodes[0].explain(20)
    );
    let secs = t.elapsed().as_secs_f64();
    let cpu1: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let did = mark.since(nodes);
    eprintln!(
        "scale {n}: ssh:// reconcile (probe {probe}) in {secs:.1} s: ok {:?}, failed {:?}, unchanged {:?} per member",
        did.ok, did.failed, did.unchanged
    );
    SshReconcile {
        secs,
        connections: up.accepted_sessions() - conns,
        fetches: did.ok.iter().sum(),
        cpu_ms: delta(&cpu0, &cpu1).into_iter().fold(0.0, f64::max) / n as f64 * 1000.0,
        unchanged: did.unchanged.iter().sum(),
    }
}
