//! Farm benchmark: push to the upstream + trigger one node → the change visible on every node
//! (each node's ref advertisement polled over HTTP), p50 and p99 over 50 pushes with 3 nodes, one run; the
//! upstream's fetches per change (target 1). Twice: with the defaults (one upstream SSH connection
//! kept open, `mirror.sync.sshPersist=60`) and with a new SSH connection per fetch. Baseline, same
//! run and same sshd: a bare `git fetch` of one new commit from the upstream over SSH, each way.
//!
//! Run: `scripts/bench farm`.

use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::ssh_farm_with;
use mirrorfarm_tests::measure::until_main_everywhere;
use mirrorfarm_tests::upstream::{keygen, Upstream};

const PUSHES: usize = 50;

fn pct(times: &[f64], p: f64) -> f64 {
    times[((times.len() as f64 * p) as usize).min(times.len() - 1)]
}

/// Median wall time of a bare `git fetch` of one new commit of `P/r` from the upstream, with a key
/// of its own (`shared`: over one OpenSSH connection kept open, as `sshPersist` does).
fn baseline(up: &Upstream, shared: bool) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k");
    keygen(&key);
    up.authorize(&std::fs::read_to_string(key.with_extension("pub")).expect("public key"));
    let mut ssh = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    );
    if shared {
        ssh.push_str(&format!(
            " -o ControlMaster=auto -o ControlPath={}/cm-%C -o ControlPersist=30",
            dir.path().display()
        ));
    }
    let url = format!("{}/P/r.git", up.ssh_url());
    let clone = dir.path().join("clone");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .env("GIT_SSH_COMMAND", &ssh)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["clone", "-q", "--bare", &url, clone.to_str().expect("utf8")]);
    let mut times = Vec::new();
    for i in 0..11 {
        up.commit("P", "r", "main", &format!("baseline {i}"));
        let t = Instant::now();
        git(&[
            "-C",
            clone.to_str().expect("utf8"),
            "fetch",
            "-q",
            &url,
            "+refs/heads/*:refs/heads/*",
        ]);
        times.push(t.elapsed().as_secs_f64());
    }
    if shared {
        let _ = std::process::Command::new("ssh")
            .args([
                "-o",
                &format!("ControlPath={}/cm-%C", dir.path().display()),
                "-O",
                "exit",
            ])
            .args(["-p", &up.sshd_port().to_string(), "127.0.0.1"])
            .output();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    pct(&times, 0.5)
}

fn run(label: &str, extra: &str, shared: bool) {
    let limit = Duration::from_secs(120);
    let (up, nodes) = ssh_farm_with(3, limit, extra);
    std::thread::sleep(Duration::from_secs(2));
    let base = baseline(&up, shared);
    let (conns, fetches) = (up.accepted_sessions(), up.command_sessions());
    let mut times = Vec::with_capacity(PUSHES);
    let client = reqwest::blocking::Client::new();
    for i in 0..PUSHES {
        let new = up.commit("P", "r", "main", &format!("push {i}"));
        let t = Instant::now();
        nodes[i % nodes.len()].trigger(Some(("P", "r")));
        let seen = until_main_everywhere(&nodes, &new, t, limit, &client);
        times.push(seen.as_secs_f64());
    }
    std::thread::sleep(Duration::from_secs(2));
    let conns = up.accepted_sessions() - conns;
    let fetches = up.command_sessions() - fetches;
    times.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (pct(&times, 0.5), pct(&times, 0.99));
    println!("\n{label}: farm of 3 nodes, {PUSHES} pushes, trigger sent to each node in turn");
    println!(
        "  push → visible on every node   p50 {p50:.3} s (target < 0.3)   p99 {p99:.3} s (target < 0.5)"
    );
    println!(
        "  baseline: a bare git fetch of one commit from the upstream over SSH {base:.3} s → p50 = {:.2}× baseline",
        p50 / base
    );
    println!(
        "  upstream fetches per change {:.2} (target 1); SSH connections per change {:.2}",
        fetches as f64 / PUSHES as f64,
        conns as f64 / PUSHES as f64
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("farm: benchmark");
        return;
    }
    run(
        "default settings (one upstream SSH connection kept open 60 s)",
        "",
        true,
    );
    run(
        "a new SSH connection per fetch (mirror.sync.sshPersist=0)",
        "mirror.sync.sshPersist=0\n",
        false,
    );
}
