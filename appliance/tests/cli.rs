//! The binary's command line: help, version, and config check exit codes.

use std::process::Command;

#[test]
fn help_version_and_config_check() {
    let bin = env!("CARGO_BIN_EXE_mirrorfarm");
    let out = Command::new(bin).arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    for sub in [&["node", "--help"][..], &["config", "check", "--help"][..]] {
        let out = Command::new(bin).args(sub).output().expect("run");
        assert!(out.status.success(), "{sub:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("--home"),
            "{sub:?}"
        );
    }
    let dir = std::env::temp_dir().join(format!("mf-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("mirrorfarm.properties"),
        "application.mode=mirror\nbogus.key=1\n",
    )
    .expect("write");
    let out = Command::new(bin)
        .args(["config", "check", "--home"])
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("mirrorfarm.properties:2: bogus.key: unknown key"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let bin = env!("CARGO_BIN_EXE_mirrorfarm");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin)
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        let has_home = text.contains("--home") || text.contains("-l home");
        assert!(
            text.contains("demo") && has_home,
            "{shell} completions miss subcommands or flags"
        );
    }
    let out = Command::new(bin).arg("man").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(".TH mirrorfarm"),
        "not roff: {text:.200}"
    );
    assert!(text.contains("config") && text.contains("node"));
}
