//! End-to-end harness: a real OpenSSH `sshd` upstream with generated bare repositories, real
//! `mirrorfarm` node processes, and the real git client. Every wait is bounded in time.

pub mod gitc;
pub mod lb;
pub mod measure;
pub mod node;
pub mod process;
pub mod prom;
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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A port on 127.0.0.1 free a moment ago for both UDP and TCP (farm gossip uses both).
pub fn free_udp_port() -> u16 {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
