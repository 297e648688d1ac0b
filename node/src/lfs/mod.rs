//! Git LFS on a node: the object IDs and pointer files, the verified object store, and the scan of
//! new commits for pointers (what a sync would fetch before anyone asks).

pub mod batch;
pub mod oid;
pub mod pointer;
pub mod scan;
pub mod store;
pub mod token;

pub use oid::LfsOid;
pub use pointer::Pointer;
