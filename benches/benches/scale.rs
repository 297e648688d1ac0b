//! Scale benchmark: a 3-member farm mirroring every repository of a `file://` upstream
//! (`mirror.projects=*`, one-commit repositories in 10 projects), for each repository count in
//! `MIRRORFARM_SCALE_REPOS` (comma list, default `2000`), one run each, reported side by side so
//! the growth shows. Per count: time to all members serving everything; each member's own CPU
//! (not git's) during that sync, per repository, and at rest (30 s, no reconcile in it); a full
//! reconcile of the unchanged repositories, its time and own CPU per repository, and the rest
//! figure with a reconcile every 180 s (the default interval) added; gossip bytes per second per
//! member at rest (`mirrorfarm_gossip_bytes_total`); `/status`, the readiness document and a
//! 100-row page of `/rest/mirroring/latest/repos` in bytes; RSS; a member's restart until it is
//! ready again; push → visible on every member (p50, p99 of 100 at rest; p50 and max of 20 right
//! after the restart, beside that member's start-up reconcile probe); then, the members moved to the
//! same repositories over `ssh://` (a real OpenSSH sshd), a full reconcile fetching each one
//! (`mirror.sync.probe=false`, the baseline) and one with the reconcile probe (the default):
//! their time, the SSH connections the upstream accepted for them and our own CPU per repository.
//!
//! Run: `scripts/bench scale`, or `MIRRORFARM_SCALE_REPOS=2000,20000 scripts/bench scale`; with
//! `MIRRORFARM_SCALE_SYNC_ONLY=1`, only the initial sync is measured; with
//! `MIRRORFARM_SCALE_QUICK=1`, the initial sync, the farm at rest and pushes at rest (to compare
//! two binaries, `MIRRORFARM_BIN=`).

use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::SECRET;
use mirrorfarm_tests::measure::{cpu_seconds, rss_mb};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, poll_every};

#[path = "scale/push.rs"]
mod push;
#[path = "scale/quick.rs"]
mod quick;
#[path = "scale/reconcile.rs"]
mod reconcile;
#[path = "scale/rest.rs"]
mod rest;
#[path = "scale/ssh.rs"]
mod ssh;

const PROJECTS: usize = 10;
const REST: Duration = Duration::from_secs(30);
/// Pushes measured at rest.
const PUSHES: usize = 100;
/// Pushes measured right after a member's restart, beside its start-up reconcile.
const PUSHES_STARTING: usize = 20;
/// The farm's reconcile interval here: long, so that no periodic reconcile falls in a measuring
/// window (one is started and measured on its own).
const INTERVAL: u64 = 3600;
/// The default reconcile interval (`plugin.mirroring.synchronization.interval`), s.
const DEFAULT_INTERVAL: f64 = 180.0;

/// The names of `n` repositories in [`PROJECTS`] projects.
fn names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("S{}/r{i:05}", i % PROJECTS))
        .collect()
}

/// An upstream of `n` one-commit repositories in [`PROJECTS`] projects.
fn upstream(n: usize) -> Upstream {
    let up = Upstream::new();
    up.create_copies(&names(n), &Shape::one_commit());
    up
}

fn props(port: u16, seed: Option<u16>) -> String {
    let seeds = seed
        .map(|s| format!("farm.seeds=127.0.0.1:{s}\n"))
        .unwrap_or_default();
    format!(
        "setup.baseUrl=https://farm.example.com\nmirror.projects=*\nmirror.access=anonymous\n\
         plugin.mirroring.synchronization.interval={INTERVAL}\n\
         farm.secret={SECRET}\nfarm.gossip.address=127.0.0.1\nfarm.gossip.port={port}\n{seeds}"
    )
}

fn ready(node: &Node, n: usize) -> bool {
    let doc = node.get_json("/rest/mirroring/latest/ready");
    doc["ready"] == true && doc["syncedRepos"].as_u64() == Some(n as u64)
}

fn wait_ready(nodes: &[&Node], n: usize, limit: Duration) -> Duration {
    let t = Instant::now();
    let done = poll_every(limit, Duration::from_millis(200), || {
        nodes.iter().all(|node| ready(node, n)).then_some(())
    });
    assert!(
        done.is_some(),
        "not every member served {n} repositories within {limit:?}"
    );
    t.elapsed()
}

