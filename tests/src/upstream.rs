//! The upstream of a test: bare repositories under `<dir>/git/<PROJECT>/<repo>.git`, reachable as
//! `file://` and, once [`Upstream::start_sshd`] ran, through a real OpenSSH `sshd` on 127.0.0.1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::topology::Host;
use crate::{free_port, gitc, wait_for};

/// What to put in a generated repository.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Commits on main.
    pub commits: usize,
    /// Bytes of random (incompressible) content added per commit.
    pub blob_bytes: usize,
    /// Extra branches, each at some commit of main.
    pub branches: usize,
    /// Annotated tags.
    pub tags: usize,
}

impl Shape {
    /// The benchmarks' repository: 64 commits of 1 MiB random data (a ≥ 64 MB pack), 8 branches,
    /// 8 annotated tags.
    pub fn bench() -> Self {
        Self {
            commits: 64,
            blob_bytes: 1 << 20,
            branches: 8,
            tags: 8,
        }
    }

    /// One commit of 100 bytes on main, nothing else.
    pub fn one_commit() -> Self {
        Self {
            commits: 1,
            blob_bytes: 100,
            branches: 0,
            tags: 0,
        }
    }

    /// A small repository: 20 commits, 3 branches, 2 tags.
    pub fn small() -> Self {
        Self {
            commits: 20,
            blob_bytes: 200,
            branches: 3,
            tags: 2,
        }
    }
}

/// A test upstream.
pub struct Upstream {
    dir: TempDir,
    sshd: Option<Child>,
    ssh_port: u16,
    host: Host,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Upstream {
    /// An upstream with no repositories and no sshd yet.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mf-upstream-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("git")).expect("mkdir git");
        Self {
            dir,
            sshd: None,
            ssh_port: 0,
            host: Host::loopback(),
        }
    }

