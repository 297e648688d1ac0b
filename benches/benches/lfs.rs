//! LFS benchmark (issue "LFS through the farm"): a repository with 200 MB of LFS objects
//! (`MIRRORFARM_BENCH_LFS_OBJECT_MB` each, default 10) on an upstream whose LFS server is giftless behind nginx (TLS, HTTP Basic), mirrored by
//! a 3-member authenticated farm behind the LB. Measured in the same run, in alternating rounds:
//! `git lfs pull` of every object through the farm (warm: the farm holds them) against
//! `git lfs pull` straight from the upstream's LFS server (the baseline), each after a clone that
//! skipped LFS; the members' resident memory during the rounds (sampled every 50 ms: it must not
//! grow with the objects' size) and after.
//!
//! Run: `scripts/bench lfs`.

use std::path::Path;
use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::{following_lb_with, gossip_port, ssh_farm_on};
use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::lfs_client::{bytes, credentials, git, lfs_config, push_lfs_files};
use mirrorfarm_tests::measure::{median, peak_rss_mb, ratio_spread, rss_mb};
use mirrorfarm_tests::node::Placement;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_port, wait_for};

const LIMIT: Duration = Duration::from_secs(300);
const TOTAL_MB: usize = 200;
const ROUNDS: usize = 5;

/// The size of each object, in MB.
fn object_mb() -> usize {
    std::env::var("MIRRORFARM_BENCH_LFS_OBJECT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| (1..=TOTAL_MB).contains(&n))
        .unwrap_or(10)
}

/// Samples the resident memory of `pids` every 50 ms until `stop`; the highest seen per pid.
fn sample_rss(pids: Vec<u32>, stop: &std::sync::atomic::AtomicBool) -> Vec<f64> {
    let mut max = vec![0f64; pids.len()];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for (m, pid) in max.iter_mut().zip(&pids) {
            *m = m.max(rss_mb(*pid));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    max
}

/// Time of `git lfs pull` in a fresh clone of `url` made without LFS objects.
fn pull(
    url: &str,
    dir: &Path,
    config: &[String],
    envs: &[(&str, &str)],
    object_bytes: u64,
) -> Duration {
    let _ = std::fs::remove_dir_all(dir);
    let mut cfg = lfs_config();
    cfg.extend_from_slice(config);
    let mut skip: Vec<(&str, &str)> = envs.to_vec();
    skip.push(("GIT_LFS_SKIP_SMUDGE", "1"));
    let d = dir.to_str().expect("utf8");
    git(None, &cfg, &["clone", "-q", url, d], &skip);
    let t = Instant::now();
    git(Some(dir), &cfg, &["lfs", "pull"], envs);
    let took = t.elapsed();
    let first = std::fs::metadata(dir.join("o0.lfs")).expect("pulled").len();
    assert_eq!(first, object_bytes, "an object, not a pointer");
    took
}

fn main() {
    let object_mb = object_mb();
    let (objects, object_bytes) = (TOTAL_MB / object_mb, object_mb << 20);
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let alice = ("alice", "alice-pw");
    let (http, lfs) = HttpUpstream::start_with_lfs(&up.root(), &[alice], &[("P/r", &["alice"])]);
    let work = tempfile::tempdir().expect("tempdir");
    let creds = [credentials(alice.0, alice.1)];
    let up_ca = http.ca_file().display().to_string();
    let data: Vec<Vec<u8>> = (0..objects)
        .map(|i| bytes(object_bytes, 1000 + i as u64))
        .collect();
    let names: Vec<String> = (0..objects).map(|i| format!("o{i}.lfs")).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&data)
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let t = Instant::now();
    push_lfs_files(
        &format!("{}/P/r.git", http.url()),
        &work.path().join("seed"),
        &files,
        &creds,
        &[("GIT_SSL_CAINFO", up_ca.as_str())],
    );
    eprintln!(
        "seeded {objects} LFS objects of {object_mb} MB in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(data);

    let lb_port = free_port();
    let extra = format!(
        "mirror.access=authenticated\n{}setup.baseUrl=https://localhost:{lb_port}\n",
        http.properties()
    );
    let nodes = ssh_farm_on(&up, 3, LIMIT, &extra, &Placement::default());
    let lb = following_lb_with(
        gossip_port(&nodes[0]),
        &format!("lb.https.port={lb_port}\nlb.threads=2\n"),
    );
    lb.wait_healthy(3, LIMIT);
    let lb_ca = lb.ca().display().to_string();
    let farm_env = [("GIT_SSL_CAINFO", lb_ca.as_str())];
    let up_env = [("GIT_SSL_CAINFO", up_ca.as_str())];
    let farm_url = lb.https_url("P", "r");
    let up_url = format!("{}/P/r.git", http.url());

    // Warm: pulls through the farm until every member holds every object.
    for i in 0..6 {
        let warm = work.path().join("warm");
        pull(&farm_url, &warm, &creds, &farm_env, object_bytes as u64);
        let held: Vec<u64> = nodes
            .iter()
            .map(|n| n.status()["lfs"]["objects"].as_u64().unwrap_or(0))
            .collect();
        eprintln!("warm-up pull {i}: objects held per member {held:?}");
        if held.iter().all(|&h| h >= objects as u64) {
            break;
        }
    }
    let downloads = lfs.downloads();
    eprintln!("upstream downloads so far: {downloads} (of {objects} objects)");

    let (mut farm, mut direct) = (Vec::new(), Vec::new());
    let dir = work.path().join("round");
    let ob = object_bytes as u64;
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid().expect("running")).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let during = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample_rss(pids.clone(), &stop));
        for r in 0..ROUNDS {
            // The order turns each round, so neither always goes first.
            if r % 2 == 0 {
                farm.push(pull(&farm_url, &dir, &creds, &farm_env, ob));
                direct.push(pull(&up_url, &dir, &creds, &up_env, ob));
            } else {
                direct.push(pull(&up_url, &dir, &creds, &up_env, ob));
                farm.push(pull(&farm_url, &dir, &creds, &farm_env, ob));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().expect("sampler")
    });
    wait_for("nothing downloading", LIMIT, || {
        nodes
            .iter()
            .all(|n| n.status()["lfs"]["downloading"].as_u64() == Some(0))
            .then_some(())
    });
    let mb = (objects * object_mb) as f64;
    let (fm, dm) = (median(&farm), median(&direct));
    let (ratio, lo, hi) = ratio_spread(&farm, &direct);
    println!(
        "lfs pull of {mb:.0} MB: farm (LB, warm) median {:.2} s ({:.0} MB/s); upstream's LFS server median {:.2} s ({:.0} MB/s); farm/upstream time ratio {ratio:.2} (rounds {lo:.2}–{hi:.2})",
        fm.as_secs_f64(),
        mb / fm.as_secs_f64(),
        dm.as_secs_f64(),
        mb / dm.as_secs_f64()
    );
    println!(
        "upstream downloads during the rounds: {} (the farm's rounds must not reach the upstream)",
        lfs.downloads() - downloads - ROUNDS * objects
    );
    for (i, n) in nodes.iter().enumerate() {
        let pid = pids[i];
        let s = n.status()["lfs"].clone();
        println!(
            "member {i}: RSS during the rounds ≤ {:.0} MB, now {:.0} MB (lifetime peak {:.0} MB); lfs {}",
            during[i],
            rss_mb(pid),
            peak_rss_mb(pid),
            s
        );
    }
}
