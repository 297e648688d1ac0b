//! The upstream URL (`plugin.mirroring.upstream.url`) and where each repository lives under it.

use std::fmt;
use std::path::PathBuf;

use crate::names::{ProjectKey, RepoId};

/// A validated upstream base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamUrl {
    /// `ssh://[user@]host[:port][/base]`.
    Ssh {
        /// Login user, if given.
        user: Option<String>,
        /// Host name or address.
        host: String,
        /// Port, if given.
        port: Option<u16>,
        /// Base path, without trailing slash (may be empty).
        base: String,
    },
    /// `https://host[:port][/base]` (no credentials in the URL).
    Https {
        /// Everything after `https://`, without trailing slash.
        rest: String,
    },
    /// `file:///path`.
    File {
        /// Absolute base directory.
        path: PathBuf,
    },
}

/// Why an upstream URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not one of the three accepted schemes.
    #[error("must start with ssh://, https:// or file:///")]
    Scheme,
    /// A piece is malformed.
    #[error("{0}")]
    Malformed(&'static str),
}

fn safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-~/%+".contains(c))
}

impl UpstreamUrl {
    /// Parses and validates the configured URL.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let s = s.trim_end_matches('/');
        if let Some(rest) = s.strip_prefix("ssh://") {
            let (authority, base) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_owned()), h),
                None => (None, authority),
            };
            if let Some(u) = &user {
                if u.is_empty() || u.starts_with('-') || u.contains(':') || !safe(u) {
                    return Err(UrlError::Malformed("bad user (no passwords in the URL)"));
                }
            }
            let (host, port) = split_host_port(hostport)?;
            if !base.is_empty() && (!safe(base) || base.contains("..")) {
                return Err(UrlError::Malformed("bad path"));
            }
            return Ok(Self::Ssh {
                user,
                host,
                port,
                base: base.to_owned(),
            });
        }
        if let Some(rest) = s.strip_prefix("https://") {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') {
                return Err(UrlError::Malformed(
                    "credentials must not be part of the URL",
                ));
            }
            split_host_port(authority)?;
            if !safe(rest) || rest.contains("..") {
                return Err(UrlError::Malformed("bad characters in URL"));
            }
            return Ok(Self::Https {
                rest: rest.to_owned(),
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') || path.contains("/../") || path.ends_with("/..") {
                return Err(UrlError::Malformed(
                    "file URL needs an absolute path: file:///path",
                ));
            }
            return Ok(Self::File {
                path: PathBuf::from(if path.is_empty() { "/" } else { path }),
            });
        }
        Err(UrlError::Scheme)
    }

    /// The URL git fetches `PROJECT/repo` from.
    pub fn repo_url(&self, id: &RepoId) -> String {
        format!("{self}/{}", id.rel_path())
    }

    /// Whether fetches go through the system OpenSSH client.
    pub fn is_ssh(&self) -> bool {
        matches!(self, Self::Ssh { .. })
    }

    /// The host (and port) that known_hosts pins, for messages.
    pub fn host_label(&self) -> String {
        match self {
            Self::Ssh { host, port, .. } => match port {
                Some(p) => format!("[{host}]:{p}"),
                None => host.clone(),
            },
            Self::Https { rest } => rest.split('/').next().unwrap_or_default().to_owned(),
            Self::File { .. } => "localhost".to_owned(),
        }
    }

    /// For `file://` upstreams, the directory of a project (to list its repositories).
    pub fn project_dir(&self, project: &ProjectKey) -> Option<PathBuf> {
        match self {
            Self::File { path } => Some(path.join(project.as_str())),
            _ => None,
        }
    }

    /// For `file://` upstreams, the base directory.
    pub fn listable_root(&self) -> Option<&std::path::Path> {
        match self {
            Self::File { path } => Some(path),
            _ => None,
        }
    }
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or(UrlError::Malformed("bad IPv6 host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || host.starts_with('-')
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c))
    {
        return Err(UrlError::Malformed("bad host"));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(UrlError::Malformed("bad port"))?,
        ),
        None => None,
    };
    Ok((host.to_owned(), port))
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ssh {
                user,
                host,
                port,
                base,
            } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                f.write_str(base)
            }
            Self::Https { rest } => write!(f, "https://{rest}"),
            Self::File { path } => write!(
                f,
                "file://{}",
                path.display().to_string().trim_end_matches('/')
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let u = UpstreamUrl::parse("ssh://git@example.com:2222/scm/").expect("ssh");
        assert_eq!(u.to_string(), "ssh://git@example.com:2222/scm");
        let id = RepoId::parse("P/r").expect("id");
        assert_eq!(u.repo_url(&id), "ssh://git@example.com:2222/scm/P/r.git");
        assert_eq!(u.host_label(), "[example.com]:2222");
        let h = UpstreamUrl::parse("https://git.example.com/base").expect("https");
        assert_eq!(h.repo_url(&id), "https://git.example.com/base/P/r.git");
        let f = UpstreamUrl::parse("file:///srv/git").expect("file");
        assert_eq!(f.repo_url(&id), "file:///srv/git/P/r.git");
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "http://x",
            "ssh://",
            "ssh://u:pw@host/x",
            "https://u:p@host",
            "file://relative",
            "ssh://host:99999",
            "ssh://host/a b",
            "ssh://-oProxyCommand=x/y",
            "ssh://-oFoo/y",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
