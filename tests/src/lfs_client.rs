//! The git-lfs client side of the LFS tests: git with LFS's filters switched on from the command
//! line (the tests' git ignores the machine's configuration), credentials from a helper,
//! repositories with LFS files pushed and checked out byte for byte, and raw batch API calls.

use std::path::Path;

use serde_json::{json, Value};

use crate::gitc;
use crate::lfs_upstream::LfsServer;
use crate::upstream::Upstream;

/// `-c` settings that switch git-lfs on for one git command (what `git lfs install` writes to a
/// user's configuration), plus `lfs.locksverify=false` (the test servers have no locking API).
pub fn lfs_config() -> Vec<String> {
    [
        "filter.lfs.clean=git-lfs clean -- %f",
        "filter.lfs.smudge=git-lfs smudge -- %f",
        "filter.lfs.process=git-lfs filter-process",
        "filter.lfs.required=true",
        "lfs.locksverify=false",
        "lfs.concurrenttransfers=4",
    ]
    .map(String::from)
    .to_vec()
}

/// `-c credential.helper=…` answering `user` / `password` (git and git-lfs both ask it).
pub fn credentials(user: &str, password: &str) -> String {
    format!("credential.helper=!f() {{ echo username={user}; echo password={password}; }}; f")
}

/// Runs git with `config` (as `-c`) and `args` in `dir`; panics with its output on failure.
pub fn git(dir: Option<&Path>, config: &[String], args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut all: Vec<&str> = Vec::new();
    for c in config {
        all.extend(["-c", c.as_str()]);
    }
    all.extend(args);
    gitc::run(dir, &all, envs)
}

/// Deterministic bytes of `len` (an LCG from `seed`): different seeds, different objects.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// The SHA-256 (hex) of `data`: its LFS object ID.
pub fn oid(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Clones `url` into `dir` with LFS on, adds `files` (name → bytes) as LFS files (`*.lfs`
/// tracked), commits and pushes; `config` carries credentials, `envs` the CA.
pub fn push_lfs_files(
    url: &str,
    dir: &Path,
    files: &[(&str, &[u8])],
    config: &[String],
    envs: &[(&str, &str)],
) {
    let mut cfg = lfs_config();
    cfg.extend_from_slice(config);
    if !dir.join(".git").exists() {
        let d = dir.to_str().expect("utf8 path");
        git(None, &cfg, &["clone", "-q", url, d], envs);
    }
    git(Some(dir), &cfg, &["lfs", "track", "*.lfs"], envs);
    for (name, data) in files {
        std::fs::write(dir.join(name), data).expect("write LFS file");
    }
    git(Some(dir), &cfg, &["add", "-A"], envs);
    git(Some(dir), &cfg, &["commit", "-q", "-m", "LFS files"], envs);
    git(Some(dir), &cfg, &["push", "-q", "origin", "HEAD"], envs);
}

/// Asserts that `dir` (a checkout) holds each of `files` byte for byte — the content, not a
/// pointer.
pub fn assert_checked_out(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let got = std::fs::read(dir.join(name)).expect("checked-out file");
        assert!(
            got == *data,
            "{}: {} bytes, not the {} bytes pushed (starts {:?})",
            dir.join(name).display(),
            got.len(),
            data.len(),
            String::from_utf8_lossy(&got[..got.len().min(80)])
        );
    }
}

/// A batch API request body for downloading `objects` (oid, size).
pub fn download_request(objects: &[(&str, usize)]) -> Value {
    json!({
        "operation": "download",
        "transfers": ["basic"],
        "objects": objects.iter().map(|(o, s)| json!({"oid": o, "size": s})).collect::<Vec<_>>(),
    })
}

/// Grants `public_key` on the upstream's sshd through a forced command that answers
/// `git-lfs-authenticate` with `lfs`'s program (as a forge's SSH front does) and runs anything
/// else as asked; paths under the upstream's root are given to it relative to that root.
pub fn authorize_with_lfs(up: &Upstream, public_key: &str, lfs: &LfsServer, dir: &Path) {
    let script = dir.join("forced-command");
    let root = up.root();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  git-lfs-authenticate\\ *)\n    \
             eval \"set -- ${{SSH_ORIGINAL_COMMAND#git-lfs-authenticate }}\"\n    \
             exec {auth} \"${{1#{root}/}}\" \"$2\" ;;\n  *) exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\" ;;\nesac\n",
            auth = lfs.authenticate_command().display(),
            root = root.display(),
        ),
    )
    .expect("forced command");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    up.authorize(&format!(
        "command=\"{}\" {}",
        script.display(),
        public_key.trim()
    ));
}
