//! Git LFS on a node: object IDs and pointer files, the Batch API's messages, the download token
//! any member verifies, the verified object store with least-recently-used eviction, downloads
//! that readers follow as they arrive, where objects come from (store, members, the upstream's
//! LFS server) and the scan of new commits for pointers (what a sync fetches before anyone asks).

pub mod batch;
pub mod flight;
pub mod known;
pub mod members;
pub mod metrics;
pub mod oid;
pub mod pointer;
pub mod prefetch;
pub mod scan;
pub mod service;
pub mod ssh_auth;
pub mod stats;
pub mod store;
pub mod token;
pub mod upstream;

pub use oid::LfsOid;
pub use pointer::Pointer;
pub use service::Lfs;
