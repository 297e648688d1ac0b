//! Start-up refusals: configuration mistakes exit 64 naming file, line and key before any port is
//! bound; a second node on the same home is refused.

use std::time::Duration;

use mirrorfarm_tests::node::{properties, run_expecting_exit, Node};
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{bin, free_port};

#[test]
fn config_mistakes_exit_64_naming_file_line_and_key() {
    let cases = [
        (
            "setup.displayName=Test mirror",
            "setup.dispalyName=Test mirror",
            2,
            "setup.dispalyName",
        ),
        ("server.port=", "server.port=notaport\n#", 6, "server.port"),
        (
            "application.mode=mirror",
            "application.mode=mirror\napplication.mode=mirror",
            2,
            "application.mode",
        ),
        (
            "plugin.mirroring.upstream.url=",
            "plugin.mirroring.upstream.url=gopher://x\n#",
            4,
            "plugin.mirroring.upstream.url",
        ),
    ];
    for (from, to, line, key) in cases {
        let home = tempfile::tempdir().expect("tempdir");
        let http = free_port();
        let text = properties("file:///srv/git", http, free_port(), "mirror.repos=P/r\n")
            .replacen(from, to, 1);
        std::fs::write(home.path().join("mirrorfarm.properties"), &text).expect("write");
        let (code, err) = run_expecting_exit(home.path(), Duration::from_secs(20));
        assert_eq!(code, Some(64), "{key}: {err}");
        let want = format!("mirrorfarm.properties:{line}: {key}");
        assert!(err.contains(&want), "{key}: expected {want:?} in {err:?}");
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", http)).is_ok(),
            "port was bound"
        );
        assert!(
            !home.path().join("data").exists(),
            "{key}: state written before the config was checked"
        );
        // `config check` gives the same verdict.
        let out = std::process::Command::new(bin())
            .args(["config", "check", "--home"])
            .arg(home.path())
            .output()
            .expect("config check");
        assert_eq!(out.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&out.stderr).contains(&want));
    }
    // Authenticated access with nowhere to check credentials (a file:// upstream, no auth URL).
    let home = tempfile::tempdir().expect("tempdir");
    let text = properties(
        "file:///srv/git",
        free_port(),
        free_port(),
        "mirror.repos=P/r\n",
    );
    std::fs::write(home.path().join("mirrorfarm.properties"), &text).expect("write");
    let (code, err) = run_expecting_exit(home.path(), Duration::from_secs(20));
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("plugin.mirroring.upstream.auth.url")
            && err.contains("mirror.access=anonymous"),
        "{err}"
    );
    let (code, err) = run_expecting_exit(
        std::path::Path::new("/nonexistent-home"),
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("/nonexistent-home/mirrorfarm.properties"),
        "{err}"
    );
}

#[test]
fn a_second_node_on_the_same_home_is_refused() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\n",
    );
    let (code, err) = run_expecting_exit(node.home(), Duration::from_secs(20));
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("already running"), "{err}");
    // The first node is unaffected.
    assert!(node.status()["nodeId"].is_string());
    let out = std::process::Command::new(bin())
        .args(["config", "check", "--home"])
        .arg(node.home())
        .output()
        .expect("config check");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn sigterm_stops_the_node_cleanly_and_identity_survives_restart() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let mut node = Node::start(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\n",
    );
    let before = node.wait_state("SYNCHRONIZED", Duration::from_secs(60));
    assert_eq!(node.stop(), Some(0));
    node.spawn();
    let after = node.status();
    for k in ["nodeId", "farmId", "publicKey"] {
        assert_eq!(before[k], after[k], "{k} changed across a restart");
    }
    // The last complete state is served at once, before any new sync.
    assert_eq!(
        after["repos"][0]["generation"],
        before["repos"][0]["generation"]
    );
}

#[test]
fn a_home_written_by_a_newer_version_is_refused() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let mut node = Node::start(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", Duration::from_secs(60));
    assert_eq!(node.stop(), Some(0));
    {
        let store =
            mirrorfarm_node::store::Store::open(&node.home().join("data")).expect("open store");
        assert_eq!(
            store.meta_get("format").expect("read"),
            Some(mirrorfarm_node::store::DATA_FORMAT.to_string())
        );
        store.meta_put("format", "999").expect("write");
    }
    let (code, err) = run_expecting_exit(node.home(), Duration::from_secs(20));
    assert_ne!(code, Some(0));
    assert!(
        err.contains("written by a newer mirrorfarm") && err.contains("999"),
        "{err}"
    );
}
