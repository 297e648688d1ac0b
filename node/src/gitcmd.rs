//! Running the system `git` (and `ssh -V`) from async code: tokio processes, a clean environment,
//! bounded captured output, a time limit, and the minimum-version checks made at start.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Oldest git the node works with.
pub const MIN_GIT: (u32, u32, u32) = (2, 11, 1);
/// Oldest OpenSSH client the node works with.
pub const MIN_OPENSSH: (u32, u32, u32) = (7, 2, 0);
/// Captured stdout/stderr beyond this is dropped (the command is not streaming data to us).
const MAX_CAPTURE: usize = 64 * 1024 * 1024;

/// A failed git invocation.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// Program name.
        program: String,
        /// Cause.
        source: std::io::Error,
    },
    /// git exited non-zero.
    #[error("git {args} failed ({status}): {stderr}")]
    Status {
        /// The arguments, for the message.
        args: String,
        /// Exit status.
        status: String,
        /// What git printed on stderr.
        stderr: String,
    },
    /// The time limit passed; the process was killed.
    #[error("git {args} took longer than {secs} s and was stopped")]
    Timeout {
        /// The arguments, for the message.
        args: String,
        /// The limit.
        secs: u64,
    },
    /// A version is too old or could not be read.
    #[error("{0}")]
    Version(String),
}

/// Output of a successful run.
#[derive(Debug)]
pub struct Output {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

/// A `git` command with the environment every node invocation uses.
pub fn git() -> Command {
    with_git_env(Command::new("git"))
}

/// What every git the node starts finds in its environment.
const GIT_ENV: [(&str, &str); 4] = [
    ("LC_ALL", "C"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_ASKPASS", "/bin/false"),
    ("SSH_ASKPASS", "/bin/false"),
];

/// What no git the node starts may find there: TLS settings come from the node's own `-c`
/// options, never from the environment.
const NOT_FOR_GIT: [&str; 8] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_PROTOCOL",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSL_CERT",
    "GIT_SSL_KEY",
    "GIT_SSL_NO_VERIFY",
];

/// Set once [`settle_environment`] has made the process's environment the one every git gets.
static SETTLED: AtomicBool = AtomicBool::new(false);

/// Makes the node's own environment the one every git it starts gets ([`GIT_ENV`] set,
/// [`NOT_FOR_GIT`] removed), once, at start: a command that sets or removes a variable of its
/// own makes the standard library copy the whole environment for it, on every start of a
/// process; one that inherits it as it is does not. It changes the process's environment: call
/// it before any other thread runs.
pub fn settle_environment() {
    for (k, v) in GIT_ENV {
        std::env::set_var(k, v);
    }
    for k in NOT_FOR_GIT {
        std::env::remove_var(k);
    }
    SETTLED.store(true, Ordering::Release);
}

/// `cmd` with the environment every git the node starts gets (the process's own once settled).
fn with_git_env(mut c: Command) -> Command {
    if !SETTLED.load(Ordering::Acquire) {
        for (k, v) in GIT_ENV {
            c.env(k, v);
        }
        for k in NOT_FOR_GIT {
            c.env_remove(k);
        }
    }
    c.stdin(Stdio::null()).kill_on_drop(true);
    c
}

/// Runs the git commands `steps` (each its arguments) one after the other in `dir`, as one
/// process of this node's (a shell starting each git in turn, stopping at the first failure):
/// starting a process costs the node more than small steps cost git. Arguments are plain words
/// (no quoting is needed or done); within `limit` for all.
pub async fn run_in_turn(
    dir: &Path,
    steps: &[&[&str]],
    limit: Duration,
) -> Result<Output, GitError> {
    let plain = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-=._,:/".contains(&b))
    };
    if let Some(bad) = steps.iter().flat_map(|s| s.iter()).find(|a| !plain(a)) {
        return Err(GitError::Version(format!(
            "not a plain word for the shell: {bad:?}"
        )));
    }
    let script = steps
        .iter()
        .map(|s| format!("git {}", s.join(" ")))
        .collect::<Vec<_>>()
        .join(" && ");
    let label = steps
        .iter()
        .map(|s| s.first().copied().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" + ");
    let mut cmd = with_git_env(Command::new("/bin/sh"));
    // A group of its own: stopped (time limit, shutdown), the shell takes the git it is running
    // with it.
    cmd.arg("-c")
        .arg(script)
        .current_dir(dir)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| GitError::Spawn {
        program: "/bin/sh".into(),
        source,
    })?;
    let mut group = Group(child.id());
    let res = collect(&mut child, &label, limit).await;
    if !matches!(res, Err(GitError::Timeout { .. })) {
        // The shell has exited, after the last git it started.
        group.0 = None;
    }
    res
}

/// Kills a process group when dropped, unless told it is gone (`.0 = None`).
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        let leader = self
            .0
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = leader {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Runs `git -C dir args…` with an optional stdin and a time limit; fails on non-zero exit.
pub async fn run<I, S>(
    dir: Option<&Path>,
    args: I,
    envs: &[(&str, String)],
    stdin: Option<Vec<u8>>,
    limit: Duration,
) -> Result<Output, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let label = args
        .iter()
        .take(2)
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = git();
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|source| GitError::Spawn {
        program: "git".into(),
        source,
    })?;
    if let (Some(mut w), Some(data)) = (child.stdin.take(), stdin) {
        // git may exit before reading everything; its exit status tells what happened.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = w.write_all(&data).await;
        });
    }
    collect(&mut child, &label, limit).await
}

