//! A mirrorfarm mirror node: keeps an exact, crash-safe copy of upstream git repositories and
//! serves clones and fetches over smart HTTP and SSH.

pub mod config;
pub mod farm;
pub mod gitcmd;
pub mod home;
pub mod http_listener;
pub mod identity;
pub mod metrics;
pub mod mirror_repo;
pub mod names;
pub mod node;
pub mod packed_refs;
pub mod pktline;
pub mod serve;
pub mod shared;
pub mod state;
pub mod status;
pub mod store;
pub mod sync;
pub mod upload_pack;
pub mod upstream_url;
