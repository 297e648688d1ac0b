//! The access keys: where credentials are checked (`plugin.mirroring.upstream.auth.url`, its CA),
//! how long decisions are trusted (`mirror.auth.*`), sessions (`hazelcast.http.sessions`,
//! `server.session.timeout`) and how long a push waits for the farm (`mirror.push.syncWait`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mirrorfarm_common::config::{ConfigError, Validator};

use crate::config::file::FileConfig;
use crate::config::Access;
use crate::upstream_url::UpstreamUrl;

/// Where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// Every live member holds every session (the farm channel carries them).
    Replicated,
    /// A session stays on the member that issued it (the LB's stickiness keeps users there).
    Local,
}

/// The validated access settings.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// `plugin.mirroring.upstream.auth.url` (default: the upstream URL when it is https://), without
    /// trailing slash: `<auth-url>/<PROJECT>/<repo>.git/info/refs` is asked about credentials, and
    /// pushes go there.
    pub auth_url: Option<String>,
    /// `plugin.mirroring.upstream.tls.caFile`: PEM certificates trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// `mirror.auth.cacheTtl` (default 300 s): how long a decision of the upstream is reused.
    pub cache_ttl: Duration,
    /// `mirror.auth.offlineTtl` (default 3600 s): how long past its TTL a grant keeps working while
    /// the upstream cannot be asked.
    pub offline_ttl: Duration,
    /// `hazelcast.http.sessions` (default `replicated`).
    pub sessions: SessionMode,
    /// `server.session.timeout` (default 1800 s): a session unused this long ends.
    pub session_timeout: Duration,
    /// `mirror.push.syncWait` (default 10 s): how long a push's answer waits for the farm to
    /// advertise what was pushed.
    pub push_sync_wait: Duration,
}

impl AccessConfig {
    /// Whether credentials would cross the network in clear.
    pub fn auth_url_in_clear(&self) -> bool {
        self.auth_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://"))
    }
}

/// Validates the access keys (relative paths from the configuration file's directory).
pub fn access_config(
    fc: &FileConfig,
    v: &Validator<'_>,
    file: &Path,
    access: Access,
    upstream: &UpstreamUrl,
) -> Result<AccessConfig, ConfigError> {
    const URL_KEY: &str = "plugin.mirroring.upstream.auth.url";
    let auth_url = match &fc.auth_url {
        Some(l) => {
            let u = l.value.trim().trim_end_matches('/');
            let ok = ["https://", "http://"].iter().any(|s| {
                u.strip_prefix(s).is_some_and(|r| {
                    !r.is_empty()
                        && !r.contains(['@', '?', '#'])
                        && !r.contains(char::is_whitespace)
                })
            });
            if !ok {
                return Err(v.at(
                    l,
                    URL_KEY,
                    "must be an https:// (or http://) URL without credentials, query or fragment",
                ));
            }
            Some(u.to_owned())
        }
        None => match upstream {
            UpstreamUrl::Https { rest } => Some(format!("https://{rest}")),
            _ => None,
        },
    };
    if access == Access::Authenticated && auth_url.is_none() {
        return Err(v.missing(
            URL_KEY,
            "mirror.access=authenticated needs somewhere to check credentials: set \
             plugin.mirroring.upstream.auth.url (the upstream's smart-HTTP base, e.g. \
             https://bitbucket.example.com/scm), or use an https:// upstream, or \
             mirror.access=anonymous",
        ));
    }
    let ca_file = match &fc.upstream_ca_file {
        None => None,
        Some(l) => {
            let path = file.parent().unwrap_or(Path::new(".")).join(&l.value);
            let pem = std::fs::read(&path).map_err(|e| {
                v.at(
                    l,
                    "plugin.mirroring.upstream.tls.caFile",
                    &format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let certs: Vec<_> = <rustls::pki_types::CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(&pem)
                .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>()
                .unwrap_or_default();
            if certs.is_empty() {
                return Err(v.at(
                    l,
                    "plugin.mirroring.upstream.tls.caFile",
                    &format!("{} holds no PEM certificate", path.display()),
                ));
            }
            Some(path)
        }
    };
    let sessions = match &fc.session_mode {
        None => SessionMode::Replicated,
        Some(l) => match l.value.as_str() {
            "replicated" => SessionMode::Replicated,
            "local" => SessionMode::Local,
            _ => {
                return Err(v.at(
                    l,
                    "hazelcast.http.sessions",
                    "must be `replicated` or `local`",
                ))
            }
        },
    };
    Ok(AccessConfig {
        auth_url,
        ca_file,
        cache_ttl: v.seconds(&fc.auth_cache_ttl, "mirror.auth.cacheTtl", 300)?,
        offline_ttl: Duration::from_secs(v.number(
            &fc.auth_offline_ttl,
            "mirror.auth.offlineTtl",
            0..=7 * 86_400,
            3600,
        )?),
        sessions,
        session_timeout: v.seconds(&fc.session_timeout, "server.session.timeout", 1800)?,
        push_sync_wait: Duration::from_secs(v.number(
            &fc.push_sync_wait,
            "mirror.push.syncWait",
            0..=600,
            10,
        )?),
    })
}
