//! The pack cache: identical clones share one `git upload-pack` run (also when they arrive
//! together), every cached response is a valid one (full, shallow and partial clones check out and
//! pass fsck), a response interrupted half-written is never served, a new ref state is not served
//! old responses, and the size bound holds.

use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, prom, wait_for};

const LIMIT: Duration = Duration::from_secs(90);

fn cache_counts(node: &Node) -> (f64, f64, f64) {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", node.http))
        .and_then(|r| r.text())
        .expect("metrics");
    let s = prom::parse(&text);
    let v = |r| prom::value(&s, "mirrorfarm_pack_cache_requests_total", &[("result", r)]);
    (v("miss"), v("hit"), v("shared"))
}

fn clone(url: &str, dest: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["clone", "-q"];
    args.extend_from_slice(extra);
    args.push(url);
    args.push(dest.to_str().expect("utf8"));
    gitc::run(None, &args, &[]);
}

#[test]
fn identical_clones_share_one_run_and_stay_valid() {
    let up = Upstream::new();
    up.create(
        "P",
        "r",
        &Shape {
            commits: 30,
            blob_bytes: 300_000,
            branches: 3,
            tags: 3,
        },
    );
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let url = node.http_url("P", "r");
    let want = gitc::refs(&up.repo("P", "r"));
    let tmp = tempfile::tempdir().expect("tempdir");

    // Sequential identical clones: one miss, then hits; every result is complete and valid.
    let (m0, h0, _) = cache_counts(&node);
    for i in 0..3 {
        let dest = tmp.path().join(format!("seq{i}"));
        clone(&url, &dest, &["--mirror", "-c", "protocol.version=2"]);
        assert_eq!(gitc::refs(&dest), want);
        gitc::run(
            Some(&dest),
            &["fsck", "--no-dangling", "--no-progress"],
            &[],
        );
    }
    let (m1, h1, _) = cache_counts(&node);
    assert!(
        m1 - m0 >= 1.0 && h1 - h0 >= 2.0,
        "misses {} hits {}",
        m1 - m0,
        h1 - h0
    );

    // Shallow and partial clones through the cache (twice each: the second is a hit).
    for (name, extra) in [
        ("shallow", vec!["--depth", "1"]),
        ("partial", vec!["--filter=blob:none", "--no-checkout"]),
    ] {
        for i in 0..2 {
            let dest = tmp.path().join(format!("{name}{i}"));
            clone(&url, &dest, &extra);
            gitc::run(
                Some(&dest),
                &["fsck", "--no-dangling", "--no-progress"],
                &[],
            );
            if name == "shallow" {
                assert_eq!(
                    gitc::run(Some(&dest), &["rev-list", "--count", "HEAD"], &[]).trim(),
                    "1"
                );
            }
        }
    }

    // Eight clients at once: one git run between them.
    let (m2, h2, s2) = cache_counts(&node);
    std::thread::scope(|s| {
        for i in 0..8 {
            let (url, dir) = (url.clone(), tmp.path().join(format!("par{i}")));
            s.spawn(move || {
                gitc::run(
                    None,
                    &[
                        "-c",
                        "protocol.version=0",
                        "clone",
                        "-q",
                        "--bare",
                        &url,
                        dir.to_str().expect("utf8"),
                    ],
                    &[],
                );
                gitc::run(Some(&dir), &["fsck", "--no-dangling", "--no-progress"], &[]);
            });
        }
    });
    let (m3, h3, s3) = cache_counts(&node);
    assert_eq!(m3 - m2, 1.0, "8 identical clones ran git more than once");
    assert_eq!((h3 - h2) + (s3 - s2), 7.0);

    // A new ref state is not answered with responses of the old one.
    let gen = node.repo_status("P", "r").expect("status")["generation"]
        .as_u64()
        .expect("gen");
    let new = up.commit("P", "r", "main", "new work");
    assert_eq!(node.trigger(Some(("P", "r"))), 202);
    node.wait_generation("P", "r", gen + 1, LIMIT);
    let dest = tmp.path().join("after");
    clone(&url, &dest, &["--bare"]);
    assert_eq!(
        gitc::run(Some(&dest), &["rev-parse", "refs/heads/main"], &[]).trim(),
        new
    );
    let cached: Vec<_> = std::fs::read_dir(node.home().join("cache/packs"))
        .expect("cache dir")
        .collect();
    assert!(
        cached.len() <= 3,
        "entries of the old state were kept: {}",
        cached.len()
    );
}

#[test]
fn an_interrupted_entry_is_never_served_and_the_bound_holds() {
    let up = Upstream::new();
    up.create(
        "P",
        "r",
        &Shape {
            commits: 40,
            blob_bytes: 1 << 20,
            branches: 1,
            tags: 1,
        },
    );
    let mut node = Node::start(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\nmirror.cache.packs.maxSize=30m\n",
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let url = node.http_url("P", "r");
    let tmp = tempfile::tempdir().expect("tempdir");
    // Kill the node while a clone's response is being written to the cache.
    let dir = tmp.path().join("killed");
    let mut client = gitc::cmd(None)
        .args(["clone", "-q", "--bare", &url, dir.to_str().expect("utf8")])
        .spawn()
        .expect("clone");
    let cache = node.home().join("cache/packs");
    wait_for("a cache entry being written", LIMIT, || {
        std::fs::read_dir(&cache)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(".pack"))
            .map(|_| ())
    });
    node.kill9();
    let _ = client.wait();
    node.spawn();
    node.wait_state("SYNCHRONIZED", LIMIT);
    let leftovers = std::fs::read_dir(&cache).expect("cache dir").count();
    assert_eq!(leftovers, 0, "the cache was not emptied at start");
    let (m0, h0, s0) = cache_counts(&node);
    let dest = tmp.path().join("after-kill");
    clone(&url, &dest, &["--bare"]);
    gitc::run(
        Some(&dest),
        &["fsck", "--no-dangling", "--no-progress"],
        &[],
    );
    let (m1, h1, s1) = cache_counts(&node);
    assert_eq!(
        (m1 - m0, h1 - h0, s1 - s0),
        (1.0, 0.0, 0.0),
        "something half-written was served"
    );
    // The pack is ~40 MB, over the 30 MB bound: the entry is dropped once written; clones still work.
    wait_for("the oversized entry to be evicted", LIMIT, || {
        (std::fs::read_dir(&cache).ok()?.count() == 0).then_some(())
    });
    let dest = tmp.path().join("again");
    clone(&url, &dest, &["--bare"]);
    gitc::run(
        Some(&dest),
        &["fsck", "--no-dangling", "--no-progress"],
        &[],
    );
}
