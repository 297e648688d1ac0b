//! The farm: nodes that mirror the same upstream under one hostname. Membership — who is alive,
//! what each says about itself (chitchat gossip over UDP, failure detection tuned to notice a
//! dead node within 1–2 s), whether each agrees on the farm's configuration — plus who
//! fetches each repository (the leader), when a new state may be advertised (the flip), and the
//! farm channel (HTTPS with mutual TLS on the gossip port) members talk over.
//! Gossip is treated as hints: nothing is fetched from, trusted or handed over because of it
//! without the farm's mutually authenticated TLS.

pub mod channel;
pub mod coordinate;
pub mod flip;
pub mod follow;
pub mod gossip_bytes;
pub mod heard;
pub mod heartbeats;
pub mod in_step;
pub mod keys;
pub mod lbs;
pub mod leader;
pub mod member;
pub mod membership;
pub mod nudge;
pub mod own_states;
pub mod pace;
pub mod repo_states;
pub mod selection;
pub mod sessions;
pub mod setup;
pub mod signing;
pub mod trust;
pub mod verify;
pub mod view;

use std::path::PathBuf;
use std::sync::Arc;

use mirrorfarm_common::farm::client::FarmClient;
use parking_lot::RwLock;

use crate::config::FarmConfig;
use crate::shared::Shared;
use crate::sync::scheduler::SyncHandle;

/// Why this node could not take its place in the farm.
#[derive(Debug, thiserror::Error)]
pub enum FarmSetupError {
    /// No seed let it in (or one refused it).
    #[error("{0}")]
    Join(#[from] mirrorfarm_common::farm::FarmError),
    /// No seed answered in time.
    #[error("no seed let this node join within {secs} s: {last}")]
    NoSeed {
        /// How long it tried.
        secs: u64,
        /// The last seed's error.
        last: String,
    },
    /// The farm CA or a certificate.
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
    /// The state store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A file in the home.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The upstream key handed over does not load.
    #[error("farm upstream key: {0}")]
    UpstreamKey(String),
    /// A startup task failed.
    #[error("farm setup task failed: {0}")]
    Task(String),
    /// The farm listener could not be bound.
    #[error("cannot listen on {addr} (farm, TCP): {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// The files of this node's farm certificate (what git presents when it fetches from a member).
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The farm CA certificate.
    pub ca: PathBuf,
    /// A directory holding the farm CA certificate alone: git's `http.sslCAPath`, so its TLS
    /// library trusts that CA only (by default it also loads the system's hundreds of CAs, which
    /// cost every member fetch ~50 ms here and widen what it would trust).
    pub ca_dir: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// Its key (0600).
    pub key: PathBuf,
}

/// This node's place in its farm: the view gossip gives, the client it talks to members with.
pub struct Farm {
    /// What every part of the node shares.
    pub shared: Arc<Shared>,
    /// `farm.*`.
    pub config: FarmConfig,
    /// The farm as gossip shows it (`None` until the first round).
    pub view: RwLock<Option<view::FarmView>>,
    /// Woken (all waiters) each time the view is rebuilt.
    pub view_updated: tokio::sync::Notify,
    /// What members said they staged that gossip has not carried yet (merged into the view).
    pub heard: parking_lot::Mutex<heard::Heard>,
    /// This node's ref states as peers ask for them.
    pub own_states: parking_lot::Mutex<own_states::OwnStates>,
    /// The other members' ref states as this node holds them.
    pub states: parking_lot::Mutex<repo_states::StatesCache>,
    /// Woken when other members' news came: an answer about a member's states, a member's word
    /// (own changes wake `shared.repos_changed`, paced: [`pace`]).
    pub states_news: tokio::sync::Notify,
    /// Requests to other members over the farm channel.
    pub client: FarmClient,
    /// This node's farm certificate files.
    pub cert_files: CertFiles,
    /// Sync triggers of this node.
    pub sync: SyncHandle,
    /// The load balancers' reports.
    pub lbs: lbs::LoadBalancers,
}

impl Farm {
    /// The other members of the current view, with their farm addresses.
    pub fn others(&self) -> Vec<(String, std::net::SocketAddr)> {
        match self.view.read().as_ref() {
            Some(v) => v
                .members
                .iter()
                .filter(|m| !m.this_node)
                .filter_map(|m| Some((m.node_id.clone(), m.gossip?)))
                .collect(),
            None => Vec::new(),
        }
    }
}
