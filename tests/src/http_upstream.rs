//! The upstream's own smart-HTTP endpoint, for credentials and pushes: nginx (TLS, with a
//! certificate from a private CA of the test's) doing HTTP Basic against an htpasswd file, and
//! `git http-backend` behind fcgiwrap serving the same repositories the sshd upstream holds.
//! Who may use which repository is a small rule script in front of http-backend (403 otherwise),
//! as a forge's permission check would be. [`HttpUpstream::start_with_lfs`] also routes the
//! repositories' Git LFS endpoints (`/<P>/<r>.git/info/lfs/…`) to the upstream's LFS server
//! (giftless, [`crate::lfs_upstream`]), behind the same Basic auth and rules.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::lfs_upstream::LfsServer;
use crate::{free_port, wait_for};

/// The path of git's `git-http-backend` program.
pub fn git_http_backend() -> String {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git --exec-path");
    format!(
        "{}/git-http-backend",
        String::from_utf8_lossy(&out.stdout).trim()
    )
}

/// Starts fcgiwrap with `children` workers on the unix socket `sock`; returns once it listens.
pub fn fcgiwrap(sock: &Path, children: u32) -> Child {
    let fcgi = Command::new("fcgiwrap")
        .args(["-c", &children.to_string(), "-s"])
        .arg(format!("unix:{}", sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fcgiwrap (apt-get install fcgiwrap)");
    wait_for("fcgiwrap socket", Duration::from_secs(10), || {
        sock.exists().then_some(())
    });
    fcgi
}

/// A running nginx + fcgiwrap + git http-backend.
pub struct HttpUpstream {
    dir: TempDir,
    port: u16,
    nginx: Option<Child>,
    fcgi: Child,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// The rule script's own Basic check (token mode): `users` by name and password, `tokens` by
/// password alone under any name; 401 otherwise. Sets `REMOTE_USER` for the rules below it.
fn token_auth(users: &[(&str, &str)], tokens: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "creds=$(printf %s \"${HTTP_AUTHORIZATION#Basic }\" | base64 -d 2>/dev/null)\n\
         name=\"${creds%%:*}\"; pass=\"${creds#*:}\"; REMOTE_USER=\"\"\n\
         case \"$HTTP_AUTHORIZATION\" in Basic\\ *) ;; *) creds=\"\" ;; esac\n",
    );
    for (token, owner) in tokens {
        s.push_str(&format!(
            "[ -n \"$creds\" ] && [ \"$pass\" = '{token}' ] && REMOTE_USER='{owner}'\n"
        ));
    }
    for (user, password) in users {
        s.push_str(&format!(
            "[ -n \"$creds\" ] && [ \"$name\" = '{user}' ] && [ \"$pass\" = '{password}' ] && REMOTE_USER='{user}'\n"
        ));
    }
    s.push_str(
        "if [ -z \"$REMOTE_USER\" ]; then\n  printf 'Status: 401 Unauthorized\\r\\nWWW-Authenticate: Basic realm=\"upstream\"\\r\\n\\r\\n'\n  exit 0\nfi\n",
    );
    s
}

impl HttpUpstream {
    /// Serves the bare repositories under `root` (`<P>/<r>.git`) at `https://127.0.0.1:<port>`;
    /// `users` are (name, password); `rules` give, per `PROJECT/repo`, who may read and push it.
    pub fn start(root: &Path, users: &[(&str, &str)], rules: &[(&str, &[&str])]) -> Self {
        Self::launch(root, users, rules, None, None)
    }

    /// Like [`Self::start`], and also takes personal access `tokens` — (token, owner) — the way
    /// forges do over HTTPS: as the password under ANY user name, naming their owner. (nginx's
    /// htpasswd binds names, so the rule script checks every credential itself.)
    pub fn start_with_tokens(
        root: &Path,
        users: &[(&str, &str)],
        tokens: &[(&str, &str)],
        rules: &[(&str, &[&str])],
    ) -> Self {
        Self::launch(root, users, rules, None, Some(tokens))
    }

    /// Like [`Self::start`], and also the upstream's Git LFS server: giftless, whose batch API
    /// nginx serves at `/<P>/<r>.git/info/lfs/objects/batch` behind the same Basic auth and
    /// `rules` (or a Bearer token of its `git-lfs-authenticate`), and whose transfer URLs it
    /// serves without Basic auth (giftless checks their tokens). See [`crate::lfs_upstream`].
    pub fn start_with_lfs(
        root: &Path,
        users: &[(&str, &str)],
        rules: &[(&str, &[&str])],
    ) -> (Self, LfsServer) {
        let mut lfs = LfsServer::start();
        let me = Self::launch(root, users, rules, Some(&mut lfs), None);
        (me, lfs)
    }

    fn launch(
        root: &Path,
        users: &[(&str, &str)],
        rules: &[(&str, &[&str])],
        lfs: Option<&mut LfsServer>,
        tokens: Option<&[(&str, &str)]>,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mf-http-upstream-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        // A private CA and a certificate for 127.0.0.1 signed by it.
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]);
        ca.extend(["-subj", "/CN=mirrorfarm test CA"]);
        openssl(d, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        csr.extend(["-subj", "/CN=127.0.0.1"]);
        openssl(d, &csr);
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        let mut htpasswd = String::new();
        for (user, password) in users {
            let out = Command::new("openssl")
                .args(["passwd", "-apr1", password])
                .output()
                .expect("openssl passwd");
            htpasswd.push_str(&format!(
                "{user}:{}\n",
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
        std::fs::write(d.join("htpasswd"), htpasswd).expect("htpasswd");
        let backend = git_http_backend();
        let mut script = String::from("#!/bin/sh\n");
        if let Some(tokens) = tokens {
            script.push_str(&token_auth(users, tokens));
        }
        script.push_str("case \"$PATH_INFO\" in\n");
        for (repo, who) in rules {
            script.push_str(&format!(
                "  /{repo}.git/*) allowed=\"{}\" ;;\n",
                who.join(" ")
            ));
        }
        // With LFS_CHECK (nginx's auth_request for the LFS endpoints) the script only answers:
        // 204 allows, 403 refuses; a Bearer request is giftless's to check.
        script.push_str(&format!(
            "  *) allowed=\"\" ;;\nesac\n\
             if [ -n \"$LFS_CHECK\" ]; then\n  case \"$HTTP_AUTHORIZATION\" in\n    \
             [Bb][Ee][Aa][Rr][Ee][Rr]\\ *) printf 'Status: 204 No Content\\r\\n\\r\\n'; exit 0 ;;\n  esac\nfi\n\
             for u in $allowed; do\n  if [ \"$REMOTE_USER\" = \"$u\" ]; then\n    \
             [ -n \"$LFS_CHECK\" ] && {{ printf 'Status: 204 No Content\\r\\n\\r\\n'; exit 0; }}\n    \
             exec {backend}\n  fi\ndone\n\
             printf 'Status: 403 Forbidden\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s may not use this repository\\n' \"$REMOTE_USER\"\n"
        ));
        let rules_path = d.join("rules.sh");
        std::fs::write(&rules_path, script).expect("rules");
        std::fs::set_permissions(
            &rules_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let sock = d.join("fcgiwrap.sock");
        let fcgi = fcgiwrap(&sock, 4);
        let port = free_port();
        let (lfs_http, lfs_server) = match lfs {
            Some(lfs) => {
                lfs.attach(port, d.join("access.log"));
                for (repo, _) in rules {
                    lfs.prepare_repo(repo);
                }
                (
                    lfs.nginx_http(),
                    lfs.nginx_locations(&d.join("htpasswd"), &rules_path, &sock),
                )
            }
            None => (String::new(), String::new()),
        };
        let conf = format!(
            "user root;\nmaster_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  fastcgi_temp_path {d}/fcgi;\n\
               proxy_temp_path {d}/proxy;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{lfs_http}\
               server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/server.pem;\n    ssl_certificate_key {d}/server.key;\n\
                 location / {{\n{basic}      client_max_body_size 0;\n\
                   fastcgi_buffering off;\n      include /etc/nginx/fastcgi_params;\n      fastcgi_param SCRIPT_FILENAME {rules};\n\
                   fastcgi_param GIT_PROJECT_ROOT {root};\n      fastcgi_param GIT_HTTP_EXPORT_ALL \"\";\n      fastcgi_param PATH_INFO $uri;\n\
                   fastcgi_param REMOTE_USER $remote_user;\n      fastcgi_param GIT_PROTOCOL $http_git_protocol;\n\
                   fastcgi_pass unix:{sock};\n    }}\n{lfs_server}  }}\n}}\n",
            d = d.display(),
            rules = rules_path.display(),
            root = root.display(),
            sock = sock.display(),
            basic = if tokens.is_some() {
                String::new()
            } else {
                format!("      auth_basic \"upstream\";\n      auth_basic_user_file {}/htpasswd;\n", d.display())
            },
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
        let mut me = Self {
            dir,
            port,
            nginx: None,
            fcgi,
        };
        me.start_nginx();
        me
    }

    fn start_nginx(&mut self) {
        let nginx = Command::new("nginx")
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (apt-get install nginx-light)");
        self.nginx = Some(nginx);
        let port = self.port;
        wait_for("nginx to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// `https://127.0.0.1:<port>`: what `plugin.mirroring.upstream.auth.url` names.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The private CA's certificate (`plugin.mirroring.upstream.tls.caFile`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The node properties that point at this endpoint.
    pub fn properties(&self) -> String {
        format!(
            "plugin.mirroring.upstream.auth.url={}\nplugin.mirroring.upstream.tls.caFile={}\n",
            self.url(),
            self.ca_file().display()
        )
    }

    fn log_lines(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Credential checks answered so far (`info/refs?service=git-upload-pack` requests).
    pub fn checks(&self) -> usize {
        self.log_lines("service=git-upload-pack")
    }

    /// Receive-pack POSTs answered so far.
    pub fn pushes(&self) -> usize {
        self.log_lines("/git-receive-pack HTTP")
    }

    /// Stops nginx: the endpoint refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.nginx.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let port = self.port;
        wait_for("nginx to stop", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        });
    }

    /// Starts nginx again after [`Self::stop`].
    pub fn restart(&mut self) {
        self.start_nginx();
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.stop();
        // fcgiwrap's workers outlive their master otherwise.
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.fcgi.id().to_string()])
            .status();
        let _ = self.fcgi.kill();
        let _ = self.fcgi.wait();
    }
}
