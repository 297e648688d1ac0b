//! Keeping the mirrors in step with the upstream: what to mirror, one sync, and the scheduler.

pub mod classify;
pub mod coordinator;
pub mod fetch;
pub mod notify;
pub mod probe;
pub mod publish;
pub mod queue;
pub mod record;
pub mod recover;
pub mod scheduler;
pub mod transport;
