//! Measuring helpers for the benchmarks: timed clones and a process's peak memory.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::gitc;

/// Time from `since` until every node advertises `sha` as `refs/heads/main` of `P/r` (each
/// node's ref advertisement polled every 2 ms over one kept-alive connection, without a git
/// process per look); panics after `limit`.
pub fn until_main_everywhere(
    nodes: &[crate::node::Node],
    sha: &str,
    since: Instant,
    limit: Duration,
    client: &reqwest::blocking::Client,
) -> Duration {
    until_main_everywhere_in(nodes, ("P", "r"), sha, since, limit, client)
}

/// [`until_main_everywhere`] for repository `(project, repo)`.
pub fn until_main_everywhere_in(
    nodes: &[crate::node::Node],
    (project, repo): (&str, &str),
    sha: &str,
    since: Instant,
    limit: Duration,
    client: &reqwest::blocking::Client,
) -> Duration {
    let want = format!("{sha} refs/heads/main");
    let mut pending: Vec<&crate::node::Node> = nodes.iter().collect();
    // Polled every 2 ms: the figure is the time to visibility.
    let seen = crate::poll_every(
        limit.saturating_sub(since.elapsed()),
        Duration::from_millis(2),
        || {
            pending.retain(|n| {
                let url = format!(
                    "{}/info/refs?service=git-upload-pack",
                    n.http_url(project, repo)
                );
                let body = client
                    .get(&url)
                    .send()
                    .and_then(|r| r.bytes())
                    .unwrap_or_default();
                !String::from_utf8_lossy(&body).contains(&want)
            });
            pending.is_empty().then_some(())
        },
    );
    assert!(seen.is_some(), "{sha} not visible on every node");
    since.elapsed()
}

/// Wall time of one bare clone of `url` into `dest` (removed after).
pub fn clone_once(url: &str, envs: &[(&str, &str)], dest: &Path) -> Duration {
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
    let took = t.elapsed();
    std::fs::remove_dir_all(dest).expect("remove clone");
    took
}

/// Median wall time of `runs` bare clones of `url` (each into a fresh directory under `dir`).
pub fn median_clone(url: &str, envs: &[(&str, &str)], dir: &Path, runs: usize) -> Duration {
    let mut v: Vec<Duration> = (0..runs)
        .map(|i| clone_once(url, envs, &dir.join(format!("clone-{i}"))))
        .collect();
    v.sort();
    v[v.len() / 2]
}

/// Clones of each of `ways` (URL and environment) in `rounds` alternating rounds (one clone of
/// each way per round, the order turning each round so none always goes first): each way's
/// times, in round order.
pub fn alternating_clones(
    ways: &[(&str, &[(&str, &str)])],
    dir: &Path,
    rounds: usize,
) -> Vec<Vec<Duration>> {
    let mut out = vec![Vec::with_capacity(rounds); ways.len()];
    for r in 0..rounds {
        for k in 0..ways.len() {
            let i = (r + k) % ways.len();
            let (url, envs) = ways[i];
            out[i].push(clone_once(url, envs, &dir.join(format!("clone-{i}"))));
        }
    }
    out
}

/// The median of `times`.
pub fn median(times: &[Duration]) -> Duration {
    let mut v = times.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// Per round, `a[i] / b[i]`: the median, lowest and highest of those ratios.
pub fn ratio_spread(a: &[Duration], b: &[Duration]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
        .collect();
    r.sort_by(|x, y| x.total_cmp(y));
    (r[r.len() / 2], r[0], r[r.len() - 1])
}

/// CPU time (user + system) a process has used so far, in seconds (its own threads, not its
/// children); NaN when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces) and its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A memory field of `/proc/<pid>/status` (`VmHWM`, `VmRSS` …), in MB; NaN when it cannot be read.
fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Peak resident memory of a process (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM")
}

/// Resident memory of a process now (VmRSS), in MB.
pub fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS")
}
