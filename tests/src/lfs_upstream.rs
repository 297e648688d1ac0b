//! The upstream's Git LFS server: the third-party server giftless (PyPI `giftless`, Flask under
//! gunicorn) with its `LocalStorage`, behind the nginx of
//! [`HttpUpstream`](crate::http_upstream::HttpUpstream) (same port, TLS certificate and
//! htpasswd as git). Start both with
//! [`HttpUpstream::start_with_lfs`](crate::http_upstream::HttpUpstream::start_with_lfs).
//!
//! Who may use what, as a forge would decide it:
//! - `/<P>/<r>.git/info/lfs/…` (the batch API): HTTP Basic against the htpasswd *and* the same
//!   per-repository rule as git (nginx `auth_request` to the rule script): no or wrong
//!   credentials get 401 with `WWW-Authenticate`, a user the rules do not name for the
//!   repository 403. nginx then hands giftless a token of its own (giftless only trusts JWTs).
//! - The same path with `Authorization: Bearer <jwt>` instead (what `git-lfs-authenticate` over
//!   SSH hands out, see [`LfsServer::authenticate_command`]): no Basic auth; giftless verifies
//!   the token (HS256, its key) and its scope (the repository, read or write); anything else,
//!   bogus or forged, gets 401 (403 for another repository's or a read-only token's upload).
//! - `/<P>/<r>.git/info/lfs/objects/storage/…` (the transfer URLs giftless hands out): no Basic
//!   auth; giftless checks the JWT of the action (`?jwt=` on downloads, a Bearer header on
//!   uploads and verify).

use crate::lfs_upstream_conf::{
    AUTHENTICATE_PY, GIFTLESS_YAML, KEY_ID, MINT_PROXY_TOKEN_PY, NGINX_HTTP, NGINX_SERVER,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{free_port, wait_for};

/// The virtualenv holding giftless and gunicorn (`scripts/setup` creates it):
/// `$MIRRORFARM_GIFTLESS_VENV`, else `/opt/mirrorfarm-test/giftless`.
pub fn giftless_venv() -> PathBuf {
    std::env::var_os("MIRRORFARM_GIFTLESS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mirrorfarm-test/giftless"))
}

/// The upstream's LFS server: giftless under gunicorn, reached through the nginx of an
/// [`HttpUpstream`](crate::http_upstream::HttpUpstream). Stops giftless on drop.
pub struct LfsServer {
    dir: TempDir,
    /// giftless's own port (plain HTTP, 127.0.0.1); clients go through nginx.
    port: u16,
    /// nginx's port (set by [`Self::attach`]).
    nginx_port: u16,
    /// nginx's access log (set by [`Self::attach`]).
    access_log: PathBuf,
    key: String,
    proxy_token: String,
    gunicorn: Option<Child>,
}

