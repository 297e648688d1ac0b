//! What members of a farm and its load balancer say to each other over the farm channel: one
//! HTTPS listener per member (on the gossip port, TCP) with mutual TLS under the farm CA. Joining
//! is the one route a client without a farm certificate may use; describing a member, passing a
//! sync on, telling what it staged and fetching git objects need a certificate from the farm CA.

pub mod client;
pub mod error;
pub mod lfs_client;
pub mod messages;
pub mod proof;
pub mod selection;
pub mod series;
pub mod states;
pub mod tls;

pub use error::FarmError;

/// The join route (no client certificate needed).
pub const JOIN: &str = "/farm/join";
/// Where a member serves (client certificate needed).
pub const DESCRIBE: &str = "/farm/describe";
/// A sync passed on by another member (a node's certificate needed).
pub const SYNC: &str = "/farm/sync";
/// A member's word that the upstream's repositories changed (a webhook said so): list them again
/// now (a node's certificate needed; no body).
pub const RELIST: &str = "/farm/relist";
/// The repositories to mirror as the member that lists the upstream for the farm last listed
/// them: `GET <INVENTORY>?fresh=true|false` → [`messages::Inventory`] (nodes only).
pub const INVENTORY: &str = "/farm/inventory";
/// A load balancer's report of itself (`POST` [`messages::LbReport`]; LBs only): its hostname,
/// certificate and backends, every few seconds to every member.
pub const LB_REPORT: &str = "/farm/lb";
/// A member's word that it staged a new state of a repository (a node's certificate needed).
pub const STAGED: &str = "/farm/staged";
/// Prefix of the git objects a member serves its peers: `<GIT>/<PROJECT>/<repo>.git/…` (smart
/// HTTP, with the state it staged; a node's certificate needed).
pub const GIT: &str = "/farm/git";
/// Members' ref states: `GET <STATES>?since=R` → [`states::StatesAnswer`] (nodes only).
pub const STATES: &str = "/farm/states";
/// Sessions: `GET` every live one a member holds, `POST` changed ones to merge (nodes only).
pub const SESSIONS: &str = "/farm/sessions";
/// Which LFS objects a member holds (`POST` [`messages::LfsHave`]; nodes only).
pub const LFS_HAVE: &str = "/farm/lfs/have";
/// A download from the upstream asked of a repository's leader (`POST` [`messages::LfsFetch`]).
pub const LFS_FETCH: &str = "/farm/lfs/fetch";
/// An LFS object a member holds or is downloading: `GET <LFS_OBJECTS>/<oid>?project=&repo=&size=
/// &fetch=` (`fetch=true`: a leader downloads it from the upstream if the farm has none).
pub const LFS_OBJECTS: &str = "/farm/lfs/objects";

/// The admin page's selection of what to mirror: `GET` a member's, `POST` one to it (nodes only).
pub const SELECTION: &str = "/farm/selection";

/// A member's last hour for the admin page's plots: `GET` (nodes only).
pub const SERIES: &str = "/farm/series";
