//! What the node's HTTP routes share.

use std::sync::Arc;

use crate::farm::Farm;
use crate::serve::Serving;
use crate::sync::scheduler::SyncHandle;

/// State the routes share.
#[derive(Clone)]
pub struct AppState {
    /// The node's core and serving's caches.
    pub shared: Arc<Serving>,
    /// Sync triggers.
    pub sync: SyncHandle,
    /// The farm, in one (for /status).
    pub farm: Option<Arc<Farm>>,
}

impl axum::extract::FromRef<AppState> for Arc<Serving> {
    fn from_ref(s: &AppState) -> Self {
        s.shared.clone()
    }
}