/// Waits for `child` (stdout and stderr piped) within `limit`, capturing both (bounded); fails
/// on a non-zero exit. `label` names the command in errors.
pub async fn collect(
    child: &mut tokio::process::Child,
    label: &str,
    limit: Duration,
) -> Result<Output, GitError> {
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(GitError::Version(format!(
            "git {label}: output is not captured"
        )));
    };
    let work = async {
        let mut o = Vec::new();
        let mut e = Vec::new();
        let mut lim_o = (&mut out).take(MAX_CAPTURE as u64);
        let mut lim_e = (&mut err).take(MAX_CAPTURE as u64);
        let (ro, re) = tokio::join!(lim_o.read_to_end(&mut o), lim_e.read_to_end(&mut e));
        let _ = (ro, re);
        let status = child.wait().await;
        (status, o, e)
    };
    let (status, stdout, stderr) =
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| GitError::Timeout {
                args: label.to_owned(),
                secs: limit.as_secs(),
            })?;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let status = status.map_err(|source| GitError::Spawn {
        program: "git".into(),
        source,
    })?;
    if !status.success() {
        return Err(GitError::Status {
            args: label.to_owned(),
            status: status.to_string(),
            stderr: stderr.trim().to_owned(),
        });
    }
    Ok(Output { stdout, stderr })
}

/// Parses the first `a.b[.c]` version number found in `text`.
pub fn parse_version(text: &str, after: &str) -> Option<(u32, u32, u32)> {
    let rest = &text[text.find(after)? + after.len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut it = digits.split('.').map(|p| p.parse::<u32>().ok());
    let major = it.next()??;
    let minor = it.next().flatten().unwrap_or(0);
    let patch = it.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn fmt_v(v: (u32, u32, u32)) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

/// Checks the system git is new enough; returns its version.
pub async fn check_git() -> Result<(u32, u32, u32), GitError> {
    let out = run(None, ["--version"], &[], None, Duration::from_secs(30)).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = parse_version(&text, "git version ")
        .ok_or_else(|| GitError::Version(format!("cannot read the git version from {text:?}")))?;
    if v < MIN_GIT {
        return Err(GitError::Version(format!(
            "git {} is too old: mirrorfarm needs git {} or newer",
            fmt_v(v),
            fmt_v(MIN_GIT)
        )));
    }
    Ok(v)
}

/// Checks the system OpenSSH client is new enough; returns its version.
pub async fn check_openssh() -> Result<(u32, u32, u32), GitError> {
    let out = Command::new("ssh")
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| GitError::Spawn {
            program: "ssh (OpenSSH client)".into(),
            source,
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let v = parse_version(&text, "OpenSSH_").ok_or_else(|| {
        GitError::Version(format!("cannot read the OpenSSH version from {text:?}"))
    })?;
    if v < MIN_OPENSSH {
        return Err(GitError::Version(format!(
            "OpenSSH {} is too old: mirrorfarm needs OpenSSH {} or newer",
            fmt_v(v),
            fmt_v(MIN_OPENSSH)
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("git version 2.47.3\n", "git version "),
            Some((2, 47, 3))
        );
        assert_eq!(
            parse_version("git version 2.11.1.windows.1", "git version "),
            Some((2, 11, 1))
        );
        assert_eq!(
            parse_version("OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL", "OpenSSH_"),
            Some((9, 2, 0))
        );
        assert!(parse_version("OpenSSH_7.1p2", "OpenSSH_").is_some_and(|v| v < MIN_OPENSSH));
        assert!(parse_version("git version 2.11.0", "git version ").is_some_and(|v| v < MIN_GIT));
    }

    #[tokio::test]
    async fn steps_run_in_turn_and_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limit = Duration::from_secs(30);
        run_in_turn(
            dir.path(),
            &[
                &["init", "-q", "--bare", "r.git"],
                &["-C", "r.git", "config", "a.b", "c"],
            ],
            limit,
        )
        .await
        .expect("both steps");
        let r = dir.path().join("r.git");
        let out = run(Some(&r), ["config", "a.b"], &[], None, limit)
            .await
            .expect("set");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "c");
        // A failing step stops the rest, and its error names the steps.
        let e = run_in_turn(&r, &[&["no-such-command"], &["config", "a.b", "d"]], limit)
            .await
            .expect_err("a failing step");
        assert!(
            matches!(&e, GitError::Status { args, .. } if args == "no-such-command + config"),
            "{e}"
        );
        let out = run(Some(&r), ["config", "a.b"], &[], None, limit)
            .await
            .expect("kept");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "c");
        // Past its time limit, the git the shell runs is stopped with it.
        // (git's credential cache runs in the foreground until its socket has been idle 15 min.)
        let cache = dir.path().join("cache");
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&cache)
            .expect("socket directory");
        let socket = cache.join("socket");
        let socket = socket.to_str().expect("utf-8 path");
        let e = run_in_turn(
            dir.path(),
            &[&["version"], &["credential-cache--daemon", socket]],
            Duration::from_secs(1),
        )
        .await
        .expect_err("stopped");
        assert!(matches!(e, GitError::Timeout { .. }), "{e}");
        let running = || {
            std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
                .any(|c| c.windows(socket.len()).any(|w| w == socket.as_bytes()))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while running() {
            assert!(
                std::time::Instant::now() < deadline,
                "the git the shell ran outlived it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Nothing the shell would read as more than a word.
        let e = run_in_turn(&r, &[&["config", "a.b", "x;touch y"]], limit)
            .await
            .expect_err("refused");
        assert!(matches!(e, GitError::Version(_)), "{e}");
        assert!(!r.join("y").exists());
    }
}
