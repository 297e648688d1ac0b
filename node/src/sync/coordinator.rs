//! What the scheduler asks of whoever coordinates it with other nodes (the farm), and the answer
//! of a node alone: fetch from the upstream, flip as soon as a state is staged.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::OwnedSemaphorePermit;

use crate::names::{RefName, RepoId};
use crate::sync::fetch::Staged;

/// Where one sync fetches from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The upstream (all its refs and HEAD).
    Upstream,
    /// Another member: the state it staged, over the farm channel.
    Member {
        /// The smart-HTTP URL of its mirror.
        url: String,
        /// `-c` settings for git (client certificate, CA, how the member's name resolves).
        git_config: Vec<String>,
        /// The branch HEAD names in its staged state.
        head_hint: Option<RefName>,
    },
}

/// Whether to flip to a staged state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Flip now; the generation to serve it as, when the farm decided one.
    Flip(Option<u64>),
    /// The state was superseded while it waited: keep serving `served`, sync again at once.
    Again {
        /// Hash of the state still served.
        served: String,
    },
}

/// A boxed future borrowing the coordinator: the verdict, and the concurrency permit when it was
/// kept (`None`: given back while waiting).
pub type Waiting<'a> =
    Pin<Box<dyn Future<Output = (Verdict, Option<OwnedSemaphorePermit>)> + Send + 'a>>;

/// A boxed future of a listing another member took for the farm (`None`: list here).
pub type Listing<'a> =
    Pin<Box<dyn Future<Output = Option<crate::forge::inventory::Wanted>> + Send + 'a>>;

/// Coordinates syncs with other nodes.
pub trait Coordinator: Send + Sync + 'static {
    /// The repositories to mirror as the member that lists the upstream for the farm lists them
    /// (`fresh`: a listing taken after this call); `None` when this node lists them itself.
    fn listing(&self, fresh: bool) -> Listing<'_>;
    /// Where to fetch `id` from now.
    fn source(&self, id: &RepoId) -> Source;
    /// Whether this node fetches `id` from the upstream now (it leads it, or is alone).
    fn fetches_upstream(&self, id: &RepoId) -> bool {
        matches!(self.source(id), Source::Upstream)
    }
    /// A client asked this node for a sync of `id`: passed on to whoever fetches it from the
    /// upstream; true when that is another member (this node then syncs when the leader's word
    /// that it staged a new state arrives, or when it sees itself behind the leader).
    fn requested(&self, id: &RepoId) -> bool;
    /// Whether another member fetches `id` from the upstream and its gossip shows a state of it:
    /// this node follows that gossip and needs no periodic sync of it.
    fn led_elsewhere(&self, _id: &RepoId) -> bool {
        false
    }
    /// Whether `id` is fetched from another member that holds no state of it yet: a fetch from
    /// there would be refused; its word (or gossip) that it staged one starts the sync here.
    fn awaits_leader(&self, _id: &RepoId) -> bool {
        false
    }
    /// `staged` is complete: resolves when the node may flip to it. The
    /// concurrency `permit` is handed back, or given up while waiting (the scheduler then takes
    /// one again to flip).
    fn staged<'a>(
        &'a self,
        id: &'a RepoId,
        staged: &'a Staged,
        permit: OwnedSemaphorePermit,
    ) -> Waiting<'a>;
}

/// A node without a farm.
pub struct Alone;

impl Coordinator for Alone {
    fn listing(&self, _: bool) -> Listing<'_> {
        Box::pin(std::future::ready(None))
    }
    fn source(&self, _: &RepoId) -> Source {
        Source::Upstream
    }
    fn requested(&self, _: &RepoId) -> bool {
        false
    }
    fn staged<'a>(
        &'a self,
        _: &'a RepoId,
        _: &'a Staged,
        permit: OwnedSemaphorePermit,
    ) -> Waiting<'a> {
        Box::pin(std::future::ready((Verdict::Flip(None), Some(permit))))
    }
}
