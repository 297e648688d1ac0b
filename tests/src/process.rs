//! A `mirrorfarm <role> --home DIR` process whose output goes to `DIR/process.log`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::topology::Host;
use crate::{bin, wait_for};

/// One service process (started, stopped and restarted on the same home).
pub struct Service {
    role: &'static str,
    home: PathBuf,
    child: Option<Child>,
    /// Another copy of the binary to run (e.g. one in a directory whose name has spaces).
    pub bin: Option<PathBuf>,
    /// The host it runs on.
    pub host: Host,
    /// Environment variables added to the process's.
    pub env: Vec<(String, String)>,
    /// Where the process's stderr goes (default: `process.log` in its home, with stdout).
    pub stderr: Option<PathBuf>,
}

impl Service {
    /// A `mirrorfarm role --home home` process, not started yet.
    pub fn new(role: &'static str, home: &Path) -> Self {
        Self {
            role,
            home: home.to_owned(),
            child: None,
            bin: None,
            host: Host::loopback(),
            env: Vec::new(),
            stderr: None,
        }
    }

    /// Starts it and waits until `ready_port` on its host accepts connections; panics with its
    /// log if it exits first.
    pub fn spawn(&mut self, ready_port: u16) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("process.log"))
            .expect("log file");
        let mut cmd = self.host.command(self.bin.clone().unwrap_or_else(bin));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg(self.role)
            .arg("--home")
            .arg(&self.home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"));
        match &self.stderr {
            Some(p) => cmd.stderr(std::fs::File::create(p).expect("stderr file")),
            None => cmd.stderr(log),
        };
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start mirrorfarm {}: {e}", self.role));
        self.child = Some(child);
        wait_for(
            &format!("mirrorfarm {} to listen", self.role),
            Duration::from_secs(30),
            || {
                if let Some(c) = self.child.as_mut() {
                    if let Ok(Some(st)) = c.try_wait() {
                        panic!("mirrorfarm {} exited with {st}: {}", self.role, self.log());
                    }
                }
                std::net::TcpStream::connect((self.host.ip, ready_port)).ok()
            },
        );
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("process.log")).unwrap_or_default()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait (bounded) for it to exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let st = wait_for(
            &format!("mirrorfarm {} to exit", self.role),
            Duration::from_secs(30),
            || c.try_wait().ok().flatten(),
        );
        st.code()
    }

    /// Process ID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}
