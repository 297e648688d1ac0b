//! A mirror node as a real `mirrorfarm node` process on a temporary home.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::process::Service;
use crate::topology::Host;
use crate::{bin, free_port, upstream::keygen, wait_for, wait_or_explain};

/// Where a node's home and binary live (defaults: a temporary `mf-node-*` home, the built binary).
#[derive(Debug, Default, Clone)]
pub struct Placement {
    /// Prefix of the temporary home's name (may hold spaces).
    pub home_prefix: Option<String>,
    /// The binary to run.
    pub bin: Option<PathBuf>,
    /// The directory the home is made in (default: the system's temporary directory).
    pub home_in: Option<PathBuf>,
    /// The host it runs on (default: the test's own loopback).
    pub host: Option<Host>,
    /// Environment variables added to the process's (e.g. a `faketime` preload).
    pub env: Vec<(String, String)>,
    /// Where its stderr goes (default: `process.log` in its home).
    pub stderr: Option<PathBuf>,
}

/// A running (or stopped) node.
pub struct Node {
    process: Service,
    home: TempDir,
    /// HTTP port on its host.
    pub http: u16,
    /// SSH port on its host.
    pub ssh: u16,
    client_key: PathBuf,
    host: Host,
    /// A client for the admin routes (with the admin token, for a node the test reaches from
    /// another host).
    admin: reqwest::blocking::Client,
}

/// An upstream holding a small `P/r` and an anonymous node mirroring it over `file://` with
/// `extra` properties, synchronized.
pub fn serving_p_r(extra: &str) -> (crate::upstream::Upstream, Node) {
    let up = crate::upstream::Upstream::new();
    up.create("P", "r", &crate::upstream::Shape::small());
    let node = Node::start(
        &up.file_url(),
        &format!("mirror.repos=P/r\nmirror.access=anonymous\n{extra}"),
    );
    node.wait_state("SYNCHRONIZED", Duration::from_secs(60));
    (up, node)
}

/// The properties every test node gets, for `upstream` and `repos`/`projects` lines in `extra`.
pub fn properties(upstream: &str, http: u16, ssh: u16, extra: &str) -> String {
    properties_at(&Host::loopback(), upstream, http, ssh, extra)
}

/// [`properties`] for a node listening on `host`'s address.
pub fn properties_at(host: &Host, upstream: &str, http: u16, ssh: u16, extra: &str) -> String {
    let ip = host.ip;
    // A farm's members share one base URL: `extra` may set its own.
    let base = if extra.contains("setup.baseUrl=") {
        String::new()
    } else {
        format!("setup.baseUrl=http://{ip}:{http}\n")
    };
    format!(
        "application.mode=mirror\nsetup.displayName=Test mirror\n{base}\
         plugin.mirroring.upstream.url={upstream}\nserver.address={ip}\nserver.port={http}\n\
         plugin.ssh.address={ip}\nplugin.ssh.port={ssh}\n{extra}"
    )
}

/// A client sending `Authorization: Bearer <token>` when there is a token.
fn admin_client(token: Option<&str>) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let v = format!("Bearer {t}").parse().expect("header value");
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::blocking::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

impl Node {
    /// Writes the home's properties (`extra` is appended) and starts the node.
    pub fn start(upstream: &str, extra: &str) -> Self {
        Self::start_placed(upstream, extra, &Placement::default())
    }

    /// Like [`Self::start`], with the home, binary, host and environment `placement` says.
    pub fn start_placed(upstream: &str, extra: &str, placement: &Placement) -> Self {
        let mut builder = tempfile::Builder::new();
        builder.prefix(placement.home_prefix.as_deref().unwrap_or("mf-node-"));
        let home = match &placement.home_in {
            Some(dir) => builder.tempdir_in(dir),
            None => builder.tempdir(),
        }
        .expect("tempdir");
        let (http, ssh) = (free_port(), free_port());
        let host = placement.host.clone().unwrap_or_default();
        // Reached from another host, the test is an admin by the token, as monitoring would be.
        let admin_token = host.netns.is_some().then(|| {
            let token = format!("test-admin-token-{}-{http}", std::process::id());
            std::fs::write(home.path().join("admin.token"), &token).expect("write admin.token");
            token
        });
        let admin = if admin_token.is_some() {
            "mirror.admin.tokenFile=admin.token\n"
        } else {
            ""
        };
        std::fs::write(
            home.path().join("mirrorfarm.properties"),
            properties_at(&host, upstream, http, ssh, &format!("{admin}{extra}")),
        )
        .expect("write properties");
        let client_key = home.path().join("client_ed25519");
        keygen(&client_key);
        let mut process = Service::new("node", home.path());
        process.bin = placement.bin.clone();
        process.host = host.clone();
        process.env = placement.env.clone();
        process.stderr = placement.stderr.clone();
        let mut n = Self {
            process,
            home,
            http,
            ssh,
            client_key,
            host,
            admin: admin_client(admin_token.as_deref()),
        };
        n.spawn();
        n
    }

