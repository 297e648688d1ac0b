//! What the LFS service counts, for `/status` and `/metrics`: objects and bytes held, objects
//! served to clients by where this node got them, downloads from members and the upstream,
//! objects prefetched.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use mirrorfarm_common::status::{LfsHits, LfsStatus};

/// The LFS counters of a node.
#[derive(Debug, Default)]
pub struct LfsStats {
    objects: AtomicU64,
    bytes: AtomicU64,
    served_local: AtomicU64,
    served_member: AtomicU64,
    served_upstream: AtomicU64,
    from_member: AtomicU64,
    from_upstream: AtomicU64,
    prefetched: AtomicU64,
    evicted: AtomicU64,
}

impl LfsStats {
    /// Sets what the store held at start.
    pub fn start_with(&self, objects: u64, bytes: u64) {
        self.objects.store(objects, Relaxed);
        self.bytes.store(bytes, Relaxed);
    }

    /// An object landed in the store.
    pub fn stored(&self, size: u64) {
        self.objects.fetch_add(1, Relaxed);
        self.bytes.fetch_add(size, Relaxed);
    }

    /// Objects left the store.
    pub fn evicted(&self, n: u64, bytes: u64) {
        self.evicted.fetch_add(n, Relaxed);
        let _ = self
            .objects
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
        let _ = self
            .bytes
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(bytes)));
    }

    /// An object went to a client; `source` is `local`, `member` or `upstream`.
    pub fn served(&self, source: &str) {
        match source {
            "local" => &self.served_local,
            "member" => &self.served_member,
            _ => &self.served_upstream,
        }
        .fetch_add(1, Relaxed);
    }

    /// An object came from another member.
    pub fn member_download(&self) {
        self.from_member.fetch_add(1, Relaxed);
    }

    /// An object came from the upstream.
    pub fn upstream_download(&self) {
        self.from_upstream.fetch_add(1, Relaxed);
    }

    /// An object came by prefetch.
    pub fn prefetched(&self) {
        self.prefetched.fetch_add(1, Relaxed);
    }

    /// The counters now (`downloading`, `max_bytes`: the caller's to fill in).
    pub fn snapshot(&self) -> LfsStatus {
        LfsStatus {
            objects: self.objects.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            max_bytes: None,
            hits: LfsHits {
                local: self.served_local.load(Relaxed),
                member: self.served_member.load(Relaxed),
                upstream: self.served_upstream.load(Relaxed),
            },
            member_downloads: self.from_member.load(Relaxed),
            upstream_downloads: self.from_upstream.load(Relaxed),
            prefetched: self.prefetched.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            downloading: 0,
        }
    }
}
