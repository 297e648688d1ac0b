//! Git LFS over SSH: `git-lfs-authenticate <path> download|upload` answered with the LFS
//! endpoint and a header, as git-lfs's server-discovery document says
//! (<https://github.com/git-lfs/git-lfs/blob/main/docs/api/server-discovery.md>). A download's
//! header is an access token naming the SSH user, valid for that repository's batch API on any
//! member; an upload is pointed at the upstream's LFS server, where the user's own credentials
//! decide. `git-lfs-transfer` (the pure-SSH protocol) is refused at once, so git-lfs falls back
//! to HTTPS.

use axum::http::{header, HeaderMap};
use russh::server::Msg;
use russh::Channel;

use crate::config::Access;
use crate::lfs::token::ACCESS_SCHEME;
use crate::lfs::upstream::AuthenticateDoc;
use crate::names::RepoId;
use crate::serve::path::repo_of_ssh_path;
use crate::serve::ssh_keys::KeyGrant;
use crate::serve::Serving;

/// Whether an SSH command is one of git-lfs's.
pub fn is_lfs_command(command: &str) -> bool {
    let verb = command.split_whitespace().next().unwrap_or_default();
    verb == "git-lfs-authenticate" || verb == "git-lfs-transfer"
}

/// The SSH user an `Authorization: RemoteAuth <token>` header was issued to, if it opens `id`.
pub fn access_user(serving: &Serving, id: &RepoId, headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case(ACCESS_SCHEME) {
        return None;
    }
    let now = crate::store::now_ms() as u64 / 1000;
    serving.lfs.tokens.verify_access(token, id, now).ok()
}

/// The server-discovery answer for `command`, or the message refusing it.
pub async fn answer(
    serving: &Serving,
    command: &str,
    grant: Option<&KeyGrant>,
) -> Result<String, String> {
    let mut words = command.split_whitespace();
    match words.next() {
        Some("git-lfs-transfer") => {
            return Err(
                "git-lfs-transfer is not served here; git-lfs uses HTTPS (git-lfs-authenticate)"
                    .into(),
            )
        }
        Some("git-lfs-authenticate") => {}
        _ => return Err("not an LFS command".into()),
    }
    let (Some(path), Some(op), None) = (words.next(), words.next(), words.next()) else {
        return Err("usage: git-lfs-authenticate <path> download|upload".into());
    };
    let id = repo_of_ssh_path(path)?;
    let anonymous = serving.config.access == Access::Anonymous;
    let not_here = || format!("repository {id} is not mirrored here");
    let may_read = match grant {
        Some(g) => serving.keys.may_read(g, &id).await,
        None => false,
    };
    if !anonymous && !may_read {
        return Err(not_here());
    }
    if matches!(serving.lookup(&id), crate::state::Lookup::Unknown) {
        return Err(not_here());
    }
    let ttl = serving.lfs.config.token_ttl.as_secs();
    let doc = match op {
        "download" => {
            let mut header = std::collections::BTreeMap::new();
            if let (false, Some(g)) = (anonymous, grant) {
                let expiry = crate::store::now_ms() as u64 / 1000 + ttl;
                let token = serving.lfs.tokens.issue_access(&id, &g.user, expiry);
                header.insert(
                    "Authorization".to_owned(),
                    format!("{ACCESS_SCHEME} {token}"),
                );
            }
            AuthenticateDoc {
                href: format!("{}/scm/{id}.git/info/lfs", serving.config.base_url),
                header,
                expires_in: Some(ttl as i64),
                expires_at: None,
            }
        }
        "upload" => {
            let upstream = serving.lfs.upstream.endpoint_of(&id);
            match (anonymous, upstream) {
                (false, Some(href)) => AuthenticateDoc {
                    href,
                    header: Default::default(),
                    expires_in: None,
                    expires_at: None,
                },
                (_, named) => {
                    return Err(format!(
                        "this mirror is read-only for LFS objects: push them to {}",
                        named.unwrap_or_else(|| "the upstream".into())
                    ))
                }
            }
        }
        other => return Err(format!("unknown LFS operation {other:?}")),
    };
    serde_json::to_string(&doc).map_err(|e| e.to_string())
}

/// Runs an LFS command on an SSH channel.
pub async fn exec(
    serving: &Serving,
    ch: Channel<Msg>,
    command: &str,
    grant: Option<&KeyGrant>,
) -> Result<(), russh::Error> {
    match answer(serving, command, grant).await {
        Ok(json) => {
            ch.data_bytes(bytes::Bytes::from(format!("{json}\n")))
                .await?;
            ch.exit_status(0).await?;
            ch.eof().await?;
            ch.close().await
        }
        Err(msg) => crate::serve::ssh::fail(&ch, &msg, false).await,
    }
}
