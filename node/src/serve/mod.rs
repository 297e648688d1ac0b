//! Serving clients: smart HTTP, SSH, and the pieces they share.

pub mod admin;
pub mod admin_ui;
pub mod app_state;
pub mod generation;
pub mod http;
pub mod http_access;
pub mod lfs;
pub mod lfs_batch;
pub mod lfs_ssh;
pub mod ls_refs;
pub mod pack_cache;
pub mod path;
pub mod processes;
pub mod push;
pub mod ready;
pub mod receive_pack;
pub mod refs_cache;
pub mod reply;
pub mod repos_page;
pub mod router;
pub mod served;
pub mod session_cookie;
pub mod ssh;
pub mod ssh_keys;
pub mod ssh_out;
pub mod ssh_v0;
pub mod ssh_v2;
pub mod upstream_projects;
pub mod v0_advert;
pub mod v2_request;
pub mod webhook;

use std::sync::Arc;

use crate::shared::Shared;

/// What serving works with: the node's shared core plus serving's own caches.
pub struct Serving {
    /// What every part of the node shares.
    pub shared: Arc<Shared>,
    /// Cached upload-pack responses.
    pub packs: Arc<pack_cache::PackCache>,
    /// Ref advertisements from memory.
    pub refs: refs_cache::RefsCache,
    /// The SSH keys the farm knows (authenticated mode).
    pub keys: ssh_keys::AuthorizedKeys,
    /// Places for upload-pack processes (`mirror.serve.maxProcesses`).
    pub processes: processes::Processes,
    /// Sync triggers (a push through the farm asks for one).
    pub sync: crate::sync::scheduler::SyncHandle,
    /// Keys the admin page's CSRF tokens.
    pub admin_csrf: admin_ui::csrf::CsrfKey,
    /// Admins' upstream logins: failures per user, a repository the upstream guards.
    pub admin_logins: admin_ui::upstream_login::Logins,
    /// Turns true when the node stops (long polls end early).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl std::ops::Deref for Serving {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}
