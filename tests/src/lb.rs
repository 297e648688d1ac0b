//! The load balancer as a real `mirrorfarm lb` process, and a real TLS client (curl) to talk to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::node::Node;
use crate::{bin, free_port, wait_for};

/// A running load balancer.
pub struct Lb {
    home: TempDir,
    child: Option<Child>,
    /// HTTPS port.
    pub https: u16,
    /// SSH port.
    pub ssh: u16,
    /// Admin port.
    pub admin: u16,
}

/// The `lb.backends` value for these nodes.
pub fn backends(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}:{}", n.http, n.ssh))
        .collect::<Vec<_>>()
        .join(",")
}

impl Lb {
    /// Writes `mirrorfarm-lb.properties` (hostname localhost, free ports, `extra` appended) and
    /// starts the LB; does not wait for backends.
    pub fn start(backends: &str, extra: &str) -> Self {
        let home = tempfile::Builder::new()
            .prefix("mf-lb-")
            .tempdir()
            .expect("tempdir");
        let (https, ssh, admin) = (free_port(), free_port(), free_port());
        let props = format!(
            "lb.hostname=localhost\nlb.https.address=127.0.0.1\nlb.https.port={https}\nlb.ssh.address=127.0.0.1\n\
             lb.ssh.port={ssh}\nlb.admin.port={admin}\nlb.backends={backends}\nlb.health.interval=300\n\
             lb.health.fall=2\nlb.health.rise=1\nlb.drain.grace=5\nlb.threads=2\n{extra}"
        );
        std::fs::write(home.path().join("mirrorfarm-lb.properties"), props).expect("write");
        let mut lb = Self {
            home,
            child: None,
            https,
            ssh,
            admin,
        };
        lb.spawn();
        lb
    }

    /// The LB's home.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Starts the process (again).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.path().join("process.log"))
            .expect("log");
        let child = Command::new(bin())
            .arg("lb")
            .arg("--home")
            .arg(self.home.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start mirrorfarm lb");
        self.child = Some(child);
        let port = self.admin;
        wait_for("the LB's admin listener", Duration::from_secs(30), || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("lb exited with {st}: {}", self.log());
                }
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// What the LB printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("process.log")).unwrap_or_default()
    }

    /// The admin status document.
    pub fn admin_status(&self) -> Value {
        let url = format!("http://127.0.0.1:{}/status", self.admin);
        reqwest::blocking::get(&url)
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// Waits until `n` backends are in rotation.
    pub fn wait_healthy(&self, n: u64, limit: Duration) {
        wait_for(&format!("{n} healthy backends"), limit, || {
            (self.admin_status()["healthyBackends"].as_u64() == Some(n)).then_some(())
        });
    }

    /// The CA file that verifies the LB's (self-signed) certificate.
    pub fn ca(&self) -> PathBuf {
        self.home.path().join("tls").join("cert.pem")
    }

    /// `https://localhost:port/scm/P/r.git`.
    pub fn https_url(&self, project: &str, repo: &str) -> String {
        format!("https://localhost:{}/scm/{project}/{repo}.git", self.https)
    }

    /// `ssh://git@localhost:port/P/r.git`.
    pub fn ssh_url(&self, project: &str, repo: &str) -> String {
        format!("ssh://git@localhost:{}/{project}/{repo}.git", self.ssh)
    }

    /// Environment for git clients over HTTPS (verifies the certificate with [`Self::ca`]).
    pub fn git_env(&self) -> Vec<(&'static str, String)> {
        vec![("GIT_SSL_CAINFO", self.ca().display().to_string())]
    }

    /// `curl` to the LB with the certificate verified; `args` go before the URL.
    pub fn curl(&self, path: &str, args: &[&str]) -> Output {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(self.ca())
            .args(args)
            .arg(format!("https://localhost:{}{path}", self.https))
            .output()
            .expect("run curl")
    }

    /// SIGTERM and wait (bounded); returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let st = wait_for("the LB to exit", Duration::from_secs(30), || {
            c.try_wait().ok().flatten()
        });
        st.code()
    }

    /// Process ID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
