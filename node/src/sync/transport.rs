//! How git reaches the upstream: for `ssh://`, the system OpenSSH client with the farm key, a
//! known_hosts file of the node's own (first contact pins the host key) and batch mode.

use std::path::Path;

use crate::home::Home;
use crate::upstream_url::UpstreamUrl;

/// Quotes a string for the POSIX shell that git runs `GIT_SSH_COMMAND` with.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A path as ssh's `-i` takes it: `%` doubled, since ssh expands `%` tokens in it.
fn ssh_file(p: &Path) -> String {
    p.display().to_string().replace('%', "%%")
}

/// A path as the value of an `-o` option, which ssh splits at whitespace like a config line:
/// in double quotes, `\` and `"` escaped (OpenSSH 8.7 reads such escapes; older ones only the
/// quotes, which is all a path with spaces needs), `%` doubled. `tokens` keeps `%` as written
/// (for `ControlPath`'s `%C`, appended by the caller).
fn ssh_option_path(p: &str, tokens: &str) -> String {
    ssh_option_path_literal(&p.replace('%', "%%"), tokens)
}

/// [`ssh_option_path`] for an option ssh does not expand `%` in.
fn ssh_option_path_literal(p: &str, tokens: &str) -> String {
    let escaped = p.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}{tokens}\"")
}

/// The `ControlPath` option value for the shared connection's socket (`%C`: a hash of host,
/// port and user), if the path is short enough for a Unix socket (OpenSSH adds a 17-character
/// temporary suffix).
pub fn control_path(home: &Home) -> Option<String> {
    let dir = home.known_hosts().with_file_name("cm-");
    let dir = dir.to_str()?;
    (dir.len() + 40 + 17 < 104).then(|| ssh_option_path(dir, "%C"))
}

/// The environment for a git command that talks to the upstream (`persist`: see
/// `mirror.sync.sshPersist`; zero for a new connection per fetch).
pub fn upstream_env(
    home: &Home,
    upstream: &UpstreamUrl,
    openssh: (u32, u32, u32),
    persist: std::time::Duration,
) -> Vec<(&'static str, String)> {
    if !upstream.is_ssh() {
        return Vec::new();
    }
    let mut cmd = ssh_command(&home.upstream_key(), &home.known_hosts(), openssh);
    if !persist.is_zero() {
        match control_path(home) {
            Some(cp) => cmd.push_str(&format!(
                " -o ControlMaster=auto -o {} -o ControlPersist={}",
                sh_quote(&format!("ControlPath={cp}")),
                persist.as_secs()
            )),
            None => tracing::warn!(
                "the node's home path is too long for an SSH control socket: mirror.sync.sshPersist is not used"
            ),
        }
    }
    vec![("GIT_SSH_COMMAND", cmd)]
}

/// Closes a shared upstream connection, if one is open (at shutdown; best effort).
pub async fn close_shared(home: &Home, upstream: &UpstreamUrl) {
    let (
        UpstreamUrl::Ssh {
            host, port, user, ..
        },
        Some(cp),
    ) = (upstream, control_path(home))
    else {
        return;
    };
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(["-o", &format!("ControlPath={cp}"), "-O", "exit"]);
    if let Some(p) = port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(host);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), cmd.status()).await;
}

/// The ssh command line git uses (OpenSSH ≥ 7.6 pins on first contact with `accept-new`; older
/// clients get the key pinned by [`crate::sync::transport`]'s caller with ssh-keyscan first).
pub fn ssh_command(key: &Path, known_hosts: &Path, openssh: (u32, u32, u32)) -> String {
    let strict = if openssh >= (7, 6, 0) {
        "accept-new"
    } else {
        "yes"
    };
    // OpenSSH expands `%` tokens in UserKnownHostsFile since 8.4.
    let known_hosts = known_hosts.display().to_string();
    let known_hosts = if openssh >= (8, 4, 0) {
        ssh_option_path(&known_hosts, "")
    } else {
        ssh_option_path_literal(&known_hosts, "")
    };
    format!(
        "ssh -i {} -o IdentitiesOnly=yes -o {} -o GlobalKnownHostsFile=/dev/null \
         -o StrictHostKeyChecking={strict} -o HashKnownHosts=no -o BatchMode=yes -o ConnectTimeout=15 \
         -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o LogLevel=ERROR",
        sh_quote(&ssh_file(key)),
        sh_quote(&format!("UserKnownHostsFile={known_hosts}")),
    )
}

/// For OpenSSH older than 7.6 (no `accept-new`): pins the upstream's host key with ssh-keyscan
/// when known_hosts has no entry yet.
pub async fn pin_with_keyscan(home: &Home, upstream: &UpstreamUrl) -> std::io::Result<()> {
    let UpstreamUrl::Ssh { host, port, .. } = upstream else {
        return Ok(());
    };
    let kh = home.known_hosts();
    if tokio::fs::metadata(&kh)
        .await
        .map(|m| m.len() > 0)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let mut cmd = tokio::process::Command::new("ssh-keyscan");
    cmd.arg("-T").arg("15");
    if let Some(p) = port {
        cmd.arg("-p").arg(p.to_string());
    }
    let out = cmd.arg("--").arg(host).kill_on_drop(true).output().await?;
    if out.stdout.is_empty() {
        return Err(std::io::Error::other(format!(
            "ssh-keyscan found no host key for {host}"
        )));
    }
    tokio::fs::write(&kh, &out.stdout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ssh -G` makes of an option: the value it prints for `key`.
    fn ssh_reads(option: &str, key: &str) -> Option<String> {
        let out = std::process::Command::new("ssh")
            .args(["-G", "-o", option, "localhost"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")).map(str::to_owned))
    }

    #[test]
    fn option_paths_reach_ssh_whole() {
        for path in ["/tmp/mf node home/known_hosts", "/a\\b/\"q\" %d/kh"] {
            let opt = format!("UserKnownHostsFile={}", ssh_option_path(path, ""));
            assert_eq!(
                ssh_reads(&opt, "userknownhostsfile").as_deref(),
                Some(path),
                "{opt}"
            );
        }
    }

    #[test]
    fn control_path_reaches_ssh_whole() {
        let opt = format!("ControlPath={}", ssh_option_path("/tmp/a b%/cm-", "%C"));
        let read = ssh_reads(&opt, "controlpath").expect("ssh -G");
        assert!(read.starts_with("/tmp/a b%/cm-"), "{read}");
        assert_eq!(read.len(), "/tmp/a b%/cm-".len() + 40, "{read}");
    }

    #[test]
    fn quotes_paths() {
        let c = ssh_command(Path::new("/a b/k'ey"), Path::new("/kh"), (9, 2, 0));
        assert!(c.contains("-i '/a b/k'\\''ey'"), "{c}");
        assert!(c.contains("StrictHostKeyChecking=accept-new"));
        assert!(ssh_command(Path::new("/k"), Path::new("/kh"), (7, 2, 0))
            .contains("StrictHostKeyChecking=yes"));
    }
}
