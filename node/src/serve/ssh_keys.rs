//! Who an SSH key is, in authenticated mode: a key is a user only if the farm knows it, from
//! `plugin.ssh.authorizedKeysFile` (OpenSSH's authorized_keys format, reloaded when it changes)
//! or the output of `plugin.ssh.authorizedKeysCommand` (run with OpenSSH's tokens `%u %t %f %k`
//! and a time limit, printing lines of that format). Two options of ours name the user and what
//! it may read: `user="alice",repos="PROJ/*,OTHER/tool" ssh-ed25519 AAAA… comment` (`*` reads
//! everything mirrored). A line without both, or with any other option (`from=`, `restrict`,
//! `cert-authority` … are not implemented, so such a line would grant more than it says), is
//! ignored with a warning; so is a second line for the same key (the first counts, as in OpenSSH).
//! The command runs at most 4 at a time, at most once per connection, and a key it did not know
//! is not asked about again for 30 s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use russh::keys::{HashAlg, PublicKey};

use crate::forge::ssh_users::{ForgeUser, KeyId};
use crate::forge::ForgeSsh;
use crate::names::{ProjectKey, RepoId};

/// How long the keys command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of its output read.
const COMMAND_OUTPUT: u64 = 1024 * 1024;
/// Commands running at once.
const COMMAND_SLOTS: usize = 4;
/// How long a key the command did not know is not asked about again.
const UNKNOWN_FOR: Duration = Duration::from_secs(30);
/// The largest keys file read.
const MAX_FILE: u64 = 16 * 1024 * 1024;

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
    /// The forge user, when the forge knew the key (what it may read is asked of the forge).
    forge: Option<ForgeUser>,
}

