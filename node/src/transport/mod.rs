//! The peer transport: length-prefixed bincode frames over one persistent TCP connection per
//! peer, with request ids so that many RPCs share a connection, a deadline on every call, and
//! reconnection with backoff. It carries raft's RPCs and client requests forwarded to the leader.
//! Every connection starts with a handshake in which both sides prove they know the cluster
//! secret (`handshake`).

mod client;
mod frame;
mod handshake;
mod message;
mod server;
mod streams;
#[cfg(all(test, not(madsim)))]
mod tests;

pub use client::{CallStream, PeerClient, PendingCall, RpcError};
pub use frame::FRAME_BYTES_MAX;
pub use handshake::{ClusterSource, PeerAuth};
pub use message::{PeerRequest, PeerResponse, SnapshotChunk};
pub use server::{PeerHandler, serve};
pub use streams::{AppendLane, LaneAnswers, STREAM_REQUESTS_MAX, StreamedAppend};

/// A peer connection's byte stream: plain TCP, or TLS over it.
pub(crate) trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> PeerIo for S {}

pub(crate) type PeerStream = Box<dyn PeerIo>;