fn bytes_of(node: &Node, path: &str) -> usize {
    let url = format!("{}{path}", node.base_url());
    node.admin_client()
        .get(&url)
        .send()
        .and_then(|r| r.bytes())
        .map(|b| b.len())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `mirrorfarm_gossip_bytes_total{direction="sent"}` of `node`.
fn gossip_sent(node: &Node) -> f64 {
    node.metric("mirrorfarm_gossip_bytes_total", &[("direction", "sent")])
}

struct Figures {
    n: usize,
    sync_s: f64,
    cpu_ms_per_repo: f64,
    rest_cpu_pct: f64,
    gossip_bps: f64,
    reconcile_s: f64,
    reconcile_cpu_ms: f64,
    status_bytes: usize,
    ready_bytes: usize,
    page_bytes: usize,
    rss_mb: f64,
    restart_s: f64,
    push_p50: f64,
    push_p99: f64,
    starting_p50: f64,
    starting_max: f64,
    ssh: ssh::SshFigures,
}

/// A farm of 3 members that all serve the `n` repositories of a new upstream, with the time
/// that took and each member's own CPU for it, per repository (ms).
fn synced_farm(n: usize) -> (Upstream, Vec<Node>, f64, f64) {
    let t = Instant::now();
    let up = upstream(n);
    eprintln!(
        "scale {n}: upstream made in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let limit = Duration::from_secs(600 + n as u64 / 2);
    let p0 = free_udp_port();
    let started = Instant::now();
    let mut nodes = vec![Node::start(&up.file_url(), &props(p0, None))];
    for _ in 1..3 {
        nodes.push(Node::start(
            &up.file_url(),
            &props(free_udp_port(), Some(p0)),
        ));
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_ready(&refs, n, limit);
    let sync_s = started.elapsed().as_secs_f64();
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid().expect("pid")).collect();
    let sync_cpu: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let cpu_ms_per_repo = sync_cpu.iter().sum::<f64>() / 3.0 / n as f64 * 1000.0;
    eprintln!(
        "scale {n}: synchronized in {sync_s:.0} s; CPU {sync_cpu:?} s, {cpu_ms_per_repo:.2} ms per repository"
    );
    (up, nodes, sync_s, cpu_ms_per_repo)
}

fn run(n: usize) -> Figures {
    let (mut up, mut nodes, sync_s, cpu_ms_per_repo) = synced_farm(n);
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid().expect("pid")).collect();

    let (rest_cpu_pct, gossip_bps) = rest::at_rest(n, &nodes);
    // A full reconcile of n unchanged repositories: how long, and our own CPU (the busiest
    // member's) per repository.
    // (With the reconcile probe, the default, an unchanged one is not fetched.)
    let mark = reconcile::Mark::now(&nodes);
    let c0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let t = Instant::now();
    for node in &nodes {
        node.trigger(None);
    }
    let limit = Duration::from_secs(600 + n as u64 / 2);
    let done = poll_every(limit, Duration::from_millis(500), || {
        mark.since(&nodes).covers(n).then_some(())
    });
    assert!(done.is_some(), "no full reconcile within {limit:?}");
    let reconcile_s = t.elapsed().as_secs_f64();
    let did = mark.since(&nodes);
    eprintln!(
        "scale {n}: file:// reconcile: fetched {:?}, probed unchanged {:?} per member",
        did.ok, did.unchanged
    );
    let c1: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let reconcile_cpu_ms =
        c0.iter().zip(&c1).map(|(a, b)| b - a).fold(0.0, f64::max) / n as f64 * 1000.0;
    let status_bytes = bytes_of(&nodes[0], "/status");
    let ready_bytes = bytes_of(&nodes[0], "/rest/mirroring/latest/ready");
    let page_bytes = bytes_of(&nodes[0], "/rest/mirroring/latest/repos?start=0&limit=100");
    let rss = pids.iter().map(|p| rss_mb(*p)).fold(0.0, f64::max);
    eprintln!(
        "scale {n}: reconcile {reconcile_s:.1} s, {reconcile_cpu_ms:.2} ms own CPU per repository; \
         /status {status_bytes} B, ready {ready_bytes} B, page {page_bytes} B; RSS {rss:.0} MB"
    );

    // A member restarts: ready again (serving its last state) how soon?
    let probes_before = push::probes_done(&nodes[2]);
    nodes[2].stop();
    let t = Instant::now();
    nodes[2].spawn();
    wait_ready(&[&nodes[2]], n, limit);
    let restart_s = t.elapsed().as_secs_f64();
    eprintln!("scale {n}: a member restarted, ready in {restart_s:.1} s");
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_ready(&refs, n, limit);

    // Push → visible on every member, one repository among n: first while the restarted member's
    // start-up reconcile probes the repositories it leads, then at rest (that probe over, no sync
    // running on any member).
    let starting = push::times(&up, &nodes, PUSHES_STARTING, "starting");
    let probed = poll_every(limit, Duration::from_millis(500), || {
        (push::probes_done(&nodes[2]) > probes_before).then_some(())
    });
    assert!(
        probed.is_some(),
        "the restarted member's start-up probe did not end"
    );
    // At rest: no member syncs anything (a takeover's backlog, say, would still be running).
    let t = Instant::now();
    let idle = poll_every(limit, Duration::from_secs(1), || {
        nodes.iter().all(Node::no_sync_running).then_some(())
    });
    assert!(idle.is_some(), "the members kept syncing after the restart");
    eprintln!(
        "scale {n}: after the restart and {PUSHES_STARTING} pushes, syncs went on for {:.1} s more",
        t.elapsed().as_secs_f64()
    );
    let at_rest = push::times(&up, &nodes, PUSHES, "at rest");
    let q = push::quantile;
    eprintln!(
        "scale {n}: push -> every member: at rest p50 {:.0} ms, p99 {:.0} ms (of {PUSHES}); \
         beside a member's start-up p50 {:.0} ms, max {:.0} ms (of {PUSHES_STARTING})",
        q(&at_rest, 0.5) * 1000.0,
        q(&at_rest, 0.99) * 1000.0,
        q(&starting, 0.5) * 1000.0,
        q(&starting, 1.0) * 1000.0,
    );
    let ssh = ssh::reconcile(&mut up, &mut nodes, n);
    for (how, r) in [("fetching each", &ssh.fetching), ("probing", &ssh.probing)] {
        eprintln!(
            "scale {n}: ssh:// full reconcile, {how}: {:.0} s, {} SSH connections, {:.0} fetches, {:.0} unchanged, {:.2} ms own CPU per repository",
            r.secs, r.connections, r.fetches, r.unchanged, r.cpu_ms
        );
    }
    Figures {
        n,
        sync_s,
        cpu_ms_per_repo,
        rest_cpu_pct,
        gossip_bps,
        reconcile_s,
        reconcile_cpu_ms,
        status_bytes,
        ready_bytes,
        page_bytes,
        rss_mb: rss,
        restart_s,
        push_p50: q(&at_rest, 0.5),
        push_p99: q(&at_rest, 0.99),
        starting_p50: q(&starting, 0.5),
        starting_max: q(&starting, 1.0),
        ssh,
    }
}

fn main() {
    let counts: Vec<usize> = std::env::var("MIRRORFARM_SCALE_REPOS")
        .unwrap_or_else(|_| "2000".into())
        .split(',')
        .map(|c| c.trim().parse().expect("MIRRORFARM_SCALE_REPOS: numbers"))
        .collect();
    if std::env::var_os("MIRRORFARM_SCALE_SYNC_ONLY").is_some() {
        // The initial sync's figures alone (for profiling it, or comparing two binaries).
        for n in counts {
            let (_, _, sync_s, cpu_ms) = synced_farm(n);
            println!(
                "scale {n}: initial sync {sync_s:.0} s, own CPU {cpu_ms:.2} ms per repository"
            );
        }
        return;
    }
    if std::env::var_os("MIRRORFARM_SCALE_QUICK").is_some() {
        for n in counts {
            quick::quick(n);
        }
        return;
    }
    let figures: Vec<Figures> = counts.into_iter().map(run).collect();
    println!("scale: 3 members, file:// upstream, mirror.projects=* (then ssh:// for two reconciles, fetching each and probed; one run per count)");
    let row = |name: &str, f: &dyn Fn(&Figures) -> String| {
        let cells: Vec<String> = figures.iter().map(f).collect();
        println!("  {name:<44} {}", cells.join("  |  "));
    };
    row("repositories", &|f| format!("{:>10}", f.n));
    row("all members serving everything (s)", &|f| {
        format!("{:>10.0}", f.sync_s)
    });
    row("own CPU per repository, initial sync (ms)", &|f| {
        format!("{:>10.2}", f.cpu_ms_per_repo)
    });
    row("own CPU at rest, busiest member (% core)", &|f| {
        format!("{:>10.2}", f.rest_cpu_pct)
    });
    row("gossip sent at rest, busiest member (B/s)", &|f| {
        format!("{:>10.0}", f.gossip_bps)
    });
    row("full reconcile, nothing changed (s)", &|f| {
        format!("{:>10.0}", f.reconcile_s)
    });
    row("own CPU per repository, reconcile (ms)", &|f| {
        format!("{:>10.2}", f.reconcile_cpu_ms)
    });
    row("own CPU at rest + reconcile every 180 s (%)", &|f| {
        let per_pass = f.reconcile_cpu_ms * f.n as f64 / 1000.0;
        format!(
            "{:>10.2}",
            f.rest_cpu_pct + per_pass / DEFAULT_INTERVAL * 100.0
        )
    });
    row("/status (bytes)", &|f| format!("{:>10}", f.status_bytes));
    row("readiness document (bytes)", &|f| {
        format!("{:>10}", f.ready_bytes)
    });
    row("repos page of 100 (bytes)", &|f| {
        format!("{:>10}", f.page_bytes)
    });
    row("RSS, largest member (MB)", &|f| {
        format!("{:>10.0}", f.rss_mb)
    });
    row("restart until ready (s)", &|f| {
        format!("{:>10.1}", f.restart_s)
    });
    row("push -> every member, p50 (ms)", &|f| {
        format!("{:>10.0}", f.push_p50 * 1000.0)
    });
    row("push -> every member, p99 (ms)", &|f| {
        format!("{:>10.0}", f.push_p99 * 1000.0)
    });
    row("  beside a member's start-up, p50 / max (ms)", &|f| {
        format!(
            "{:>4.0} / {:>4.0}",
            f.starting_p50 * 1000.0,
            f.starting_max * 1000.0
        )
    });
    row("ssh:// full reconcile, fetching each (s)", &|f| {
        format!("{:>10.1}", f.ssh.fetching.secs)
    });
    row("  its SSH connections / fetches", &|f| {
        format!(
            "{:>4} / {:>5.0}",
            f.ssh.fetching.connections, f.ssh.fetching.fetches
        )
    });
    row("  own CPU per repository (ms)", &|f| {
        format!("{:>10.2}", f.ssh.fetching.cpu_ms)
    });
    row("ssh:// full reconcile, probed (s)", &|f| {
        format!("{:>10.1}", f.ssh.probing.secs)
    });
    row("  its SSH connections / fetches / unchanged", &|f| {
        let p = &f.ssh.probing;
        format!(
            "{:>4} / {:>5.0} / {:>5.0}",
            p.connections, p.fetches, p.unchanged
        )
    });
    row("  own CPU per repository (ms)", &|f| {
        format!("{:>10.2}", f.ssh.probing.cpu_ms)
    });
    row("  time probed / fetching each", &|f| {
        format!("{:>10.3}", f.ssh.probing.secs / f.ssh.fetching.secs)
    });
    if let (Some(a), Some(b)) = (figures.first(), figures.last()) {
        if a.n != b.n {
            let r = |x: f64, y: f64| y / x;
            println!(
                "  growth {}→{} repositories (×{:.0}): /status ×{:.1}, readiness ×{:.1}, gossip ×{:.1}, rest CPU ×{:.1}, RSS ×{:.1}",
                a.n,
                b.n,
                b.n as f64 / a.n as f64,
                r(a.status_bytes as f64, b.status_bytes as f64),
                r(a.ready_bytes as f64, b.ready_bytes as f64),
                r(a.gossip_bps, b.gossip_bps),
                r(a.rest_cpu_pct, b.rest_cpu_pct),
                r(a.rss_mb, b.rss_mb)
            );
        }
    }
}