impl KeyGrant {
    /// Whether the listed patterns let this user read `id` (a forge user's are asked of the forge:
    /// see [`AuthorizedKeys::may_read`]).
    fn listed_may_read(&self, id: &RepoId) -> bool {
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

/// The grant of a key the forge knows: its user, with what it may read asked of the forge.
async fn forge_grant(forge: &ForgeSsh, key: &PublicKey, fp: &str) -> Option<KeyGrant> {
    let openssh = key.to_openssh().ok()?;
    let id = KeyId {
        blob: openssh.split_whitespace().nth(1)?.to_owned(),
        fingerprint: fp.to_owned(),
    };
    match forge.users.owner(&id).await {
        Ok(Some(user)) => Some(KeyGrant {
            user: user.login.clone(),
            repos: Vec::new(),
            forge: Some(user),
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask the forge whose SSH key this is");
            None
        }
    }
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
        // ssh-key reads a line of three words as a key without options: with options and no
        // comment, a comment is added.
        let parsed = t
            .parse::<russh::keys::ssh_key::authorized_keys::Entry>()
            .or_else(|_| format!("{t} -").parse());
        let entry = match parsed {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(source, line = i + 1, error = %e, "not an authorized_keys line; ignored");
                continue;
            }
        };
        let opts = parse_opts(&entry);
        if let Some((other, _)) = opts.iter().find(|(k, _)| k != "user" && k != "repos") {
            tracing::warn!(source, line = i + 1, option = %other, "an authorized key with an option mirrorfarm does not implement; ignored");
            continue;
        }
        let user = option(&opts, "user").filter(|u| !u.is_empty());
        let repos = option(&opts, "repos").and_then(patterns);
        match (user, repos) {
            (Some(user), Some(repos)) => {
                let grant = KeyGrant {
                    user: user.to_owned(),
                    repos,
                    forge: None,
                };
                let fp = fingerprint(entry.public_key());
                if out.contains_key(&fp) {
                    tracing::warn!(source, line = i + 1, "a key listed again; the first line counts");
                    continue;
                }
                out.insert(fp, grant);
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

/// What identifies one version of the keys file: modification and change times, size, inode.
type Stamp = (SystemTime, i64, u64, u64);

#[derive(Default)]
struct Cached {
    stamp: Option<Stamp>,
    keys: HashMap<String, KeyGrant>,
}

/// The keys the farm knows.
pub struct AuthorizedKeys {
    file: PathBuf,
    command: Option<String>,
    forge: Option<std::sync::Arc<ForgeSsh>>,
    cache: Mutex<Cached>,
    slots: tokio::sync::Semaphore,
    unknown: Mutex<HashMap<String, Instant>>,
}

impl AuthorizedKeys {
    /// Keys from `file` (which may not exist yet) and, for keys it does not hold, `command`,
    /// then `forge`.
    pub fn new(
        file: PathBuf,
        command: Option<String>,
        forge: Option<std::sync::Arc<ForgeSsh>>,
    ) -> Self {
        Self {
            file,
            command,
            forge,
            cache: Mutex::default(),
            slots: tokio::sync::Semaphore::new(COMMAND_SLOTS),
            unknown: Mutex::default(),
        }
    }

    /// The grant of `key` offered for SSH user `user`, if the farm knows the key; the command is
    /// asked only when `may_run_command` (once per connection), the forge only when
    /// `may_ask_forge`.
    pub async fn lookup(
        &self,
        user: &str,
        key: &PublicKey,
        may_run_command: bool,
        may_ask_forge: bool,
    ) -> Option<KeyGrant> {
        let fp = fingerprint(key);
        self.reload_if_changed().await;
        if let Some(g) = self.cache.lock().keys.get(&fp) {
            return Some(g.clone());
        }
        {
            let mut unknown = self.unknown.lock();
            unknown.retain(|_, at| at.elapsed() < UNKNOWN_FOR);
            if unknown.contains_key(&fp) {
                return None;
            }
        }
        let mut found = None;
        if let Some(command) = self.command.as_deref().filter(|_| may_run_command) {
            let _slot = self.slots.acquire().await.ok()?;
            found = match run_command(command, user, key, &fp).await {
                Some(text) => parse(&text, "plugin.ssh.authorizedKeysCommand").remove(&fp),
                None => None,
            };
        }
        let forge = self.forge.as_ref().filter(|_| may_ask_forge);
        if let (None, Some(forge)) = (&found, forge) {
            found = forge_grant(forge, key, &fp).await;
        }
        let asked = may_run_command && self.command.is_some() || forge.is_some();
        if found.is_none() && asked {
            let mut unknown = self.unknown.lock();
            if unknown.len() < 100_000 {
                unknown.insert(fp, Instant::now());
            }
        }
        found
    }

    /// Whether `grant`'s user may read `id`: its listed patterns, or for a forge user, the
    /// forge's word (cached).
    pub async fn may_read(&self, grant: &KeyGrant, id: &RepoId) -> bool {
        match (&grant.forge, &self.forge) {
            (Some(user), Some(forge)) => forge.permissions.may_read(user, id).await,
            (Some(_), None) => false,
            (None, _) => grant.listed_may_read(id),
        }
    }

    async fn reload_if_changed(&self) {
        use std::os::unix::fs::MetadataExt;
        let meta = tokio::fs::metadata(&self.file).await.ok();
        let stamp: Option<Stamp> = meta.as_ref().map(|m| {
            let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            (
                mtime,
                m.ctime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(m.ctime_nsec()),
                m.len(),
                m.ino(),
            )
        });
        if stamp.is_some() && self.cache.lock().stamp == stamp {
            return;
        }
        let keys = match meta {
            None => HashMap::new(),
            Some(m) if m.len() > MAX_FILE => {
                tracing::warn!(file = %self.file.display(), "authorized keys file larger than 16 MiB; not read");
                HashMap::new()
            }
            Some(_) => match tokio::fs::read_to_string(&self.file).await {
                Ok(text) => parse(&text, &self.file.display().to_string()),
                Err(e) => {
                    tracing::warn!(file = %self.file.display(), error = %e, "cannot read the authorized keys file; no key is known");
                    HashMap::new()
                }
            },
        };
        // A file changed within the last two seconds may change again unseen within the
        // timestamps' resolution: it is read again next time.
        let recent = stamp.is_some_and(|(mtime, ..)| {
            mtime.elapsed().map_or(true, |d| d < Duration::from_secs(2))
        });
        let mut cache = self.cache.lock();
        if cache.keys.len() != keys.len() || cache.stamp.is_none() {
            tracing::debug!(file = %self.file.display(), keys = keys.len(), "authorized SSH keys read");
        }
        *cache = Cached {
            stamp: if recent { None } else { stamp },
            keys,
        };
    }
}

/// Whether an SSH user name may be passed to the command (`%u`).
fn user_ok(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Expands OpenSSH's tokens in one word, in one pass.
fn expand(word: &str, tokens: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match tokens.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push('%');
                    out.push(t);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// Runs the keys command (no shell: words split on whitespace, tokens expanded per word, a clean
/// environment).
async fn run_command(command: &str, user: &str, key: &PublicKey, fp: &str) -> Option<String> {
    use tokio::io::AsyncReadExt;
    if !user_ok(user) {
        tracing::info!("SSH user name not passed to the keys command: not a plain name");
        return None;
    }
    let openssh = key.to_openssh().ok()?;
    let mut parts = openssh.split_whitespace();
    let (kind, blob) = (parts.next()?, parts.next()?);
    let tokens = [('u', user), ('t', kind), ('f', fp), ('k', blob)];
    let mut words = command.split_whitespace().map(|w| expand(w, &tokens));
    let mut cmd = tokio::process::Command::new(words.next()?);
    cmd.args(words)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
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
        assert!(g.listed_may_read(&id("PROJ/a")) && g.listed_may_read(&id("OTHER/tool")));
        assert!(!g.listed_may_read(&id("OTHER/x")) && !g.listed_may_read(&id("PRO/a")));
        let all = parse(&format!("user=\"root\",repos=\"*\" {KEY}"), "test");
        assert!(all.values().all(|g| g.listed_may_read(&id("ANY/thing"))));
        // Without a comment, with options we do not implement, and listed twice.
        let bare = KEY.rsplit_once(' ').map(|(k, _)| k).expect("key");
        assert_eq!(
            parse(&format!("user=\"a\",repos=\"P/*\" {bare}"), "t").len(),
            1
        );
        assert!(parse(
            &format!("from=\"10.0.0.1\",user=\"a\",repos=\"*\" {KEY}"),
            "t"
        )
        .is_empty());
        assert!(parse(&format!("cert-authority,user=\"a\",repos=\"*\" {KEY}"), "t").is_empty());
        let twice = parse(
            &format!("user=\"first\",repos=\"P/*\" {KEY}\nuser=\"second\",repos=\"*\" {KEY}"),
            "t",
        );
        assert_eq!(
            twice.values().next().map(|g| g.user.as_str()),
            Some("first")
        );
    }

    #[test]
    fn tokens_expand_once_and_user_names_are_plain() {
        let t = [('u', "%f"), ('f', "SHA256:x")];
        assert_eq!(expand("%u-%f-%%-%z", &t), "%f-SHA256:x-%-%z");
        assert!(user_ok("git") && user_ok("alice.b-1"));
        assert!(!user_ok("-oProxyCommand") && !user_ok("a b") && !user_ok("") && !user_ok("é"));
    }
}
