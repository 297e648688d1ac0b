//! Measuring helpers for the benchmarks: timed clones and a process's peak memory.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::gitc;

/// Median wall time of `runs` bare clones of `url` (each into a fresh directory under `dir`).
pub fn median_clone(url: &str, envs: &[(&str, &str)], dir: &Path, runs: usize) -> Duration {
    let mut v = Vec::with_capacity(runs);
    for i in 0..runs {
        let dest = dir.join(format!("clone-{i}"));
        let t = Instant::now();
        gitc::run(
            None,
            &[
                "clone",
                "-q",
                "--bare",
                "--no-local",
                url,
                dest.to_str().expect("utf8"),
            ],
            envs,
        );
        v.push(t.elapsed());
        std::fs::remove_dir_all(&dest).expect("remove clone");
    }
    v.sort();
    v[v.len() / 2]
}

/// Peak resident memory of a process (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}
