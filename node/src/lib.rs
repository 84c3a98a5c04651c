//! A cairn node: the raft, store and storage actors and the peer transport, written once for
//! tokio and madsim.
//!
//! # Layout
//! - [`rt`]: the runtime seam (spawn, time, randomness, deterministic watch, openraft runtime).

#![forbid(unsafe_code)]

#[cfg(all(feature = "sim", not(madsim)))]
compile_error!("the `sim` feature needs --cfg madsim: run `cargo sim`, not `cargo test --features sim`");

pub mod rt;
