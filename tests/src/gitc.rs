//! Running the real git client in tests, with an environment that ignores the machine's config.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use crate::topology::Host;

/// A git command with a clean, reproducible environment.
pub fn cmd(dir: Option<&Path>) -> Command {
    cmd_on(&Host::loopback(), dir)
}

/// [`cmd`] on `host`.
pub fn cmd_on(host: &Host, dir: Option<&Path>) -> Command {
    let mut c = host.command("git");
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        // TLS settings come from the test (`-c http.ssl…` or its own GIT_SSL_CAINFO), not the machine.
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("GIT_SSL_CAPATH");
    c
}

/// Runs git and returns its output whatever the exit status.
pub fn try_run(dir: Option<&Path>, args: &[&str], envs: &[(&str, &str)]) -> Output {
    try_run_on(&Host::loopback(), dir, args, envs)
}

/// [`try_run`] on `host`.
pub fn try_run_on(host: &Host, dir: Option<&Path>, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = cmd_on(host, dir);
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run git")
}

/// Runs git, panics on failure, returns stdout.
pub fn run(dir: Option<&Path>, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = try_run(dir, args, envs);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The refs of a repository (bare or not) as `name → oid`, including `HEAD` when it resolves.
pub fn refs(repo: &Path) -> BTreeMap<String, String> {
    let text = run(
        Some(repo),
        &["for-each-ref", "--format=%(refname) %(objectname)"],
        &[],
    );
    let mut m: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| !n.starts_with("refs/mirrorfarm/"))
        .map(|(n, o)| (n.to_owned(), o.to_owned()))
        .collect();
    let head = try_run(Some(repo), &["rev-parse", "--verify", "-q", "HEAD"], &[]);
    if head.status.success() {
        m.insert(
            "HEAD".into(),
            String::from_utf8_lossy(&head.stdout).trim().to_owned(),
        );
    }
    m
}

/// What `git ls-remote URL` lists, as `name → oid` (peeled `^{}` entries left out).
pub fn ls_remote(url: &str, envs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let text = run(None, &["ls-remote", url], envs);
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, n)| !n.ends_with("^{}"))
        .map(|(o, n)| (n.to_owned(), o.to_owned()))
        .collect()
}
