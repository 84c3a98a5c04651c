//! A simulated cairn cluster on madsim: each node is a madsim node with its own IP running the
//! real node actors and HTTP actor, on a [`SimDisk`] that the harness owns so it survives
//! restarts. The harness injects faults (kills, restarts, crashes that lose unsynced writes,
//! pauses, partitions, link clogs, packet loss) and talks to the cluster only through the HTTP
//! API, from client nodes of its own.
//!
//! Everything here exists only under `--cfg madsim` (`cargo sim`).

#![forbid(unsafe_code)]

#[cfg(all(feature = "sim", not(madsim)))]
compile_error!("the `sim` feature needs --cfg madsim: run `cargo sim`, not `cargo test --features sim`");

#[cfg(madsim)]
mod cluster;
#[cfg(madsim)]
mod faults;
#[cfg(madsim)]
mod seeds;

#[cfg(madsim)]
pub use cluster::{ClusterOptions, SimCluster, SimNode};
#[cfg(madsim)]
pub use seeds::{Replay, run_seed, seeds};
