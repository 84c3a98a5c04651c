//! The answering side of pipelined append streams. A connection's reader routes each
//! `StreamAppend` to its stream's lane, a channel served by one task of the handler, so a
//! stream's requests reach raft in the order they arrived and are answered in that order, while
//! the next ones are already on their way (see `raft::network` for the sending side).
//!
//! Streams are cheap to open (a leader opens one per replication session and per heartbeat) and
//! bounded per connection: the oldest is dropped past [`STREAMS_PER_CONNECTION_MAX`], and a lane
//! full past [`STREAM_REQUESTS_MAX`] is closed. A request for a stream that ended that way is
//! refused rather than reopening it (a stream the sender ended itself sends nothing after).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use openraft::raft::AppendEntriesRequest;
use tokio::sync::mpsc;

use super::frame;
use super::message::{Envelope, PeerResponse};
use super::server::PeerHandler;
use crate::command::NodeId;
use crate::raft::TypeConfig;
use crate::raft::contact::LeaseProof;
use crate::rt;

/// Streams open at once on one connection (a leader uses two: replication and heartbeats).
const STREAMS_PER_CONNECTION_MAX: usize = 8;
/// Requests of one stream waiting for raft; a leader keeps at most this many in flight
/// (`config::APPENDS_IN_FLIGHT_LIMIT`).
pub const STREAM_REQUESTS_MAX: usize = 256;
/// Streams the receiver closed, remembered so that their late requests are refused.
const CLOSED_STREAMS_KEPT: usize = 64;

/// One request of a stream, with the id its answer must carry.
pub struct StreamedAppend {
    pub id: u64,
    pub rpc: AppendEntriesRequest<TypeConfig>,
    pub lease: Option<LeaseProof>,
}

/// One stream's requests in arrival order, and where its answers go.
pub struct AppendLane {
    pub requests: mpsc::Receiver<StreamedAppend>,
    pub answers: LaneAnswers,
}

/// Sends a stream's answers on its connection.
pub struct LaneAnswers {
    outbox: mpsc::Sender<Vec<u8>>,
}

impl LaneAnswers {
    /// Sends the answer to request `id`; false once the connection is gone.
    pub async fn send(&self, id: u64, body: PeerResponse) -> bool {
        match frame::encode(&Envelope { id, body }) {
            Ok(frame) => self.outbox.send(frame).await.is_ok(),
            Err(error) => {
                tracing::error!(%error, "a peer response cannot be encoded");
                false
            }
        }
    }
}

/// The streams open on one connection.
pub(super) struct Streams {
    from: NodeId,
    outbox: mpsc::Sender<Vec<u8>>,
    open: BTreeMap<u64, mpsc::Sender<StreamedAppend>>,
    closed: VecDeque<u64>,
}

impl Streams {
    pub(super) fn new(from: NodeId, outbox: mpsc::Sender<Vec<u8>>) -> Streams {
        Streams { from, outbox, open: BTreeMap::new(), closed: VecDeque::new() }
    }

    /// Hands `append` to its stream's lane, opening one for a new stream; answers at once what
    /// cannot be handed on. Never waits: the connection's reader must keep reading.
    pub(super) fn append<H: PeerHandler>(&mut self, handler: &Arc<H>, stream: u64, append: StreamedAppend) {
        let id = append.id;
        if !self.open.contains_key(&stream) {
            if self.closed.contains(&stream) {
                return self.refuse(id, "the append stream ended");
            }
            self.open.insert(stream, self.open_lane(handler));
            while self.open.len() > STREAMS_PER_CONNECTION_MAX {
                if let Some((oldest, _)) = self.open.pop_first() {
                    self.close(oldest);
                }
            }
        }
        let Some(lane) = self.open.get(&stream) else {
            return self.refuse(id, "the append stream was closed: too many streams");
        };
        if let Err(error) = lane.try_send(append) {
            self.open.remove(&stream);
            self.close(stream);
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => "too many appends in flight on the stream",
                mpsc::error::TrySendError::Closed(_) => "the append stream ended",
            };
            self.refuse(id, reason);
        }
    }

    /// The sender ended `stream`; its lane drains what it holds and stops.
    pub(super) fn end(&mut self, stream: u64) {
        self.open.remove(&stream);
    }

    fn close(&mut self, stream: u64) {
        self.closed.push_back(stream);
        if self.closed.len() > CLOSED_STREAMS_KEPT {
            self.closed.pop_front();
        }
    }

    fn open_lane<H: PeerHandler>(&self, handler: &Arc<H>) -> mpsc::Sender<StreamedAppend> {
        let (sender, requests) = mpsc::channel(STREAM_REQUESTS_MAX);
        let lane = AppendLane { requests, answers: LaneAnswers { outbox: self.outbox.clone() } };
        let (handler, from) = (handler.clone(), self.from);
        rt::spawn(async move { handler.serve_stream(from, lane).await });
        sender
    }

    /// Answers `id` with a refusal if the connection's outbox has room; a caller that filled
    /// it learns from its deadline instead.
    fn refuse(&self, id: u64, reason: &str) {
        if let Ok(frame) = frame::encode(&Envelope { id, body: PeerResponse::refused(reason) }) {
            let _ = self.outbox.try_send(frame);
        }
    }
}
