//! Framing: `[length: u32 big-endian][bincode body]`, with the same size limit on both sides.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::bounded_decode;

/// The largest frame either side sends or accepts: a full append batch of maximal values plus
/// headroom. Snapshot chunks are far smaller.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Encoding needs no limit; decoding adds one (see [`decode`]).
const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Encodes `value` as one frame, length prefix included.
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut frame = vec![0u8; 4];
    bincode::serde::encode_into_std_write(value, &mut frame, CONFIG).map_err(io::Error::other)?;
    let body_len = frame.len() - 4;
    if body_len > FRAME_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame exceeds FRAME_BYTES_MAX"));
    }
    let body_len = u32::try_from(body_len).expect("FRAME_BYTES_MAX fits in u32");
    frame[..4].copy_from_slice(&body_len.to_be_bytes());
    Ok(frame)
}

/// Decodes a frame body, bounding what its declared lengths may allocate by the body's own length
/// (see [`crate::bounded_decode`]): a valid body always decodes, a lying one allocates at most a
/// small multiple of what was actually received.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    whole_body(body, bounded_decode::decode_slice(body))
}

/// Decodes a frame body with at most `LIMIT` bytes of in-memory claims, for frames known to be
/// small (a handshake), so that an unauthenticated caller cannot make the decoder allocate more.
pub fn decode_bounded<T: DeserializeOwned, const LIMIT: usize>(body: &[u8]) -> io::Result<T> {
    whole_body(body, bounded_decode::decode_slice_within::<T, LIMIT>(body))
}

fn whole_body<T>(body: &[u8], decoded: Result<(T, usize), bincode::error::DecodeError>) -> io::Result<T> {
    let (value, read) = decoded.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if read != body.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "trailing bytes after frame"));
    }
    Ok(value)
}

/// Reads one frame body; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    read_frame_limited(reader, FRAME_BYTES_MAX).await
}

