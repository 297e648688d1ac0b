//! The Git LFS keys: where the upstream's LFS server is (`plugin.mirroring.upstream.lfs.url`),
//! prefetch (`mirror.lfs.prefetch`, `mirror.lfs.prefetch.maxSize`), the store's bound
//! (`mirror.lfs.maxSize`) and how long a download action's token lasts (`mirror.lfs.tokenTtl`).

use std::time::Duration;

use mirrorfarm_common::config::{ConfigError, Validator};

use crate::config::file::FileConfig;
use crate::config::{parse_size, AccessConfig};
use crate::names::RepoId;

/// The validated LFS settings.
#[derive(Debug, Clone)]
pub struct LfsConfig {
    /// The upstream's LFS endpoint as a template with `{project}` and `{repo}`: the key's value,
    /// or `<auth-url>/{project}/{repo}.git/info/lfs` (what Bitbucket, GitHub, GitLab and Gitea
    /// use). `None`: no HTTP(S) endpoint is known (an ssh:// upstream without an auth URL); the
    /// upstream's `git-lfs-authenticate` names one then.
    pub endpoint: Option<String>,
    /// `mirror.lfs.prefetch` (default true): after a sync that brings new commits, the
    /// repository's leader fetches the LFS objects they point to.
    pub prefetch: bool,
    /// `mirror.lfs.prefetch.maxSize` (default 1 GiB): the most bytes of objects one sync prefetches.
    pub prefetch_max: u64,
    /// `mirror.lfs.maxSize` (default: no bound): the store's size, kept by evicting the least
    /// recently used objects.
    pub max_size: Option<u64>,
    /// `mirror.lfs.tokenTtl` (default 900 s): how long a download action's token opens its object.
    pub token_ttl: Duration,
}

impl LfsConfig {
    /// The upstream's LFS endpoint for `repo` (no trailing slash), if one is known.
    pub fn endpoint_of(&self, repo: &RepoId) -> Option<String> {
        self.endpoint.as_ref().map(|t| {
            t.replace("{project}", repo.project.as_str())
                .replace("{repo}", repo.repo.as_str())
        })
    }
}

const SIZE_HINT: &str = "must be a size such as 0, 512m, 2g or 1048576";

/// Validates the LFS keys.
pub fn lfs_config(
    fc: &FileConfig,
    v: &Validator<'_>,
    auth: &AccessConfig,
) -> Result<LfsConfig, ConfigError> {
    let key = "plugin.mirroring.upstream.lfs.url";
    let endpoint = match &fc.lfs_url {
        Some(l) => {
            let t = l.value.trim().trim_end_matches('/');
            let scheme_ok = ["https://", "http://"]
                .iter()
                .any(|s| t.strip_prefix(s).is_some_and(|r| !r.is_empty()));
            if !scheme_ok || t.contains(char::is_whitespace) {
                return Err(v.at(l, key, "must be an http:// or https:// URL"));
            }
            let rest = t.replace("{project}", "").replace("{repo}", "");
            if !t.contains("{project}") || !t.contains("{repo}") || rest.contains(['{', '}']) {
                return Err(v.at(
                    l,
                    key,
                    "must name the repository with {project} and {repo} (and no other {…})",
                ));
            }
            Some(t.to_owned())
        }
        None => auth
            .auth_url
            .as_ref()
            .map(|u| format!("{u}/{{project}}/{{repo}}.git/info/lfs")),
    };
    let size = |l: &Option<mirrorfarm_common::config::Located>, key: &str, default: u64| match l {
        None => Ok(default),
        Some(l) => parse_size(&l.value).ok_or_else(|| v.at(l, key, SIZE_HINT)),
    };
    let max_size = match size(&fc.lfs_max, "mirror.lfs.maxSize", 0)? {
        0 => None,
        n => Some(n),
    };
    Ok(LfsConfig {
        endpoint,
        prefetch: v.boolean(&fc.lfs_prefetch, "mirror.lfs.prefetch", true)?,
        prefetch_max: size(&fc.lfs_prefetch_max, "mirror.lfs.prefetch.maxSize", 1 << 30)?,
        max_size,
        token_ttl: Duration::from_secs(v.number(
            &fc.lfs_token_ttl,
            "mirror.lfs.tokenTtl",
            60..=86_400,
            900,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, FileConfig};
    use std::path::Path;

    const BASE: &str = "application.mode=mirror\nsetup.displayName=M\nsetup.baseUrl=https://farm\nplugin.mirroring.upstream.url=ssh://git@up:7999\nmirror.repos=P/a\nplugin.mirroring.upstream.auth.url=https://up/scm\n";

    fn load(extra: &str) -> Result<Config, String> {
        let f = Path::new("/h/mirrorfarm.properties");
        let text = format!("{BASE}{extra}");
        FileConfig::parse(f, &text)
            .and_then(|fc| Config::from_file(fc, f))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_endpoint_defaults_to_the_auth_url_and_takes_a_template() {
        let id = crate::names::RepoId::parse("P/a").expect("id");
        let c = load("").expect("defaults");
        assert_eq!(
            c.lfs.endpoint_of(&id).as_deref(),
            Some("https://up/scm/P/a.git/info/lfs")
        );
        assert!(c.lfs.prefetch);
        assert_eq!(c.lfs.prefetch_max, 1 << 30);
        assert_eq!(c.lfs.max_size, None);
        let c = load("plugin.mirroring.upstream.lfs.url=https://lfs.example.com/{project}/{repo}/\nmirror.lfs.maxSize=2g\nmirror.lfs.prefetch=false\n").expect("set");
        assert_eq!(
            c.lfs.endpoint_of(&id).as_deref(),
            Some("https://lfs.example.com/P/a")
        );
        assert_eq!(c.lfs.max_size, Some(2 << 30));
        assert!(!c.lfs.prefetch);
        for (bad, line_key) in [
            (
                "plugin.mirroring.upstream.lfs.url=https://lfs/{project}\n",
                ":7: plugin.mirroring.upstream.lfs.url",
            ),
            (
                "plugin.mirroring.upstream.lfs.url=ftp://lfs/{project}/{repo}\n",
                ":7: plugin.mirroring.upstream.lfs.url",
            ),
            (
                "plugin.mirroring.upstream.lfs.url=https://lfs/{project}/{repo}/{x}\n",
                ":7: plugin.mirroring.upstream.lfs.url",
            ),
            ("mirror.lfs.maxSize=lots\n", ":7: mirror.lfs.maxSize"),
            ("mirror.lfs.prefetch=yes\n", ":7: mirror.lfs.prefetch"),
            ("mirror.lfs.tokenTtl=5\n", ":7: mirror.lfs.tokenTtl"),
        ] {
            let msg = load(bad).expect_err(bad);
            assert!(msg.contains(line_key), "{bad}: {msg}");
        }
    }
}
