//! `mirror.admins`: the upstream users who may log in to `/admin` with their upstream
//! credentials (checked with the upstream's smart-HTTP endpoint, as git's are).

use mirrorfarm_common::config::{ConfigError, Located, Validator};

/// The key.
pub const KEY: &str = "mirror.admins";

/// Reads `mirror.admins` (a comma list of user names); `auth_url`: where credentials are
/// checked (without one, nobody could log in with upstream credentials).
pub fn admins(
    l: &Option<Located>,
    v: &Validator<'_>,
    auth_url: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let Some(l) = l else { return Ok(Vec::new()) };
    let mut names: Vec<String> = Vec::new();
    for name in l.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
        {
            return Err(v.at(
                l,
                KEY,
                &format!("{name:?} is not a user name (no spaces, control characters or ':')"),
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err(v.at(l, KEY, "must name at least one upstream user"));
    }
    if auth_url.is_none() {
        return Err(v.at(
            l,
            KEY,
            "the admins log in with upstream credentials: set plugin.mirroring.upstream.auth.url \
             (or use an https:// upstream)",
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(value: &str) -> Option<Located> {
        Some(Located {
            value: value.into(),
            line: 3,
        })
    }

    #[test]
    fn a_comma_list_of_user_names() {
        let v = Validator {
            file: Path::new("/etc/m.properties"),
        };
        let url = Some("https://up/scm");
        assert_eq!(
            admins(&at(" alice, bob ,alice,"), &v, url).expect("valid"),
            ["alice", "bob"]
        );
        assert!(admins(&None, &v, None).expect("unset").is_empty());
        for bad in ["", " , ", "al ice", "a:b"] {
            let e = admins(&at(bad), &v, url).expect_err(bad).to_string();
            assert!(e.contains(":3") && e.contains(KEY), "{e}");
        }
        let e = admins(&at("alice"), &v, None)
            .expect_err("no auth url")
            .to_string();
        assert!(e.contains("auth.url"), "{e}");
    }
}
