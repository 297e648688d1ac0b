//! Git clients looping against one HTTPS URL until stopped — `ls-remote`, shallow clones and
//! fetches into a clone of their own, in turn — counting what succeeded and keeping what failed
//! (any non-zero exit, with its stderr). For fault tests and soak runs through the LB.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::topology::Host;
use crate::{gitc, wait_for};

/// Running clients.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Traffic {
    /// Starts `clients` clients against `url`, verifying its certificate with `ca`.
    pub fn start(url: &str, ca: &Path, clients: usize) -> Self {
        Self::start_on(&Host::loopback(), url, ca, clients)
    }

    /// Like [`Self::start`], the clients running on `host`.
    pub fn start_on(host: &Host, url: &str, ca: &Path, clients: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|c| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                let (url, ca) = (url.to_owned(), ca.display().to_string());
                let host = host.clone();
                let shallow = dir.path().join(format!("shallow{c}"));
                let kept = dir.path().join(format!("kept{c}"));
                std::thread::spawn(move || {
                    let env = [("GIT_SSL_CAINFO", ca.as_str())];
                    let kept = kept.to_str().expect("utf8").to_owned();
                    let shallow = shallow.to_str().expect("utf8").to_owned();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let out = match i % 3 {
                            // The first turn makes the clone later turns fetch into.
                            0 if i == 0 => {
                                gitc::try_run_on(&host, None, &["clone", "-q", &url, &kept], &env)
                            }
                            0 => gitc::try_run_on(
                                &host,
                                Some(Path::new(&kept)),
                                &["fetch", "-q"],
                                &env,
                            ),
                            1 => gitc::try_run_on(&host, None, &["ls-remote", &url], &env),
                            _ => {
                                let _ = std::fs::remove_dir_all(&shallow);
                                let args = ["clone", "-q", "--depth", "1", &url, &shallow];
                                gitc::try_run_on(&host, None, &args, &env)
                            }
                        };
                        i += 1;
                        if out.status.success() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let err = format!(
                                "at {} ({}): {}",
                                crate::utc_now(),
                                ["fetch", "ls-remote", "shallow clone"][(i - 1) as usize % 3],
                                String::from_utf8_lossy(&out.stderr)
                            );
                            failures.lock().expect("lock").push(err);
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failures,
            threads,
            _dir: dir,
        }
    }

    /// Requests served so far.
    pub fn served(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Requests failed so far.
    pub fn failed(&self) -> usize {
        self.failures.lock().expect("lock").len()
    }

    /// Waits (at most `limit`) until `n` more requests were served.
    pub fn wait_served(&self, n: usize, limit: Duration) {
        let from = self.served();
        wait_for("requests to go on being served", limit, || {
            (self.served() >= from + n).then_some(())
        });
    }

    /// Stops the clients; returns the requests served and the failures' messages.
    pub fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let failures = std::mem::take(&mut *self.failures.lock().expect("lock"));
        (self.ok.load(Ordering::Relaxed), failures)
    }
}
