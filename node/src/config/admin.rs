//! `mirror.admin.tokenFile`: the bearer token that opens the admin routes (the sync trigger,
//! `/metrics`, the full `/status`) to callers other than the node's own host. The file is read at
//! start; only its SHA-256 is kept, and a presented token is compared in constant time.

use std::path::Path;

use mirrorfarm_common::config::{ConfigError, Located, Validator};
use sha2::{Digest, Sha256};

/// The admin token, as its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken([u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl AdminToken {
    /// A token from its text (surrounding whitespace ignored).
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.trim().as_bytes()).into())
    }

    /// Whether `presented` is the token (constant time in its content).
    pub fn matches(&self, presented: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        self.0
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The shortest token accepted.
const MIN_LEN: usize = 16;

/// Reads `mirror.admin.tokenFile`, relative paths from the configuration file's directory.
pub fn admin_token(
    l: &Option<Located>,
    v: &Validator<'_>,
    config_file: &Path,
) -> Result<Option<AdminToken>, ConfigError> {
    const KEY: &str = "mirror.admin.tokenFile";
    let Some(l) = l else { return Ok(None) };
    let path = config_file
        .parent()
        .unwrap_or(Path::new("."))
        .join(&l.value);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| v.at(l, KEY, &format!("cannot read {}: {e}", path.display())))?;
    if text.trim().chars().count() < MIN_LEN || text.trim().contains(char::is_whitespace) {
        return Err(v.at(
            l,
            KEY,
            &format!(
                "{} must hold one token of at least {MIN_LEN} characters",
                path.display()
            ),
        ));
    }
    Ok(Some(AdminToken::new(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let t = AdminToken::new("s3cret-admin-token-0123\n");
        assert!(t.matches("s3cret-admin-token-0123"));
        assert!(!t.matches("s3cret-admin-token-0124"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "AdminToken(***)");
    }
}
