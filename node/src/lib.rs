//! A cairn node: the raft, store and storage actors and the peer transport, written once for
//! tokio and madsim.
//!
//! # Layout
//! - [`backup`]: describing a saved snapshot file and restoring a new cluster from it.
//! - [`data_dir`]: the data directory's lock and identity stamp, checked at every start.
//! - [`gossip`]: the gossip-notifier actor (SWIM membership, metadata, change notices).
//! - [`metrics`]: the node's Prometheus metrics, one registry per node.
//! - [`rt`]: the runtime seam (spawn, time, randomness, deterministic watch, openraft runtime).
//! - [`storage`]: the disk seam (real and simulated) and the write-ahead log.

#![forbid(unsafe_code)]

#[cfg(all(feature = "sim", not(madsim)))]
compile_error!("the `sim` feature needs --cfg madsim: run `cargo sim`, not `cargo test --features sim`");

pub mod acl;
pub mod api;
pub mod backup;
pub mod bounded_decode;
pub mod bugs;
pub mod command;
pub mod config;
pub mod data_dir;
pub mod gossip;
#[cfg(test)]
mod hostile_bytes;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod record;
pub mod rt;
pub mod storage;
pub mod store;
pub mod tls;
pub mod transport;
pub mod validate;

pub use node::{ExportedSnapshot, Node};
