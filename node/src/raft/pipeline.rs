//! The sending side of a pipelined append stream. openraft hands the replication task a stream
//! of AppendEntries (a new one as soon as new entries are in the leader's log); the pipeline
//! sends each as it comes, without waiting for the answers to the ones before, up to a bound on
//! requests and bytes in flight, and yields the answers in order. All of a stream's requests
//! travel on one connection, which keeps them in order, and the follower hands them to raft in
//! that order (`transport::streams`).
//!
//! The connection is chosen when the first request is in hand, not when openraft opens the
//! stream: openraft sleeps its backoff while producing a request, so a peer that cannot be
//! reached is retried at the backoff's pace rather than in a tight loop.
//!
//! The first failure ends the stream: a timeout, a lost connection, a conflict or a higher vote.
//! Requests still in flight are forgotten, and openraft opens a new stream from what the
//! follower acknowledged, so nothing is lost or applied twice.

use std::collections::VecDeque;

use futures_util::stream::{Fuse, Stream, StreamExt};
use openraft::error::RPCError;
use openraft::network::RPCTypes;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};

use super::TypeConfig;
use super::network::PeerLink;
use crate::rt::{Duration, Instant};
use crate::transport::{CallStream, PeerRequest, PeerResponse, PendingCall, RpcError};

/// Encoded bytes in flight on one stream at most; more waits for answers.
const BYTES_IN_FLIGHT_MAX: usize = 16 * 1024 * 1024;
/// The rate at which a follower is assumed to write and sync at worst: a request's answer is
/// due after the heartbeat-derived timeout plus the time to write everything sent before it.
const SLOW_DISK_BYTES_PER_SECOND: f64 = 64.0 * 1024.0 * 1024.0;

pub(super) struct AppendPipeline<'s, S> {
    link: &'s mut PeerLink,
    /// Opened with the first request.
    stream: Option<CallStream>,
    input: Fuse<S>,
    in_flight: VecDeque<PendingCall>,
    /// Requests in flight at most (`NodeConfig::appends_in_flight`).
    in_flight_max: usize,
    bytes_in_flight: usize,
    timeout: Duration,
    ended: bool,
}

/// What the pipeline waited for.
enum Event {
    Answer(Result<PeerResponse, RpcError>),
    Input(Option<AppendEntriesRequest<TypeConfig>>),
}

impl<'s, S> AppendPipeline<'s, S>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin,
{
    pub(super) fn new(link: &'s mut PeerLink, input: S, timeout: Duration, in_flight_max: usize) -> Self {
        AppendPipeline {
            link,
            stream: None,
            input: input.fuse(),
            in_flight: VecDeque::new(),
            in_flight_max,
            bytes_in_flight: 0,
            timeout,
            ended: false,
        }
    }

    /// The answer to the oldest request in flight, sending newer requests while it waits;
    /// `None` once the input is exhausted and answered, or after a failure.
    pub(super) async fn next_answer(&mut self) -> Option<Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> {
        while !self.ended {
            let room = self.in_flight.len() < self.in_flight_max && self.bytes_in_flight < BYTES_IN_FLIGHT_MAX;
            let (in_flight, input) = (&mut self.in_flight, &mut self.input);
            let event = match in_flight.front_mut() {
                None if input.is_done() => return None,
                None => Event::Input(input.next().await),
                Some(oldest) => tokio::select! {
                    biased;
                    answer = oldest.answer() => Event::Answer(answer),
                    request = input.next(), if room && !input.is_done() => Event::Input(request),
                },
            };
            match event {
                Event::Answer(answer) => {
                    let answered = self.in_flight.pop_front().expect("an answer came for the oldest request");
                    self.bytes_in_flight -= answered.frame_bytes();
                    return Some(self.settle(answer));
                }
                Event::Input(Some(request)) => {
                    if let Err(error) = self.send(request).await {
                        self.ended = true;
                        return Some(Err(error));
                    }
                }
                Event::Input(None) => {}
            }
        }
        None
    }

    async fn send(&mut self, rpc: AppendEntriesRequest<TypeConfig>) -> Result<(), RPCError<TypeConfig>> {
        let stream = match &self.stream {
            Some(stream) => stream,
            None => match self.link.open_stream(self.timeout).await {
                Ok(stream) => self.stream.insert(stream),
                Err(error) => return Err(self.link.failure(RPCTypes::AppendEntries, self.timeout, Err(error))),
            },
        };
        let lease = self.link.lease_proof(&rpc.vote);
        let request = PeerRequest::StreamAppend { stream: stream.id(), rpc, lease };
        let ahead = Duration::from_secs_f64(self.bytes_in_flight as f64 / SLOW_DISK_BYTES_PER_SECOND);
        match stream.send(request, Instant::now() + self.timeout + ahead).await {
            Ok(call) => {
                self.bytes_in_flight += call.frame_bytes();
                self.in_flight.push_back(call);
                Ok(())
            }
            Err(error) => Err(self.link.failure(RPCTypes::AppendEntries, self.timeout, Err(error))),
        }
    }

    fn settle(
        &mut self,
        answer: Result<PeerResponse, RpcError>,
    ) -> Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>> {
        match answer {
            Ok(PeerResponse::StreamAppend { result, stamp }) => {
                self.link.heard(stamp);
                self.ended = result.is_err();
                Ok(result)
            }
            other => {
                self.ended = true;
                Err(self.link.failure(RPCTypes::AppendEntries, self.timeout, other))
            }
        }
    }
}
