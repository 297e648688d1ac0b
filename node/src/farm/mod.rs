//! The farm: nodes that mirror the same upstream under one hostname. Membership — who is alive,
//! what each says about itself (chitchat gossip over UDP, failure detection tuned to notice a
//! dead node within 1–2 s), whether each agrees on the farm's configuration — plus who
//! fetches each repository (the leader) and when a new state may be advertised (the flip).
//! Gossip is treated as hints: nothing is fetched from, trusted or handed over because of it
//! without the farm's mutually authenticated TLS.

pub mod flip;
pub mod follow;
pub mod keys;
pub mod leader;
pub mod membership;
pub mod nudge;
pub mod setup;
pub mod signing;
pub mod trust;
pub mod verify;
pub mod view;
