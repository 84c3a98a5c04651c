//! The write path inside one process: a put proposed on the leader of a three-node cluster,
//! replicated over the real peer transport on loopback TCP, made durable in each node's WAL on a
//! tmpfs, committed and applied. Calls `Node::write` directly, so no HTTP is measured.
//!
//! `cargo bench -p cairn-node --bench write_path`; see bench/README.md.

#[cfg(not(madsim))]
mod cluster;
#[cfg(not(madsim))]
mod puts;

#[cfg(not(madsim))]
criterion::criterion_main!(puts::benches);

/// The simulator has neither loopback TCP nor a tmpfs, so under it this bench does nothing; it
/// still has to build, since `cargo sim-clippy` builds every target.
#[cfg(madsim)]
fn main() {}
