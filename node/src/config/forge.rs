//! Knowing the upstream: its kind (`plugin.mirroring.upstream.type`), its REST API
//! (`plugin.mirroring.upstream.api.url`, `….api.tokenFile`), a grokmirror manifest for plain
//! upstreams (`plugin.mirroring.upstream.manifest.url`), the push webhook's secret
//! (`mirror.webhook.secretFile`) and where sync-complete notices go (`mirror.notify.url`).
//!
//! Secret files are read here once, so a missing or empty one stops the node before it binds a
//! port; what is kept is their path (they are read again on SIGHUP, see [`crate::secrets`]).

use std::path::{Path, PathBuf};

use mirrorfarm_common::config::{ConfigError, Located, Validator};

use crate::config::file::FileConfig;
use crate::config::AccessConfig;
use crate::upstream_url::UpstreamUrl;

/// What kind of server the upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    /// Any git server (OpenSSH and bare repositories): no REST API.
    Plain,
    /// Bitbucket Data Center.
    Bitbucket,
    /// github.com or GitHub Enterprise Server.
    Github,
    /// GitLab.
    Gitlab,
    /// Gitea or Forgejo.
    Gitea,
}

impl ForgeKind {
    /// The value of `plugin.mirroring.upstream.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Bitbucket => "bitbucket",
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Gitea => "gitea",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "plain" => Self::Plain,
            "bitbucket" => Self::Bitbucket,
            "github" => Self::Github,
            "gitlab" => Self::Gitlab,
            "gitea" | "forgejo" => Self::Gitea,
            _ => return None,
        })
    }
}

/// The validated settings of this module's keys.
#[derive(Debug, Clone)]
pub struct ForgeConfig {
    /// `plugin.mirroring.upstream.type` (default `plain`).
    pub kind: ForgeKind,
    /// `plugin.mirroring.upstream.api.url`, without trailing slash: the forge's API root
    /// (Bitbucket: the server's base, `/rest/api/1.0/…` follows; GitHub: `https://api.github.com`
    /// or `https://<host>/api/v3`; GitLab: `…/api/v4`; Gitea: `…/api/v1`). `None` for `plain`.
    pub api_url: Option<String>,
    /// `plugin.mirroring.upstream.api.tokenFile`: a token with read access to the API.
    pub token_file: Option<PathBuf>,
    /// `plugin.mirroring.upstream.manifest.url`: a grokmirror manifest listing the repositories
    /// of a plain upstream (`.gz`: gzip).
    pub manifest_url: Option<String>,
    /// `mirror.webhook.secretFile`: the secret webhooks are signed with (and notices signed by).
    pub webhook_secret_file: Option<PathBuf>,
    /// `mirror.notify.url`: where a notice goes after each farm-wide flip.
    pub notify_url: Option<String>,
    /// `plugin.ssh.keys=forge` (default `file`): a key neither the keys file nor the keys command
    /// knows is looked up on the forge, and what its user may read asked of the forge.
    pub ssh_keys_forge: bool,
}

impl ForgeConfig {
    /// Whether `mirror.projects` can be listed: a forge's API, a manifest, or a `file://` tree.
    pub fn can_list(&self, upstream: &UpstreamUrl) -> bool {
        self.kind != ForgeKind::Plain
            || self.manifest_url.is_some()
            || upstream.listable_root().is_some()
    }
}

