//! Clone benchmark: a generated repository of ≥ 50 MB cloned through the node over HTTP and SSH,
//! and with `git clone --no-local` straight from the node's bare mirror (raw upload-pack), in one
//! run, in alternating rounds (one clone of each way per round). Reports medians, the median of
//! the per-round ratios against raw upload-pack with their spread, and the node's peak RSS.
//!
//! Run: `scripts/bench` (builds the release binary, then `cargo bench -p mirrorfarm-benches`).

use std::time::Duration;

use mirrorfarm_tests::gitc;
use mirrorfarm_tests::measure::{alternating_clones, median, peak_rss_mb, ratio_spread};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};

/// Alternating rounds.
const RUNS: usize = 7;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("clone: benchmark");
        return;
    }
    let mut up = Upstream::new();
    let src = up.create("BENCH", "big", &Shape::bench());
    gitc::run(Some(&src), &["repack", "-adq"], &[]);
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=BENCH/big\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", Duration::from_secs(300));
    let mirror = node.mirror_path("BENCH", "big");
    // Same serving shape for every transport: one pack with a bitmap.
    gitc::run(Some(&mirror), &["repack", "-adbq"], &[]);
    let pack_bytes: u64 = std::fs::read_dir(mirror.join("objects/pack"))
        .expect("pack dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let ssh = node.git_ssh();
    // Reference for the SSH transport: OpenSSH's sshd running git-upload-pack on the same mirror.
    up.start_sshd();
    let client_pub =
        std::fs::read_to_string(node.client_key().with_extension("pub")).expect("client key");
    up.authorize(&client_pub);
    let openssh_url = format!("{}{}", up.sshd_authority(), mirror.display());
    let tmp = tempfile::tempdir().expect("tempdir");
    let raw_url = format!("file://{}", mirror.display());
    let cases = [
        ("raw upload-pack (git clone --no-local)", raw_url),
        ("node HTTP", node.http_url("BENCH", "big")),
        ("node SSH", node.ssh_url("BENCH", "big")),
        ("OpenSSH sshd + git-upload-pack", openssh_url),
    ];
    let envs = [("GIT_SSH_COMMAND", ssh.as_str())];
    let ways: Vec<(&str, &[(&str, &str)])> = cases
        .iter()
        .map(|(_, url)| (url.as_str(), &envs[..]))
        .collect();
    let times = alternating_clones(&ways, tmp.path(), RUNS);
    println!(
        "\nclone of a {:.1} MB pack, {RUNS} alternating rounds (ratio: median of the rounds' ratios, their spread)",
        pack_bytes as f64 / 1e6
    );
    for ((name, _), t) in cases.iter().zip(&times) {
        let (r, lo, hi) = ratio_spread(t, &times[0]);
        println!(
            "  {name:<40} {:>8.3} s   ratio {r:.2} ({lo:.2}–{hi:.2})",
            median(t).as_secs_f64()
        );
    }
    let (r, lo, hi) = ratio_spread(&times[2], &times[3]);
    println!("  node SSH vs OpenSSH sshd                          ratio {r:.2} ({lo:.2}–{hi:.2})");
    let rss = node.pid().map(peak_rss_mb).unwrap_or(f64::NAN);
    println!("  node peak RSS (VmHWM)                    {rss:>8.1} MB");
}
