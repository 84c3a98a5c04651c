//! cairn's HTTP actor and HTTP client.
//!
//! # Layout
//! - [`serve`]: the accept loop, hyper's HTTP/1.1 over the runtime seam (tokio or madsim).
//! - [`router`]: the API routes over a [`cairn_node::Node`].
//! - [`wire`]: the JSON bodies both sides share.
//! - [`launch`]: starts a whole node (listeners, actors, HTTP, join) for the binary and the simulator.
//! - [`client`]: a client that finds a live node, follows the leader and retries what is safe.

#![forbid(unsafe_code)]

#[cfg(all(feature = "sim", not(madsim)))]
compile_error!("the `sim` feature needs --cfg madsim: run `cargo sim`, not `cargo test --features sim`");

mod api;
pub mod client;
mod hyper_rt;
mod join;
mod launch;
mod server;
pub mod wire;

pub use api::{ApiError, router};
pub use join::join_cluster;
pub use launch::{LaunchError, Launched, launch};
pub use server::serve;