    /// The host it runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Sets `key` in the environment of the node's next start (replacing an earlier value).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.process.env.retain(|(k, _)| k != key);
        self.process.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the process again (after [`Self::kill9`] or [`Self::stop`]).
    pub fn spawn(&mut self) {
        self.process.spawn(self.http);
    }

    /// An HTTP client for the node's admin routes (with the admin token when it has one).
    pub fn admin_client(&self) -> reqwest::blocking::Client {
        self.admin.clone()
    }

    /// The node's stdout/stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The status document (or why it cannot be had) and the last `lines` lines of the log.
    pub fn explain(&self, lines: usize) -> String {
        let url = format!("http://{}:{}/status", self.host.ip, self.http);
        let status = self
            .admin_client()
            .get(&url)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| format!("(no status: {e})"));
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        let children = self
            .pid()
            .map(|pid| {
                let out = Command::new("ps")
                    .args(["-o", "pid,etimes,args", "--ppid"])
                    .arg(pid.to_string())
                    .output();
                out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        format!(
            "node :{} status: {status}\nchild processes:\n{children}log tail:\n{tail}",
            self.http
        )
    }

    /// GET /status as JSON.
    pub fn status(&self) -> Value {
        self.get_json("/status")
    }

    /// GET a path as JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let url = format!("http://{}:{}{path}", self.host.ip, self.http);
        self.admin_client()
            .get(&url)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// Waits until the node's state is `state`.
    pub fn wait_state(&self, state: &str, limit: Duration) -> Value {
        wait_or_explain(
            &format!("node state {state}"),
            limit,
            || {
                let s = self.status();
                (s["state"] == state).then_some(s)
            },
            || self.explain(60),
        )
    }

    /// A node of an ssh:// upstream that does not know its key yet: `up` grants the key, the
    /// node syncs everything and is SYNCHRONIZED.
    pub fn authorize_and_sync(&self, up: &crate::upstream::Upstream, limit: Duration) {
        let s = self.wait_state("AWAITING_AUTHORIZATION", limit);
        up.authorize(s["publicKey"].as_str().expect("publicKey"));
        assert_eq!(self.trigger(None), 202);
        self.wait_synchronized(limit);
    }

    /// Waits until the node is SYNCHRONIZED and none of its repositories is syncing: SYNCHRONIZED comes at the flips, while the record of each sync (its
    /// result's count, duration, size on disk) is complete only when the sync stops running,
    /// after the repository's maintenance.
    pub fn wait_synchronized(&self, limit: Duration) -> Value {
        wait_or_explain(
            "node state SYNCHRONIZED, no sync running",
            limit,
            || {
                let s = self.status();
                (s["state"] == "SYNCHRONIZED" && self.no_sync_running()).then_some(s)
            },
            || self.explain(60),
        )
    }

    /// Whether none of the node's repositories is syncing now (all pages of
    /// `/rest/mirroring/latest/repos`).
    pub fn no_sync_running(&self) -> bool {
        let mut start = 0;
        loop {
            let p = self.get_json(&format!(
                "/rest/mirroring/latest/repos?start={start}&limit=1000"
            ));
            let Some(values) = p["values"].as_array() else {
                return false;
            };
            if values.iter().any(|r| r["syncing"] != false) {
                return false;
            }
            match p["nextPageStart"].as_u64() {
                Some(next) if p["isLastPage"] == false => start = next as usize,
                _ => return true,
            }
        }
    }

    /// The status entry of one repository.
    pub fn repo_status(&self, project: &str, repo: &str) -> Option<Value> {
        let s = self.status();
        s["repos"]
            .as_array()?
            .iter()
            .find(|r| r["project"] == project && r["repo"] == repo)
            .cloned()
    }

    /// Waits until a repository's generation is at least `generation` and no sync is running.
    pub fn wait_generation(
        &self,
        project: &str,
        repo: &str,
        generation: u64,
        limit: Duration,
    ) -> Value {
        wait_for(
            &format!("{project}/{repo} generation {generation}"),
            limit,
            || {
                let r = self.repo_status(project, repo)?;
                (r["generation"].as_u64()? >= generation && r["syncing"] == false).then_some(r)
            },
        )
    }

    /// The node's shared SSH connections to the upstream: OpenSSH masters on its control
    /// socket (`mirror.sync.sshPersist`).
    pub fn shared_ssh_connections(&self) -> usize {
        let out = std::process::Command::new("pgrep")
            .arg("-f")
            .arg(format!("{}/ssh/cm-", self.home().display()))
            .output()
            .expect("run pgrep (install procps)");
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// POST /rest/mirroring/latest/sync for one repository (or all with `None`); returns the status code.
    pub fn trigger(&self, repo: Option<(&str, &str)>) -> u16 {
        let url = format!(
            "http://{}:{}/rest/mirroring/latest/sync",
            self.host.ip, self.http
        );
        let c = self.admin_client();
        let req = match repo {
            Some((p, r)) => c
                .post(&url)
                .json(&serde_json::json!({"project": p, "repo": r})),
            None => c.post(&url),
        };
        req.send().expect("POST sync").status().as_u16()
    }

    /// Sends `n` triggers for one repository at once (threads released together, one client),
    /// so they land within a few milliseconds; returns their status codes.
    pub fn trigger_together(&self, project: &str, repo: &str, n: usize) -> Vec<u16> {
        let url = format!(
            "http://{}:{}/rest/mirroring/latest/sync",
            self.host.ip, self.http
        );
        let c = self.admin_client();
        let body = serde_json::json!({"project": project, "repo": repo});
        let gate = std::sync::Barrier::new(n);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| {
                        gate.wait();
                        c.post(&url)
                            .json(&body)
                            .send()
                            .expect("POST sync")
                            .status()
                            .as_u16()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("trigger thread"))
                .collect()
        })
    }

