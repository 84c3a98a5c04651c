//! The store actor: owns the replicated key-value state, applies committed entries, answers
//! reads, and writes and installs snapshots.

mod actor;
pub mod sessions;
pub mod snapshot;
pub mod state;

pub use actor::{Frozen, StoreHandle, StoreProgress, StoreStopped};
