//! The store actor: owns the replicated key-value state, applies committed entries, answers
//! reads, and writes and installs snapshots.

mod actor;
pub(crate) mod cautious;
pub mod events;
pub mod filter;
pub mod sessions;
pub mod snapshot;
pub mod state;

pub use actor::{EventsResult, Frozen, StoreHandle, StoreProgress, StoreStopped};
