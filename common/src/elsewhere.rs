//! A node's way of saying "not here, but another member may": the header it sets on a 503 for a
//! repository it does not serve right now (not synchronized yet, or withheld while it catches up
//! with the farm). The LB then sends the same request to another member instead of answering
//! the client with the 503 — nothing was served, so a read is safe to send again.

/// The header's name (its value says why: [`WITHHELD`] or [`NOT_READY`]).
pub const HEADER: &str = "x-mirrorfarm-elsewhere";
/// The repository is withheld on this node (it is behind the farm, or cut off).
pub const WITHHELD: &str = "withheld";
/// The repository is not synchronized on this node yet.
pub const NOT_READY: &str = "not-ready";
