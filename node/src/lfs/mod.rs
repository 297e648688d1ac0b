//! Git LFS on a node (issue 14, being built; nothing serves it yet): object IDs and pointer files,
//! the Batch API's messages, the download token any member verifies, the verified object store
//! with least-recently-used eviction, and the scan of new commits for pointers (what a sync will
//! fetch before anyone asks).

pub mod batch;
pub mod oid;
pub mod pointer;
pub mod scan;
pub mod store;
pub mod token;

pub use oid::LfsOid;
pub use pointer::Pointer;