    /// Base directory of the repositories.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("git")
    }

    /// Path of one repository.
    pub fn repo(&self, project: &str, repo: &str) -> PathBuf {
        self.root().join(project).join(format!("{repo}.git"))
    }

    /// `file://` base URL.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.root().display())
    }

    /// `ssh://user@<address>:port` of the running sshd, for absolute paths of this machine.
    pub fn sshd_authority(&self) -> String {
        assert!(self.sshd.is_some(), "start_sshd first");
        format!("ssh://{}@{}:{}", whoami(), self.host.ip, self.ssh_port)
    }

    /// The port sshd listens on (after [`Self::start_sshd`]).
    pub fn sshd_port(&self) -> u16 {
        self.ssh_port
    }

    /// Stops sshd and ends its connections: the upstream becomes unreachable.
    pub fn stop_sshd(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            // Its connections too, as when the server goes down (a connection a node keeps open
            // would otherwise go on serving it). Stopped first, so that no connection it accepts
            // meanwhile gets a process after its children were killed (the likely cause of a CI
            // failure: the node's shared connection, opened in that moment, kept serving).
            let pid = c.id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &pid])
                .status();
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-P", &pid])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts sshd again after [`Self::stop_sshd`], with the same port and keys.
    pub fn restart_sshd(&mut self) {
        self.launch_sshd();
    }

    /// `ssh://` base URL (after [`Self::start_sshd`]).
    pub fn ssh_url(&self) -> String {
        assert!(self.sshd.is_some(), "start_sshd first");
        format!(
            "ssh://{}@{}:{}{}",
            whoami(),
            self.host.ip,
            self.ssh_port,
            self.root().display()
        )
    }

    /// Creates each `PROJECT/repo` of `names` with the same history (`shape`): made once by git,
    /// copied for the others (thousands of repositories in seconds).
    pub fn create_copies(&self, names: &[String], shape: &Shape) {
        let Some((first, rest)) = names.split_first() else {
            return;
        };
        let (p, r) = first.split_once('/').expect("PROJECT/repo");
        let made = self.create(p, r, shape);
        for name in rest {
            let (p, r) = name.split_once('/').expect("PROJECT/repo");
            let dest = self.repo(p, r);
            std::fs::create_dir_all(dest.parent().expect("project dir")).expect("mkdir");
            let out = Command::new("cp")
                .arg("-r")
                .arg(&made)
                .arg(&dest)
                .output()
                .expect("cp");
            assert!(out.status.success(), "cp: {out:?}");
        }
    }

    /// Creates `PROJECT/repo.git` with generated history; returns its path.
    pub fn create(&self, project: &str, repo: &str, shape: &Shape) -> PathBuf {
        let path = self.repo(project, repo);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir project");
        gitc::run(
            None,
            &["init", "--bare", "-q", path.to_str().expect("utf8")],
            &[],
        );
        gitc::run(
            Some(&path),
            &["symbolic-ref", "HEAD", "refs/heads/main"],
            &[],
        );
        if shape.commits == 0 {
            return path;
        }
        let seed = 0x9e37_79b9_7f4a_7c15 ^ (shape.commits as u64) << 7 ^ shape.blob_bytes as u64;
        fast_import(&path, |w| {
            random_commits(
                w,
                shape.commits,
                shape.blob_bytes,
                seed,
                None,
                1_700_000_000,
            )?;
            let at = |k: usize| 2 * (1 + (k * 7919) % shape.commits) + 1;
            for b in 0..shape.branches {
                write!(w, "reset refs/heads/branch-{b}\nfrom :{}\n\n", at(b))?;
            }
            for t in 0..shape.tags {
                let msg = format!("release {t}\n");
                write!(
                    w,
                    "tag v{t}.0\nfrom :{}\ntagger Test <test@example.com> 1700000000 +0000\ndata {}\n{msg}\n",
                    at(t + 3),
                    msg.len()
                )?;
            }
            Ok(())
        });
        path
    }

    /// Appends `commits` commits of `blob_bytes` random bytes each on main.
    pub fn grow(&self, project: &str, repo: &str, commits: usize, blob_bytes: usize, seed: u64) {
        fast_import(&self.repo(project, repo), |w| {
            random_commits(
                w,
                commits,
                blob_bytes,
                seed,
                Some("refs/heads/main^0"),
                1_800_000_000,
            )
        });
    }

    /// Adds a commit on `branch` (created from main if missing); returns the new commit's id.
    pub fn commit(&self, project: &str, repo: &str, branch: &str, message: &str) -> String {
        let path = self.repo(project, repo);
        let tip_ref = format!("refs/heads/{branch}");
        let tip = gitc::try_run(Some(&path), &["rev-parse", "--verify", "-q", &tip_ref], &[]);
        let parent = if tip.status.success() {
            String::from_utf8_lossy(&tip.stdout).trim().to_owned()
        } else {
            gitc::run(Some(&path), &["rev-parse", "refs/heads/main"], &[])
                .trim()
                .to_owned()
        };
        let tree = gitc::run(
            Some(&path),
            &["rev-parse", &format!("{parent}^{{tree}}")],
            &[],
        );
        let new = gitc::run(
            Some(&path),
            &["commit-tree", tree.trim(), "-p", &parent, "-m", message],
            &[],
        );
        let new = new.trim().to_owned();
        gitc::run(Some(&path), &["update-ref", &tip_ref, &new], &[]);
        new
    }

    /// Starts sshd on 127.0.0.1 with its own host key and an empty authorized_keys.
    pub fn start_sshd(&mut self) {
        self.start_sshd_on(&Host::loopback());
    }

    /// Like [`Self::start_sshd`], on `host`'s address.
    pub fn start_sshd_on(&mut self, host: &Host) {
        self.host = host.clone();
        let d = self.dir.path().join("sshd");
        std::fs::create_dir_all(&d).expect("mkdir sshd");
        std::fs::create_dir_all("/run/sshd")
            .expect("mkdir /run/sshd (sshd privilege separation dir)");
        let key = d.join("host_ed25519");
        if !key.exists() {
            keygen(&key);
        }
        std::fs::write(d.join("authorized_keys"), "").expect("authorized_keys");
        // Sessions get a home of their own: bash sources ~/.bashrc for commands run by sshd,
        // and the machine's (pyenv's rehash lock, say) must not decide whether a fetch ends.
        let home = d.join("home");
        std::fs::create_dir_all(&home).expect("mkdir sshd home");
        self.ssh_port = free_port();
        let config = format!(
            "Port {port}\nListenAddress {ip}\nHostKey {key}\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             AllowTcpForwarding no\nX11Forwarding no\nLogLevel VERBOSE\nMaxStartups 100\n\
             SetEnv HOME={home}\n",
            port = self.ssh_port,
            home = home.display(),
            ip = host.ip,
            key = key.display(),
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        self.launch_sshd();
    }

    fn launch_sshd(&mut self) {
        let d = self.dir.path().join("sshd");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("sshd.log"))
            .expect("sshd log");
        let child = self
            .host
            .command("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd (install openssh-server)");
        self.sshd = Some(child);
        let (ip, port) = (self.host.ip, self.ssh_port);
        wait_for("sshd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect((ip, port)).ok()
        });
    }

    /// Replaces sshd's host key (and restarts it): what a changed upstream host looks like.
    pub fn change_host_key(&mut self) {
        self.stop_sshd();
        let key = self.dir.path().join("sshd").join("host_ed25519");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        keygen(&key);
        self.launch_sshd();
    }

    /// Grants `public_key` (OpenSSH one-line) access.
    pub fn authorize(&self, public_key: &str) {
        let p = self.dir.path().join("sshd").join("authorized_keys");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(p)
            .expect("authorized_keys");
        writeln!(f, "{}", public_key.trim()).expect("write authorized_keys");
    }

    /// Restricts every key granted so far to git's own commands (`git-shell`, as many plain
    /// OpenSSH upstreams do): a connection authenticated afterwards can run no shell command.
    pub fn restrict_to_git_shell(&self) {
        let p = self.dir.path().join("sshd").join("authorized_keys");
        let keys = std::fs::read_to_string(&p).expect("authorized_keys");
        let restricted: String = keys
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\" {l}\n"))
            .collect();
        std::fs::write(p, restricted).expect("write authorized_keys");
    }

    /// How many SSH sessions sshd accepted so far.
    pub fn accepted_sessions(&self) -> usize {
        self.sshd_log_lines("Accepted publickey")
    }

    /// Commands run over SSH so far (one per fetch, also over a shared connection), as sshd
    /// logged them. With three members fetching at once, the scale benchmark saw a third as many
    /// as the members counted fetches (not explained yet): read it as a lower bound.
    pub fn command_sessions(&self) -> usize {
        self.sshd_log_lines("Starting session: command")
    }

    fn sshd_log_lines(&self, what: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("sshd").join("sshd.log"))
            .unwrap_or_default();
        log.lines().filter(|l| l.contains(what)).count()
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop_sshd();
    }
}