impl LfsServer {
    /// Writes giftless's configuration and starts it; returns once it answers HTTP. The
    /// [`HttpUpstream`](crate::http_upstream::HttpUpstream) then [`Self::attach`]es it.
    pub(crate) fn start() -> Self {
        let venv = giftless_venv();
        assert!(
            venv.join("bin/gunicorn").exists(),
            "{}/bin/gunicorn is missing: run scripts/setup (it creates giftless's venv)",
            venv.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("mf-lfs-upstream-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("storage")).expect("mkdir storage");
        let key = random_hex(32);
        let out = Command::new(venv.join("bin/python"))
            .args(["-c", MINT_PROXY_TOKEN_PY])
            .env("LFS_KEY", &key)
            .env("LFS_KID", KEY_ID)
            .output()
            .expect("giftless venv python");
        assert!(
            out.status.success(),
            "minting nginx's token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let proxy_token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let yaml = GIFTLESS_YAML
            .replace("@KEY@", &key)
            .replace("@KID@", KEY_ID)
            .replace("@STORAGE@", &d.join("storage").display().to_string());
        std::fs::write(d.join("giftless.yaml"), yaml).expect("giftless.yaml");
        let mut me = Self {
            dir,
            port: free_port(),
            nginx_port: 0,
            access_log: PathBuf::new(),
            key,
            proxy_token,
            gunicorn: None,
        };
        me.start_lfs();
        me
    }

    /// Tells this server the nginx in front of it (its port and access log), and writes the
    /// `git-lfs-authenticate` program, whose documents point there.
    pub(crate) fn attach(&mut self, nginx_port: u16, access_log: PathBuf) {
        self.nginx_port = nginx_port;
        self.access_log = access_log;
        let script = AUTHENTICATE_PY
            .replace(
                "@PYTHON@",
                &giftless_venv().join("bin/python").display().to_string(),
            )
            .replace("@KEY@", &self.key)
            .replace("@KID@", KEY_ID)
            .replace("@BASE@", &format!("https://127.0.0.1:{nginx_port}"));
        let path = self.authenticate_command();
        std::fs::write(&path, script).expect("git-lfs-authenticate");
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }

    /// Creates the storage directory of `<P>/<r>` (`path`) up front: giftless's `LocalStorage`
    /// creates it on the first upload without `exist_ok`, so two concurrent first uploads to a
    /// repository race and one gets a 500.
    pub(crate) fn prepare_repo(&self, path: &str) {
        std::fs::create_dir_all(self.storage_dir().join(path)).expect("mkdir repo storage");
    }

    /// nginx's `http`-level configuration for LFS (maps).
    pub(crate) fn nginx_http(&self) -> String {
        NGINX_HTTP.replace("@PROXY_TOKEN@", &self.proxy_token)
    }

    /// nginx's `server`-level configuration for LFS (locations), with the git endpoint's
    /// htpasswd, rule script and fcgiwrap socket.
    pub(crate) fn nginx_locations(&self, htpasswd: &Path, rules: &Path, sock: &Path) -> String {
        NGINX_SERVER
            .replace("@LFS_PORT@", &self.port.to_string())
            .replace("@HTPASSWD@", &htpasswd.display().to_string())
            .replace("@RULES@", &rules.display().to_string())
            .replace("@SOCK@", &sock.display().to_string())
    }

    /// `https://127.0.0.1:<port>/<P>/<r>.git/info/lfs`: the repository's LFS endpoint (what
    /// git-lfs derives from the repository's https URL).
    pub fn lfs_url(&self, project: &str, repo: &str) -> String {
        format!(
            "https://127.0.0.1:{}/{project}/{repo}.git/info/lfs",
            self.nginx_port
        )
    }

    /// giftless's own port (plain HTTP on 127.0.0.1, no nginx in between).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The upstream's `git-lfs-authenticate <path> <download|upload>`: prints
    /// `{"href": <lfs_url>, "header": {"Authorization": "Bearer <jwt>"}, "expires_in": 3600}`
    /// for the repository `<path>` ends in (`P/r.git`, `/P/r.git`, `/abs/…/P/r.git`); the token
    /// lets read (download) or read and write (upload) that repository's objects.
    pub fn authenticate_command(&self) -> PathBuf {
        self.dir.path().join("git-lfs-authenticate")
    }

    /// Where giftless keeps its objects (`LocalStorage`: `<dir>/<P>/<r>/<oid>`, flat).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Object downloads served so far: GETs of the storage endpoint answered 200 (nginx's log).
    pub fn downloads(&self) -> usize {
        self.count("GET", "/info/lfs/objects/storage/", Some("200"))
    }

    /// Object uploads stored so far: PUTs to the storage endpoint answered 200.
    pub fn uploads(&self) -> usize {
        self.count("PUT", "/info/lfs/objects/storage/", Some("200"))
    }

    /// Batch API calls so far: POSTs to `…/info/lfs/objects/batch`, whatever the answer
    /// (refused ones too).
    pub fn batches(&self) -> usize {
        self.count("POST", "/info/lfs/objects/batch", None)
    }

    /// Requests in nginx's access log with `method`, a path containing `path_part` and, if
    /// given, that status.
    fn count(&self, method: &str, path_part: &str, status: Option<&str>) -> usize {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                // `addr - user [time] "METHOD /path?query HTTP/1.1" status bytes "ref" "agent"`
                let mut quoted = line.split('"');
                let _ = quoted.next();
                let request = quoted.next().unwrap_or("");
                let answered = quoted
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let mut words = request.split(' ');
                let m = words.next().unwrap_or("");
                let path = words.next().unwrap_or("").split('?').next().unwrap_or("");
                let status_ok = match status {
                    Some(s) => s == answered,
                    None => true,
                };
                m == method && path.contains(path_part) && status_ok
            })
            .count()
    }

    /// Stops giftless only: git over nginx goes on working, LFS requests get 502 from nginx.
    pub fn stop_lfs(&mut self) {
        if let Some(mut c) = self.gunicorn.take() {
            stop_gunicorn(&mut c);
        }
        let port = self.port;
        wait_for("giftless to stop", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        });
    }

