//! End-to-end harness: a real OpenSSH `sshd` upstream with generated bare repositories, real
//! `mirrorfarm` node processes, and the real git client. Every wait is bounded in time.

pub mod browser;
pub mod farm;
pub mod farm_hosts;
mod forge_listing;
pub mod forge_standin;
mod forge_users;
pub mod fuzz;
pub mod gitc;
pub mod http_upstream;
pub mod lb;
pub mod lfs_client;
pub mod lfs_upstream;
mod lfs_upstream_conf;
pub mod measure;
pub mod node;
pub mod process;
pub mod prom;
pub mod raw_http;
pub mod tmpfs;
pub mod topology;
pub mod traffic;
pub mod upstream;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The `mirrorfarm` binary built by `cargo test` (target/<profile>/mirrorfarm).
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("MIRRORFARM_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let p = target.join(profile).join("mirrorfarm");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p mirrorfarm` (the README's test command does)",
        p.display()
    );
    p
}

/// Hands out ports below Linux's ephemeral range (32768–60999), so a port a test chose is not
/// taken meanwhile by an outgoing connection; each call in a process gets a new one.
fn next_port(udp_too: bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 500) * 24;
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (20_000 + (base - 20_000 + n) % 12_000) as u16;
        let tcp_ok = TcpListener::bind(("127.0.0.1", port)).is_ok();
        let udp_ok = !udp_too || std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if tcp_ok && udp_ok {
            return port;
        }
    }
    panic!("no free port found");
}

/// A TCP port on 127.0.0.1 that is free now.
pub fn free_port() -> u16 {
    next_port(false)
}

/// A port on 127.0.0.1 free now for both UDP and TCP (farm gossip and the farm listener use both).
pub fn free_udp_port() -> u16 {
    next_port(true)
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_or_explain(what, limit, f, String::new)
}

/// Polls `f` every 100 ms until it returns `Some` (that value) or `limit` has passed (`None`):
/// for a wait with a fallback, where [`wait_for`] would panic.
pub fn poll_until<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(limit, Duration::from_millis(100), f)
}

/// Polls `f` every `every` until it returns `Some` (that value) or `limit` has passed (`None`).
pub fn poll_every<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        // The poll interval, never past the deadline.
        std::thread::sleep(every.min(limit.saturating_sub(start.elapsed())));
    }
}

/// Like [`wait_for`]; on timeout the panic message also carries `explain()` (state, logs), so
/// a failure on CI says what the processes were doing.
pub fn wait_or_explain<T>(
    what: &str,
    limit: Duration,
    f: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    poll_until(limit, f).unwrap_or_else(|| {
        panic!(
            "timed out after {limit:?} waiting for {what}\n{}",
            explain()
        )
    })
}

/// A git request body: `first` pkt-lines, a flush, then `then` pkt-lines (e.g. wants, then
/// `done`).
pub fn pktline_request(first: &[&str], then: &[&str]) -> Vec<u8> {
    let pkt = |s: &str| {
        let mut v = format!("{:04x}", s.len() + 4).into_bytes();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut out = Vec::new();
    for s in first {
        out.extend(pkt(s));
    }
    out.extend_from_slice(b"0000");
    for s in then {
        out.extend(pkt(s));
    }
    out
}

/// The time now as the processes' logs show it (UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`), to tell
/// which log lines a failure goes with.
pub fn utc_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    out.unwrap_or_default()
}
