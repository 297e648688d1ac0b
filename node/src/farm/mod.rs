//! The farm: nodes that mirror the same upstream under one hostname. This part is membership —
//! who is alive, what each says about itself (by chitchat gossip over UDP, failure detection tuned
//! to notice a dead node within about a second), and whether each agrees on the farm's
//! configuration. Gossip is treated as hints: it is shown on /status, and nothing is routed or
//! trusted because of it.

pub mod keys;
pub mod leader;
pub mod membership;
pub mod setup;
pub mod trust;
