//! Serving clients: smart HTTP, SSH, and the pieces they share.

pub mod http;
pub mod http_server;
pub mod pack_cache;
pub mod path;
pub mod pktline;
pub mod refs_cache;
pub mod router;
pub mod session_cookie;
pub mod ssh;
pub mod ssh_v2;
pub mod upload_pack;
pub mod v2_request;
