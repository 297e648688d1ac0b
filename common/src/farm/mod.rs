//! What members of a farm and its load balancer say to each other over the farm channel: one
//! HTTPS listener per member (on the gossip port, TCP) with mutual TLS under the farm CA. Joining
//! is the one route a client without a farm certificate may use; describing a member, passing a
//! sync on, telling what it staged and fetching git objects need a certificate from the farm CA.

pub mod client;
pub mod error;
pub mod messages;
pub mod proof;
pub mod tls;

pub use error::FarmError;

/// The join route (no client certificate needed).
pub const JOIN: &str = "/farm/join";
/// Where a member serves (client certificate needed).
pub const DESCRIBE: &str = "/farm/describe";
/// A sync passed on by another member (a node's certificate needed).
pub const SYNC: &str = "/farm/sync";
/// A member's word that it staged a new state of a repository (a node's certificate needed).
pub const STAGED: &str = "/farm/staged";
/// Prefix of the git objects a member serves its peers: `<GIT>/<PROJECT>/<repo>.git/…` (smart
/// HTTP, with the state it staged; a node's certificate needed).
pub const GIT: &str = "/farm/git";
/// Sessions: `GET` every live one a member holds, `POST` changed ones to merge (nodes only).
pub const SESSIONS: &str = "/farm/sessions";