    /// `http://<address>:<port>`: where the node's routes are.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host.ip, self.http)
    }

    /// One sample of the node's `/metrics` (`name` with labels `want`; 0 when absent).
    pub fn metric(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        let text = self
            .admin_client()
            .get(format!("{}/metrics", self.base_url()))
            .send()
            .and_then(|r| r.text())
            .expect("GET /metrics");
        crate::prom::value(&crate::prom::parse(&text), name, want)
    }

    /// `http://…/scm/P/r.git`.
    pub fn http_url(&self, project: &str, repo: &str) -> String {
        format!(
            "http://{}:{}/scm/{project}/{repo}.git",
            self.host.ip, self.http
        )
    }

    /// The HTTP status of a repository's ref advertisement here (0: no answer).
    pub fn info_refs_status(&self, project: &str, repo: &str) -> u16 {
        reqwest::blocking::get(format!(
            "{}/info/refs?service=git-upload-pack",
            self.http_url(project, repo)
        ))
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
    }

    /// `ssh://git@…:port/P/r.git`.
    pub fn ssh_url(&self, project: &str, repo: &str) -> String {
        format!(
            "ssh://git@{}:{}/{project}/{repo}.git",
            self.host.ip, self.ssh
        )
    }

    /// `GIT_SSH_COMMAND` for clients of this node (a throwaway client key; host key not checked).
    pub fn git_ssh(&self) -> String {
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
            self.client_key.display()
        )
    }

    /// The client private key [`Self::git_ssh`] uses (its `.pub` is beside it).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The farm's public key as shown on /status.
    pub fn public_key(&self) -> String {
        self.status()["publicKey"]
            .as_str()
            .expect("publicKey")
            .to_owned()
    }

    /// The node's bare mirror of a repository.
    pub fn mirror_path(&self, project: &str, repo: &str) -> PathBuf {
        self.home
            .path()
            .join("repos")
            .join(project)
            .join(format!("{repo}.git"))
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM, and wait (bounded) for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.process.stop()
    }

    /// Process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

/// Runs `mirrorfarm node --home DIR` expecting it to exit; returns (code, stderr).
pub fn run_expecting_exit(home: &Path, limit: Duration) -> (Option<i32>, String) {
    let mut c = Command::new(bin())
        .arg("node")
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mirrorfarm");
    let st = wait_for("mirrorfarm to exit", limit, || c.try_wait().ok().flatten());
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (st.code(), err)
}
