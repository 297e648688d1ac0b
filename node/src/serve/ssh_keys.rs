//! Who an SSH key is, in authenticated mode: a key is a user only if the farm knows it, from
//! `plugin.ssh.authorizedKeysFile` (OpenSSH's authorized_keys format, reloaded when it changes)
//! or the output of `plugin.ssh.authorizedKeysCommand` (run with OpenSSH's tokens `%u %t %f %k`
//! and a time limit, printing lines of that format). Two options of ours name the user and what
//! it may read: `user="alice",repos="PROJ/*,OTHER/tool" ssh-ed25519 AAAA… comment` (`*` reads
//! everything mirrored). A line without both is ignored, with a warning.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use russh::keys::{HashAlg, PublicKey};

use crate::names::{ProjectKey, RepoId};

/// How long the keys command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of its output read.
const COMMAND_OUTPUT: u64 = 1024 * 1024;

/// What one readable-repositories entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    All,
    Project(ProjectKey),
    Repo(RepoId),
}

/// A known key's user and what it may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// The user the key belongs to.
    pub user: String,
    repos: Vec<Pattern>,
}

impl KeyGrant {
    /// Whether this user may read `id`.
    pub fn may_read(&self, id: &RepoId) -> bool {
        self.repos.iter().any(|p| match p {
            Pattern::All => true,
            Pattern::Project(k) => *k == id.project,
            Pattern::Repo(r) => r == id,
        })
    }
}

/// Options of one line as `(name, value)` pairs (values unquoted).
type Opts = Vec<(String, String)>;

/// The value of option `name` (`name="value"`).
fn option<'a>(opts: &'a Opts, name: &str) -> Option<&'a str> {
    opts.iter()
        .find_map(|(k, v)| (k == name).then_some(v.as_str()))
}

fn parse_opts(entry: &russh::keys::ssh_key::authorized_keys::Entry) -> Opts {
    entry
        .config_opts()
        .iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.trim_matches('"').to_owned()),
            None => (o.to_owned(), String::new()),
        })
        .collect()
}

fn patterns(list: &str) -> Option<Vec<Pattern>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s == "*" {
                Some(Pattern::All)
            } else if let Some(p) = s.strip_suffix("/*") {
                ProjectKey::parse(p).ok().map(Pattern::Project)
            } else {
                RepoId::parse(s).ok().map(Pattern::Repo)
            }
        })
        .collect()
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Reads authorized_keys text: fingerprint → grant. `source` names it in warnings.
pub fn parse(text: &str, source: &str) -> HashMap<String, KeyGrant> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let entry = match t.parse::<russh::keys::ssh_key::authorized_keys::Entry>() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(source, line = i + 1, error = %e, "not an authorized_keys line; ignored");
                continue;
            }
        };
        let opts = parse_opts(&entry);
        let user = option(&opts, "user").filter(|u| !u.is_empty());
        let repos = option(&opts, "repos").and_then(patterns);
        match (user, repos) {
            (Some(user), Some(repos)) => {
                let grant = KeyGrant {
                    user: user.to_owned(),
                    repos,
                };
                out.insert(fingerprint(entry.public_key()), grant);
            }
            _ => tracing::warn!(
                source,
                line = i + 1,
                "an authorized key needs user=\"…\" and repos=\"…\" (e.g. repos=\"PROJ/*,OTHER/tool\"); ignored"
            ),
        }
    }
    out
}

#[derive(Default)]
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    keys: HashMap<String, KeyGrant>,
}

/// The keys the farm knows.
pub struct AuthorizedKeys {
    file: PathBuf,
    command: Option<String>,
    cache: Mutex<Cached>,
}

impl AuthorizedKeys {
    /// Keys from `file` (which may not exist yet) and, for keys it does not hold, `command`.
    pub fn new(file: PathBuf, command: Option<String>) -> Self {
        Self {
            file,
            command,
            cache: Mutex::default(),
        }
    }

    /// The grant of `key` offered for SSH user `user`, if the farm knows the key.
    pub async fn lookup(&self, user: &str, key: &PublicKey) -> Option<KeyGrant> {
        let fp = fingerprint(key);
        self.reload_if_changed().await;
        if let Some(g) = self.cache.lock().keys.get(&fp) {
            return Some(g.clone());
        }
        let command = self.command.as_deref()?;
        let text = run_command(command, user, key, &fp).await?;
        parse(&text, "plugin.ssh.authorizedKeysCommand").remove(&fp)
    }

    async fn reload_if_changed(&self) {
        let stamp = tokio::fs::metadata(&self.file)
            .await
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if self.cache.lock().stamp == stamp {
            return;
        }
        let text = tokio::fs::read_to_string(&self.file)
            .await
            .unwrap_or_default();
        let keys = parse(&text, &self.file.display().to_string());
        tracing::info!(file = %self.file.display(), keys = keys.len(), "authorized SSH keys loaded");
        *self.cache.lock() = Cached { stamp, keys };
    }
}

/// Runs the keys command (no shell: words split on whitespace, tokens expanded per word).
async fn run_command(command: &str, user: &str, key: &PublicKey, fp: &str) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let openssh = key.to_openssh().ok()?;
    let mut parts = openssh.split_whitespace();
    let (kind, blob) = (parts.next()?, parts.next()?);
    let expand = |w: &str| {
        w.replace("%%", "\u{0}")
            .replace("%u", user)
            .replace("%t", kind)
            .replace("%f", fp)
            .replace("%k", blob)
            .replace('\u{0}', "%")
    };
    let mut words = command.split_whitespace().map(expand);
    let mut cmd = tokio::process::Command::new(words.next()?);
    cmd.args(words)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let work = async {
        let mut child = cmd.spawn().ok()?;
        let mut out = String::new();
        child
            .stdout
            .take()?
            .take(COMMAND_OUTPUT)
            .read_to_string(&mut out)
            .await
            .ok()?;
        child.wait().await.ok()?.success().then_some(out)
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, work).await {
        Ok(out) => out,
        Err(_) => {
            tracing::warn!(command, "plugin.ssh.authorizedKeysCommand timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqxoDKd4Sm8lNH2Ge8X6gSoAYeeSOQaL3CeNJ0Xrkc1 a@b";

    #[test]
    fn lines_name_user_and_repositories() {
        let text = format!(
            "# comment\nuser=\"alice\",repos=\"PROJ/*,OTHER/tool\" {KEY}\nno options {KEY}\nuser=\"bob\" {KEY}\n"
        );
        let keys = parse(&text, "test");
        assert_eq!(keys.len(), 1, "only the line with both options counts");
        let g = keys.values().next().expect("alice");
        assert_eq!(g.user, "alice");
        let id = |s| RepoId::parse(s).expect("id");
        assert!(g.may_read(&id("PROJ/a")) && g.may_read(&id("OTHER/tool")));
        assert!(!g.may_read(&id("OTHER/x")) && !g.may_read(&id("PRO/a")));
        let all = parse(&format!("user=\"root\",repos=\"*\" {KEY}"), "test");
        assert!(all.values().all(|g| g.may_read(&id("ANY/thing"))));
    }
}
