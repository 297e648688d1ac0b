//! Clone benchmark: a generated repository of ≥ 50 MB cloned through the node over HTTP and SSH,
//! and with `git clone --no-local` straight from the node's bare mirror (raw upload-pack), in one
//! run. Reports medians, ratios against raw upload-pack, and the node's peak RSS.
//!
//! Run: `scripts/bench` (builds the release binary, then `cargo bench -p mirrorfarm-benches`).

use std::time::Duration;

use mirrorfarm_tests::gitc;
use mirrorfarm_tests::measure::{median_clone, peak_rss_mb};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};

const RUNS: usize = 5;

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
    let results: Vec<_> = cases
        .iter()
        .map(|(name, url)| (name, median_clone(url, &envs, tmp.path(), RUNS)))
        .collect();
    let base = results[0].1.as_secs_f64();
    println!(
        "\nclone of a {:.1} MB pack, median of {RUNS} runs each",
        pack_bytes as f64 / 1e6
    );
    for (name, t) in &results {
        println!(
            "  {name:<40} {:>8.3} s   ratio {:.2}",
            t.as_secs_f64(),
            t.as_secs_f64() / base
        );
    }
    println!(
        "  node SSH vs OpenSSH sshd                          ratio {:.2}",
        results[2].1.as_secs_f64() / results[3].1.as_secs_f64()
    );
    let rss = node.pid().map(peak_rss_mb).unwrap_or(f64::NAN);
    println!("  node peak RSS (VmHWM)                    {rss:>8.1} MB");
}
