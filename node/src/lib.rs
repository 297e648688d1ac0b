//! A mirrorfarm mirror node: keeps an exact, crash-safe copy of upstream git repositories and
//! serves clones and fetches over smart HTTP and SSH.
//!
//! The flow, and where it lives (each layer uses only the ones above it):
//! - **config** ([`config`], [`upstream_url`], [`names`]): the properties file → a validated
//!   [`config::Config`], before anything is bound.
//! - **store** ([`home`], [`store`], [`identity`], [`mirror_repo`], [`packed_refs`]): the home's
//!   layout, the durable records, the node's identity and keys, the bare mirrors and their refs.
//! - **plumbing** ([`gitcmd`], [`upload_pack`], [`pktline`], [`http_listener`]): running the
//!   system git (the one place `git upload-pack` starts), and the HTTP listener that both the
//!   client-facing side and the farm channel serve on.
//! - **state** ([`state`], [`shared`], [`metrics`]): what the node knows of each repository now,
//!   and what every part shares (the access gate included).
//! - **sync** ([`sync`]): keeping the mirrors in step with the upstream (the scheduler asks a
//!   [`sync::coordinator::Coordinator`] where to fetch from and when to flip).
//! - **farm** ([`farm`], beside sync): membership by gossip, the farm channel (HTTPS with mutual
//!   TLS), leaders and consistent flips; it is the coordinator of a node in a farm.
//! - **upstream** ([`forge`], [`secrets`]): what the upstream holds, asked of its forge's API, a
//!   grokmirror manifest or a `file://` tree (the inventory), and its webhooks' signatures.
//! - **access** ([`access`]): credentials checked with the upstream, cached decisions, sessions.
//! - **serve** ([`serve`], [`status`]): smart HTTP, SSH, `/status`.
//! - [`node`]: starts and stops all of it.

pub mod access;
pub mod config;
pub mod disk_size;
pub mod farm;
pub mod forge;
pub mod gitcmd;
pub mod home;
pub mod http_listener;
pub mod identity;
pub mod lfs;
pub mod metrics;
pub mod mirror_repo;
pub mod names;
pub mod node;
pub mod packed_refs;
pub mod pktline;
pub mod repo_map;
pub mod secrets;
pub mod selection;
pub mod series;
pub mod serve;
pub mod shared;
pub mod staged_refs;
pub mod state;
pub mod status;
pub mod store;
pub mod summary;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod upload_pack;
pub mod upstream_url;