/// Reads one frame body of at most `limit` bytes; a larger length prefix is an error before
/// anything is allocated.
pub async fn read_frame_limited<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "incoming frame too large"));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes already encoded frames and flushes once.
pub async fn write_frames<W: AsyncWrite + Unpin>(writer: &mut W, frames: &[Vec<u8>]) -> io::Result<()> {
    for frame in frames {
        writer.write_all(frame).await?;
    }
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly() {
        let frames = vec![encode(&(1u64, "one".to_string())).unwrap(), encode(&(2u64, "two".to_string())).unwrap()];
        let mut wire = Vec::new();
        write_frames(&mut wire, &frames).await.unwrap();
        let mut reader = wire.as_slice();
        let first: (u64, String) = decode(&read_frame(&mut reader).await.unwrap().unwrap()).unwrap();
        let second: (u64, String) = decode(&read_frame(&mut reader).await.unwrap().unwrap()).unwrap();
        assert_eq!(first, (1, "one".to_string()));
        assert_eq!(second, (2, "two".to_string()));
        assert!(read_frame(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_oversized_length_prefix_is_rejected_without_allocating() {
        let prefix = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes();
        let mut reader = &prefix[..];
        let error = read_frame(&mut reader).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    /// The probe's frame: a forwarded read whose key declares 2^44 bytes aborted the process
    /// (`memory allocation of 17592186044416 bytes failed`).
    #[test]
    fn a_body_declaring_a_huge_string_is_refused_without_allocating_it() {
        // Envelope id 7, `PeerRequest::Forward` (3), `Forward::Read` (1), then the key's length.
        let mut body = vec![7, 3, 1, 0xFD];
        body.extend_from_slice(&(1u64 << 44).to_le_bytes());
        body.extend_from_slice(b"0123456789abcdef");
        let error = decode::<super::super::message::Envelope<super::super::message::PeerRequest>>(&body).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let cause = error.get_ref().and_then(|cause| cause.downcast_ref::<bincode::error::DecodeError>());
        assert!(matches!(cause, Some(bincode::error::DecodeError::LimitExceeded)), "{error:?}");
    }

    #[test]
    fn a_bounded_decode_refuses_a_body_over_its_limit_that_the_ladder_accepts() {
        let frame = encode(&(1u64, "x".repeat(100))).unwrap();
        let body = &frame[4..];
        assert!(decode::<(u64, String)>(body).is_ok());
        assert!(decode_bounded::<(u64, String), 4096>(body).is_ok());
        let error = decode_bounded::<(u64, String), 64>(body).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_error_not_a_clean_end() {
        let frame = encode(&"complete".to_string()).unwrap();
        let mut reader = &frame[..frame.len() - 2];
        assert!(read_frame(&mut reader).await.is_err());
    }

    /// Random and mutated bodies of every peer message never panic the decoder: each is a
    /// value or an error. (`PROPTEST_CASES` sets the case count.)
    mod properties {
        use bytes::Bytes;
        use proptest::prelude::*;

        use super::*;
        use crate::api::{Consistency, Forward, ForwardReply, NodeError};
        use crate::command::{ClientTag, Command, Precondition, Request, Response};
        use crate::hostile_bytes::hostile;
        use crate::raft::{Entry, LogId, SnapshotMeta, StoredMembership, Vote};
        use crate::transport::message::{Envelope, PeerRequest, PeerResponse, SnapshotChunk};

        fn log_id(index: u64) -> LogId {
            openraft::LogId::new(openraft::vote::leader_id_adv::CommittedLeaderId { term: 3, node_id: 1 }, index)
        }

        fn put(key: &str) -> Request {
            let command = Command::Put {
                key: key.into(),
                value: Bytes::from_static(b"value"),
                labels: Some([("env".to_string(), "prod".to_string())].into()),
                expect: Precondition::ModRevision(4),
            };
            Request { tag: Some(ClientTag { client: 42, serial: 7 }), proposed_at_ms: 1_700_000_000_000, command }
        }

        fn body<T: Serialize>(id: u64, body: T) -> Vec<u8> {
            encode(&Envelope { id, body }).unwrap().split_off(4)
        }

        fn requests() -> Vec<Vec<u8>> {
            let entries = vec![
                Entry { log_id: log_id(5), payload: openraft::EntryPayload::Blank },
                Entry { log_id: log_id(6), payload: openraft::EntryPayload::Normal(put("a/b")) },
            ];
            let append = openraft::raft::AppendEntriesRequest {
                vote: Vote::new_committed(3, 1),
                prev_log_id: Some(log_id(4)),
                entries,
                leader_commit: Some(log_id(5)),
            };
            let vote = openraft::raft::VoteRequest {
                vote: Vote::new(4, 2),
                last_log_id: Some(log_id(6)),
                leadership_transfer: false,
            };
            let chunk = SnapshotChunk {
                transfer: 9,
                vote: Vote::new_committed(3, 1),
                meta: SnapshotMeta { last_log_id: Some(log_id(6)), last_membership: StoredMembership::default() },
                offset: 0,
                data: Bytes::from_static(b"CAIRNSNP and some bytes"),
                done: true,
            };
            vec![
                body(1, PeerRequest::StreamAppend { stream: 3, rpc: append, lease: None }),
                body(6, PeerRequest::EndStream { stream: 3 }),
                body(2, PeerRequest::Vote(vote)),
                body(3, PeerRequest::Snapshot(chunk)),
                body(4, PeerRequest::Forward(Forward::Write(put("key")))),
                body(
                    5,
                    PeerRequest::Forward(Forward::Read {
                        key: "k".into(),
                        consistency: Consistency::Stale,
                        credential: crate::acl::Credential::Anonymous,
                    }),
                ),
            ]
        }

        fn responses() -> Vec<Vec<u8>> {
            let written = Response::Delete { deleted: None, revision: 12 };
            vec![
                body(1, PeerResponse::Forward(Ok(ForwardReply::Written(written)))),
                body(
                    2,
                    PeerResponse::Forward(Err::<ForwardReply, _>(NodeError::OutcomeUnknown {
                        reason: "timeout".to_string(),
                    })),
                ),
                body(3, PeerResponse::Refused("no".to_string())),
                body(4, PeerResponse::Snapshot(None)),
                body(
                    5,
                    PeerResponse::StreamAppend {
                        result: Err(openraft::raft::StreamAppendError::Conflict(log_id(6))),
                        stamp: crate::raft::contact::ContactStamp { incarnation: 1, nanos: 2 },
                    },
                ),
                body(
                    6,
                    PeerResponse::StreamAppend {
                        result: Ok(Some(log_id(7))),
                        stamp: crate::raft::contact::ContactStamp { incarnation: 3, nanos: 4 },
                    },
                ),
            ]
        }

        #[test]
        fn the_valid_bodies_decode() {
            for body in requests() {
                decode::<Envelope<PeerRequest>>(&body).unwrap();
            }
            for body in responses() {
                decode::<Envelope<PeerResponse>>(&body).unwrap();
            }
        }

        proptest! {
            #[test]
            fn hostile_request_bodies_never_panic(body in hostile(requests(), 512)) {
                let _ = decode::<Envelope<PeerRequest>>(&body);
            }

            #[test]
            fn hostile_response_bodies_never_panic(body in hostile(responses(), 512)) {
                let _ = decode::<Envelope<PeerResponse>>(&body);
            }
        }
    }
}