/// Validates this module's keys (relative paths from the configuration file's directory).
pub fn forge_config(
    fc: &FileConfig,
    v: &Validator<'_>,
    file: &Path,
    upstream: &UpstreamUrl,
    auth: &AccessConfig,
) -> Result<ForgeConfig, ConfigError> {
    let kind = match &fc.upstream_type {
        None => ForgeKind::Plain,
        Some(l) => ForgeKind::parse(l.value.trim()).ok_or_else(|| {
            v.at(
                l,
                "plugin.mirroring.upstream.type",
                "must be plain, bitbucket, github, gitlab or gitea (forgejo)",
            )
        })?,
    };
    const API_KEY: &str = "plugin.mirroring.upstream.api.url";
    let api_url = match (&fc.api_url, kind) {
        (Some(l), ForgeKind::Plain) => {
            return Err(v.at(
                l,
                API_KEY,
                "a plain upstream has no API: set plugin.mirroring.upstream.type too",
            ))
        }
        (Some(l), _) => Some(http_url(v, l, API_KEY)?),
        (None, ForgeKind::Plain) => None,
        (None, k) => {
            let derived = derive_api_url(k, upstream, auth).ok_or_else(|| {
                v.missing(
                    API_KEY,
                    "cannot be derived from the upstream URL (no https:// host): set it",
                )
            })?;
            // Derived from an http:// auth URL it would carry the token in clear.
            if derived.starts_with("http://") && !loopback_http(&derived) {
                return Err(v.missing(
                    API_KEY,
                    &format!("would be {derived} (from the http:// auth URL): the token must not cross the network in clear; set an https:// API URL"),
                ));
            }
            Some(derived)
        }
    };
    let token_file = secret_file(
        fc.token_file.as_ref(),
        v,
        file,
        "plugin.mirroring.upstream.api.tokenFile",
    )?;
    if let (Some(l), ForgeKind::Plain) = (&fc.token_file, kind) {
        return Err(v.at(
            l,
            "plugin.mirroring.upstream.api.tokenFile",
            "a plain upstream has no API: set plugin.mirroring.upstream.type too",
        ));
    }
    const MANIFEST_KEY: &str = "plugin.mirroring.upstream.manifest.url";
    let manifest_url = match &fc.manifest_url {
        None => None,
        Some(l) if kind != ForgeKind::Plain => {
            return Err(v.at(
                l,
                MANIFEST_KEY,
                "only a plain upstream is listed from a manifest (a forge lists its own)",
            ))
        }
        Some(l) => Some(http_url(v, l, MANIFEST_KEY)?),
    };
    let webhook_secret_file = secret_file(
        fc.webhook_secret_file.as_ref(),
        v,
        file,
        "mirror.webhook.secretFile",
    )?;
    let notify_url = match &fc.notify_url {
        None => None,
        Some(l) => {
            if webhook_secret_file.is_none() {
                return Err(v.at(
                    l,
                    "mirror.notify.url",
                    "needs mirror.webhook.secretFile (notices are signed with it)",
                ));
            }
            Some(http_url(v, l, "mirror.notify.url")?)
        }
    };
    let ssh_keys_forge = match &fc.ssh_keys {
        None => false,
        Some(l) => match l.value.trim() {
            "file" => false,
            "forge" if kind == ForgeKind::Plain || token_file.is_none() => {
                return Err(v.at(
                    l,
                    "plugin.ssh.keys",
                    "forge needs plugin.mirroring.upstream.type (a forge) and \
                     plugin.mirroring.upstream.api.tokenFile (a token that may list users' keys)",
                ))
            }
            "forge" => true,
            _ => return Err(v.at(l, "plugin.ssh.keys", "must be `file` or `forge`")),
        },
    };
    Ok(ForgeConfig {
        ssh_keys_forge,
        kind,
        api_url,
        token_file,
        manifest_url,
        webhook_secret_file,
        notify_url,
    })
}

/// An https:// URL, or http:// to a loopback host only (nothing secret crosses a network in
/// clear); no credentials, query or fragment; trailing slashes dropped.
fn http_url(v: &Validator<'_>, l: &Located, key: &str) -> Result<String, ConfigError> {
    let u = l.value.trim().trim_end_matches('/');
    let bad = |why: &str| v.at(l, key, why);
    let rest = if let Some(r) = u.strip_prefix("https://") {
        r
    } else if let Some(r) = u.strip_prefix("http://") {
        if !loopback_http(u) {
            return Err(bad("must be https:// (http:// only to a loopback host)"));
        }
        r
    } else {
        return Err(bad("must be an https:// URL"));
    };
    if rest.is_empty()
        || rest.starts_with('/')
        || rest.contains(['@', '?', '#'])
        || rest.contains(char::is_whitespace)
    {
        return Err(bad(
            "must be a URL with a host and no credentials, query or fragment",
        ));
    }
    Ok(u.to_owned())
}

