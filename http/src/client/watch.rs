//! Reading a watch: Server-Sent Events parsed as they arrive, frame by frame.

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use thiserror::Error;

use crate::wire::{WatchEventBody, WatchProgressBody};

/// What a watch delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// A matching mutation.
    Event(Box<WatchEventBody>),
    /// Nothing matched up to this revision.
    Progress(u64),
    /// The node ended the stream: the history no longer reaches back to `revision`; the
    /// oldest retained revision is `oldest`. List again, then watch from there.
    Compacted { revision: u64, oldest: u64 },
    /// The node ended the stream because the token no longer may watch (`code` is
    /// `unauthenticated` or `permission_denied`).
    Denied { code: String },
}

/// The stream broke or carried something unreadable.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("the watch stream broke: {0}")]
    Broken(String),
    #[error("unreadable watch frame: {0}")]
    Malformed(String),
}

/// A watch in progress on one node.
pub struct WatchStream {
    body: Incoming,
    buffer: BytesMut,
    /// The endpoint (index into the client's list) serving it.
    pub endpoint: usize,
    /// The id of the node serving it (`X-Cairn-Node`).
    pub node: Option<u64>,
}

impl WatchStream {
    pub(crate) fn new(body: Incoming, endpoint: usize, node: Option<u64>) -> WatchStream {
        WatchStream { body, buffer: BytesMut::new(), endpoint, node }
    }

    /// The next item; `Ok(None)` when the node closed the stream.
    pub async fn next(&mut self) -> Result<Option<WatchItem>, WatchError> {
        loop {
            if let Some(frame) = self.take_frame() {
                if let Some(item) = parse_frame(&frame)? {
                    return Ok(Some(item));
                }
                continue;
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(error)) => return Err(WatchError::Broken(error.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Takes one complete frame (up to a blank line) off the buffer.
    fn take_frame(&mut self) -> Option<Bytes> {
        let end = self.buffer.windows(2).position(|pair| pair == b"\n\n")?;
        let frame = self.buffer.split_to(end).freeze();
        self.buffer.advance(2);
        Some(frame)
    }
}

/// Parses `id:`/`event:`/`data:` lines; comments and unknown events are skipped (`None`).
fn parse_frame(frame: &[u8]) -> Result<Option<WatchItem>, WatchError> {
    let text = std::str::from_utf8(frame).map_err(|e| WatchError::Malformed(e.to_string()))?;
    let (mut event, mut data) = ("message", "");
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            event = value.trim();
        } else if let Some(value) = line.strip_prefix("data:") {
            data = value.trim();
        }
    }
    let malformed = |e: serde_json::Error| WatchError::Malformed(format!("{event}: {e}"));
    match event {
        "put" | "delete" => Ok(Some(WatchItem::Event(Box::new(serde_json::from_str(data).map_err(malformed)?)))),
        "progress" => {
            Ok(Some(WatchItem::Progress(serde_json::from_str::<WatchProgressBody>(data).map_err(malformed)?.revision)))
        }
        "error" => {
            let error: serde_json::Value = serde_json::from_str(data).map_err(malformed)?;
            let number = |name: &str| error.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
            match error.get("code").and_then(serde_json::Value::as_str) {
                Some("revision_compacted") | None => {
                    Ok(Some(WatchItem::Compacted { revision: number("revision"), oldest: number("oldest_revision") }))
                }
                Some(code) => Ok(Some(WatchItem::Denied { code: code.to_string() })),
            }
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_into_events_progress_and_compaction() {
        let progress = parse_frame(b"event: progress\ndata: {\"revision\":7}").unwrap();
        assert_eq!(progress, Some(WatchItem::Progress(7)));
        let compacted =
            parse_frame(b"event: error\ndata: {\"code\":\"revision_compacted\",\"revision\":3,\"oldest_revision\":9}");
        assert_eq!(compacted.unwrap(), Some(WatchItem::Compacted { revision: 3, oldest: 9 }));
        let denied = parse_frame(b"event: error\ndata: {\"code\":\"unauthenticated\",\"message\":\"m\"}");
        assert_eq!(denied.unwrap(), Some(WatchItem::Denied { code: "unauthenticated".into() }));
        assert_eq!(parse_frame(b": a comment").unwrap(), None);
        assert!(parse_frame(b"event: put\ndata: {not json").is_err());
    }
}
