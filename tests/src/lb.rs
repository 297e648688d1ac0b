//! The load balancer as a real `mirrorfarm lb` process, and a real TLS client (curl) to talk to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::node::Node;
use crate::process::Service;
use crate::topology::Host;
use crate::{free_port, wait_for};

/// A running load balancer.
pub struct Lb {
    process: Service,
    home: TempDir,
    /// HTTPS port.
    pub https: u16,
    /// SSH port.
    pub ssh: u16,
    /// Admin port.
    pub admin: u16,
    host: Host,
    hostname: String,
}

/// The `lb.backends` value for these nodes.
pub fn backends(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("{}:{}:{}", n.host().ip, n.http, n.ssh))
        .collect::<Vec<_>>()
        .join(",")
}

impl Lb {
    /// Writes `mirrorfarm-lb.properties` (hostname localhost, free ports, `extra` appended) and
    /// starts the LB; does not wait for backends.
    pub fn start(backends: &str, extra: &str) -> Self {
        Self::start_on(&Host::loopback(), "localhost", backends, extra)
    }

    /// Like [`Self::start`], on `host` (every listener on its address) under `hostname` (its
    /// certificate's name; clients resolve it to `host`).
    pub fn start_on(host: &Host, hostname: &str, backends: &str, extra: &str) -> Self {
        let ip = host.ip;
        let home = tempfile::Builder::new()
            .prefix("mf-lb-")
            .tempdir()
            .expect("tempdir");
        // A test that must know the HTTPS port before the LB starts (a member's setup.baseUrl
        // names it) gives it in `extra`.
        let given = extra
            .lines()
            .find_map(|l| l.strip_prefix("lb.https.port="))
            .and_then(|p| p.trim().parse().ok());
        let extra: String = extra
            .lines()
            .filter(|l| !l.starts_with("lb.https.port="))
            .map(|l| format!("{l}\n"))
            .collect();
        let (https, ssh, admin) = (given.unwrap_or_else(free_port), free_port(), free_port());
        // Two workers unless the test (or benchmark) says otherwise.
        let threads = if extra.contains("lb.threads=") {
            ""
        } else {
            "lb.threads=2\n"
        };
        let props = format!(
            "lb.hostname={hostname}\nlb.https.address={ip}\nlb.https.port={https}\nlb.ssh.address={ip}\n\
             lb.ssh.port={ssh}\nlb.admin.address={ip}\nlb.admin.port={admin}\nlb.backends={backends}\nlb.health.interval=300\n\
             lb.health.fall=2\nlb.health.rise=1\nlb.drain.grace=5\n{threads}{extra}"
        );
        std::fs::write(home.path().join("mirrorfarm-lb.properties"), props).expect("write");
        let mut process = Service::new("lb", home.path());
        process.host = host.clone();
        let mut lb = Self {
            process,
            home,
            https,
            ssh,
            admin,
            host: host.clone(),
            hostname: hostname.to_owned(),
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
        self.process.spawn(self.admin);
    }

    /// What the LB printed.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The admin status document.
    pub fn admin_status(&self) -> Value {
        let url = format!("http://{}:{}/status", self.host.ip, self.admin);
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

    /// `https://<hostname>:port/scm/P/r.git`.
    pub fn https_url(&self, project: &str, repo: &str) -> String {
        format!(
            "https://{}:{}/scm/{project}/{repo}.git",
            self.hostname, self.https
        )
    }

    /// `ssh://git@<hostname>:port/P/r.git`.
    pub fn ssh_url(&self, project: &str, repo: &str) -> String {
        format!(
            "ssh://git@{}:{}/{project}/{repo}.git",
            self.hostname, self.ssh
        )
    }

    /// `git [-c config…] clone -q` of `project/repo` through the LB into `dest`, the certificate
    /// verified; panics with git's output when it fails.
    pub fn clone_repo(&self, project: &str, repo: &str, dest: &Path, config: &[&str]) {
        let env = self.git_env();
        let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = self.https_url(project, repo);
        let mut args: Vec<&str> = config.iter().flat_map(|c| ["-c", c]).collect();
        args.extend(["clone", "-q", &url, dest.to_str().expect("utf8 path")]);
        crate::gitc::run(None, &args, &envs);
    }

    /// Environment for git clients over HTTPS (verifies the certificate with [`Self::ca`]).
    pub fn git_env(&self) -> Vec<(&'static str, String)> {
        vec![("GIT_SSL_CAINFO", self.ca().display().to_string())]
    }

    /// `curl` to the LB with the certificate verified; `args` go before the URL.
    pub fn curl(&self, path: &str, args: &[&str]) -> Output {
        self.curl_with_ca(&self.ca(), path, args)
    }

    /// `curl` to the LB verifying its certificate with the CA file `ca`.
    pub fn curl_with_ca(&self, ca: &Path, path: &str, args: &[&str]) -> Output {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(ca)
            .arg("--resolve")
            .arg(format!("{}:{}:{}", self.hostname, self.https, self.host.ip))
            .args(args)
            .arg(format!("https://{}:{}{path}", self.hostname, self.https))
            .output()
            .expect("run curl")
    }

    /// SIGTERM and wait (bounded); returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.process.stop()
    }

    /// Process ID while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}