/// Runs `git fast-import` on `repo`, feeding it what `write` writes.
fn fast_import(repo: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
    let mut child = gitc::cmd(Some(repo))
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn fast-import");
    {
        let mut w = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
        write(&mut w).expect("write to fast-import");
        w.flush().expect("flush fast-import");
    }
    assert!(
        child.wait().expect("fast-import").success(),
        "fast-import failed"
    );
}

/// Writes `commits` commits on main, each adding `blob_bytes` of random (incompressible) bytes,
/// with marks `:2i` (blob) and `:2i+1` (commit); the first commit's parent is `from`, if any.
fn random_commits(
    w: &mut dyn Write,
    commits: usize,
    blob_bytes: usize,
    seed: u64,
    from: Option<&str>,
    time: usize,
) -> std::io::Result<()> {
    let mut rng = Rng(seed | 1);
    for i in 1..=commits {
        let mut data = vec![0u8; blob_bytes];
        for chunk in data.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        write!(w, "blob\nmark :{}\ndata {}\n", 2 * i, data.len())?;
        w.write_all(&data)?;
        let msg = format!("commit {seed:x} {i}\n");
        write!(
            w,
            "\ncommit refs/heads/main\nmark :{}\ncommitter Test <test@example.com> {} +0000\ndata {}\n{msg}",
            2 * i + 1,
            time + i,
            msg.len()
        )?;
        match (i, from) {
            (1, Some(f)) => writeln!(w, "from {f}")?,
            (1, None) => {}
            _ => writeln!(w, "from :{}", 2 * i - 1)?,
        }
        writeln!(w, "M 100644 :{} data/{seed:x}-{}.bin\n", 2 * i, i % 97)?;
    }
    Ok(())
}

/// Creates an Ed25519 key pair at `path` with ssh-keygen.
pub fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen")
        .success();
    assert!(ok, "ssh-keygen failed");
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