    /// Starts giftless (again, after [`Self::stop_lfs`]) on the same port with the same key and
    /// storage; returns once it answers HTTP.
    pub fn start_lfs(&mut self) {
        if self.gunicorn.is_some() {
            return;
        }
        let d = self.dir.path().to_path_buf();
        let log_path = d.join("gunicorn.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("gunicorn.log");
        let err = log.try_clone().expect("gunicorn.log");
        let bind = format!("127.0.0.1:{}", self.port);
        // A few workers and threads: concurrent downloads. --graceful-timeout: stop quickly.
        let child = Command::new(giftless_venv().join("bin/gunicorn"))
            .args([
                "--bind",
                &bind,
                "--workers",
                "2",
                "--worker-class",
                "gthread",
            ])
            .args(["--threads", "4", "--graceful-timeout", "2"])
            .arg("giftless.wsgi_entrypoint:app")
            .current_dir(&d)
            .env("GIFTLESS_CONFIG_FILE", d.join("giftless.yaml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("gunicorn (run scripts/setup)");
        let child = self.gunicorn.insert(child);
        let port = self.port;
        wait_for("giftless to answer HTTP", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "giftless (gunicorn) exited with {status}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            http_answers(port).then_some(())
        });
    }

    /// Where giftless keeps object `oid` (the first repository holding it), so a test can
    /// corrupt or remove it. Panics if no repository holds it.
    pub fn object_path(&self, oid: &str) -> PathBuf {
        find_file(&self.storage_dir(), oid).unwrap_or_else(|| {
            panic!(
                "no object {oid} in giftless's storage {}",
                self.storage_dir().display()
            )
        })
    }

    /// Where giftless keeps (or would keep) object `oid` of `<project>/<repo>`.
    pub fn object_path_in(&self, project: &str, repo: &str, oid: &str) -> PathBuf {
        self.storage_dir().join(project).join(repo).join(oid)
    }

    /// Stores `bytes` as an object of `<project>/<repo>` straight into giftless's storage (as a
    /// push through git-lfs would); returns its oid (sha256, hex).
    pub fn put_object(&self, project: &str, repo: &str, bytes: &[u8]) -> String {
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.path()).expect("temp object");
        tmp.write_all(bytes).expect("write object");
        tmp.flush().expect("flush object");
        let out = Command::new("sha256sum")
            .arg(tmp.path())
            .output()
            .expect("sha256sum");
        assert!(out.status.success(), "sha256sum failed");
        let oid = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("sha256sum output")
            .to_owned();
        let dest = self.object_path_in(project, repo, &oid);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir object dir");
        tmp.persist(dest).expect("store object");
        oid
    }
}

impl Drop for LfsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.gunicorn.take() {
            stop_gunicorn(&mut c);
        }
    }
}

/// Ends gunicorn: SIGINT (its quick shutdown, which ends the workers too; SIGKILL of the master
/// alone would leave them serving); after 10 s, SIGKILL to the workers and the master.
fn stop_gunicorn(c: &mut Child) {
    let pid = c.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    if crate::poll_until(Duration::from_secs(10), || c.try_wait().ok().flatten()).is_some() {
        return;
    }
    let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
    let _ = c.kill();
    let _ = c.wait();
}

/// Whether an HTTP server answers on 127.0.0.1:`port` (gunicorn's master listens before its
/// workers have loaded the app; this waits for an answer).
fn http_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && head == *b"HTTP/"
}

/// `n` random bytes from /dev/urandom, in hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first file named `name` under `dir` (depth first).
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name().to_str() == Some(name) {
            return Some(path);
        }
    }
    None
}