/// Whether an `http://` URL names a loopback host.
fn loopback_http(url: &str) -> bool {
    let Some(r) = url.strip_prefix("http://") else {
        return false;
    };
    let host = r.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
}

/// Reads a secret file once (it must hold one token of at least 8 characters); keeps its path.
fn secret_file(
    l: Option<&Located>,
    v: &Validator<'_>,
    file: &Path,
    key: &str,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(l) = l else { return Ok(None) };
    let path = file.parent().unwrap_or(Path::new(".")).join(l.value.trim());
    crate::secrets::read_secret(&path).map_err(|e| v.at(l, key, &e.to_string()))?;
    Ok(Some(path))
}

/// The API root a forge has at the upstream's host: from the auth URL (an https:// URL of the
/// forge) or the upstream URL itself.
fn derive_api_url(kind: ForgeKind, upstream: &UpstreamUrl, auth: &AccessConfig) -> Option<String> {
    let from_auth = auth.auth_url.as_deref().and_then(|u| {
        let (scheme, rest) = u.split_once("://")?;
        let host = rest.split('/').next()?;
        // Bitbucket serves git under <base>/scm: its REST base is what precedes it.
        let base = rest.strip_suffix("/scm").unwrap_or(rest);
        Some((scheme.to_owned(), host.to_owned(), base.to_owned()))
    });
    let (scheme, host, base) = match (from_auth, upstream) {
        (Some(t), _) => t,
        (None, UpstreamUrl::Https { rest }) => {
            let host = rest.split('/').next()?.to_owned();
            let base = rest.strip_suffix("/scm").unwrap_or(rest).to_owned();
            ("https".to_owned(), host, base)
        }
        (None, UpstreamUrl::Ssh { host, .. }) => ("https".to_owned(), host.clone(), host.clone()),
        (None, UpstreamUrl::File { .. }) => return None,
    };
    Some(match kind {
        ForgeKind::Plain => return None,
        ForgeKind::Bitbucket => format!("{scheme}://{base}"),
        ForgeKind::Github if host.eq_ignore_ascii_case("github.com") => {
            "https://api.github.com".to_owned()
        }
        ForgeKind::Github => format!("{scheme}://{host}/api/v3"),
        ForgeKind::Gitlab => format!("{scheme}://{host}/api/v4"),
        ForgeKind::Gitea => format!("{scheme}://{host}/api/v1"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(url: Option<&str>) -> AccessConfig {
        AccessConfig {
            auth_url: url.map(str::to_owned),
            ca_file: None,
            cache_ttl: std::time::Duration::from_secs(1),
            offline_ttl: std::time::Duration::from_secs(1),
            sessions: crate::config::SessionMode::Local,
            session_timeout: std::time::Duration::from_secs(1),
            push_sync_wait: std::time::Duration::from_secs(1),
        }
    }

    fn load(extra: &str, dir: &Path) -> Result<crate::config::Config, ConfigError> {
        let text = format!(
            "application.mode=mirror\nsetup.displayName=M\nsetup.baseUrl=https://farm.example.com\n\
             plugin.mirroring.upstream.url=ssh://git@git.example.com:7999\n\
             plugin.mirroring.upstream.auth.url=https://git.example.com/scm\n{extra}"
        );
        let f = dir.join("mirrorfarm.properties");
        crate::config::Config::from_file(crate::config::FileConfig::parse(&f, &text)?, &f)
    }

    #[test]
    fn the_keys_are_checked_with_file_line_and_key() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("api.token"), "token-0123456789").expect("token");
        std::fs::write(dir.path().join("hook.secret"), "secret-0123456789").expect("secret");
        let c = load(
            "mirror.projects=*\nplugin.mirroring.upstream.type=gitlab\n\
             plugin.mirroring.upstream.api.tokenFile=api.token\nmirror.webhook.secretFile=hook.secret\n\
             mirror.notify.url=https://ci.example.com/hook\nplugin.ssh.keys=forge\n",
            dir.path(),
        )
        .expect("valid");
        assert_eq!(c.forge.kind, ForgeKind::Gitlab);
        assert_eq!(
            c.forge.api_url.as_deref(),
            Some("https://git.example.com/api/v4")
        );
        assert!(c.forge.ssh_keys_forge && c.forge.notify_url.is_some());
        for (extra, key) in [
            ("mirror.repos=P/r\nplugin.mirroring.upstream.type=gitbucket\n", ":7: plugin.mirroring.upstream.type"),
            ("mirror.projects=*\n", ":6: mirror.projects"),
            ("mirror.repos=P/r\nplugin.mirroring.upstream.api.url=https://x/api\n", ":7: plugin.mirroring.upstream.api.url"),
            ("mirror.repos=P/r\nplugin.mirroring.upstream.type=github\nplugin.mirroring.upstream.api.url=http://api.example.com\n", ":8: plugin.mirroring.upstream.api.url"),
            ("mirror.repos=P/r\nplugin.mirroring.upstream.type=github\nplugin.mirroring.upstream.api.tokenFile=missing\n", ":8: plugin.mirroring.upstream.api.tokenFile"),
            ("mirror.repos=P/r\nplugin.mirroring.upstream.manifest.url=ftp://x/m.js\n", ":7: plugin.mirroring.upstream.manifest.url"),
            ("mirror.repos=P/r\nmirror.notify.url=https://ci/hook\n", ":7: mirror.notify.url"),
            ("mirror.repos=P/r\nplugin.ssh.keys=forge\n", ":7: plugin.ssh.keys"),
            ("mirror.repos=P/r\nplugin.ssh.keys=ldap\n", ":7: plugin.ssh.keys"),
        ] {
            let msg = load(extra, dir.path()).expect_err(extra).to_string();
            assert!(msg.contains(key), "{extra:?}: {msg}");
        }
        std::fs::write(dir.path().join("api.token"), "short").expect("token");
        let msg = load(
            "mirror.repos=P/r\nplugin.mirroring.upstream.type=github\nplugin.mirroring.upstream.api.tokenFile=api.token\n",
            dir.path(),
        )
        .expect_err("short token")
        .to_string();
        assert!(msg.contains("at least"), "{msg}");
        // A manifest lists a plain upstream; http:// only on a loopback host.
        let c = load(
            "mirror.projects=*\nplugin.mirroring.upstream.manifest.url=http://127.0.0.1:8080/manifest.js.gz\n",
            dir.path(),
        )
        .expect("manifest");
        assert!(c.forge.manifest_url.is_some());
    }

    #[test]
    fn api_roots_are_derived_per_forge() {
        let ssh = UpstreamUrl::parse("ssh://git@git.example.com:7999").expect("url");
        let bb = auth(Some("https://bb.example.com/ctx/scm"));
        assert_eq!(
            derive_api_url(ForgeKind::Bitbucket, &ssh, &bb).as_deref(),
            Some("https://bb.example.com/ctx")
        );
        let gh = UpstreamUrl::parse("https://github.com").expect("url");
        assert_eq!(
            derive_api_url(ForgeKind::Github, &gh, &auth(None)).as_deref(),
            Some("https://api.github.com")
        );
        assert_eq!(
            derive_api_url(ForgeKind::Github, &ssh, &auth(None)).as_deref(),
            Some("https://git.example.com/api/v3")
        );
        assert_eq!(
            derive_api_url(ForgeKind::Gitlab, &ssh, &auth(None)).as_deref(),
            Some("https://git.example.com/api/v4")
        );
        assert_eq!(
            derive_api_url(ForgeKind::Gitea, &ssh, &auth(Some("http://127.0.0.1:3000"))).as_deref(),
            Some("http://127.0.0.1:3000/api/v1")
        );
        let file = UpstreamUrl::parse("file:///srv/git").expect("url");
        assert_eq!(derive_api_url(ForgeKind::Gitea, &file, &auth(None)), None);
    }
}
