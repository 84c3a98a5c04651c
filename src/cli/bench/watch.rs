//! `cairn bench watch`: how long a write takes to reach watchers. `--watchers` streams of
//! `GET /v1/watch?prefix=…` (Server-Sent Events, one per mutation, each with its `revision`) are
//! opened first; then `--clients` writers put under the prefix as in `cairn bench put`, each
//! noting when it sent every put and the revision the put got. A watcher notes when each event
//! arrived. Joined by revision afterwards, these give the event latency: put sent → event
//! received, per watcher. An event still missing `--timeout` after the last put is counted as
//! missing.
//!
//! Each stream is opened on a connection of its own (the pooled exchanges read whole bodies),
//! over HTTPS and with the token when the load has them, and its frames are parsed by
//! [`SseReader`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use cairn_http::client::{ExchangeError, HeaderValue, Method, Outgoing};
use cairn_node::rt::{self, Instant};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::ACCEPT;
use tokio::sync::watch;

use super::driver::{self, Load, Measured};
use super::report::Latencies;

/// Opens `watchers` streams (spread over the endpoints in turn), runs the writers of `load`,
/// gives the watchers `load.timeout` after the last answer to catch up, and joins what they saw
/// with what was sent.
pub async fn measure(load: Load, watchers: u32) -> Result<(Measured, Delivery), String> {
    assert!(load.keep_revisions, "a watch run notes the revision of every put");
    let path = watch_path(load.keys.prefix());
    let (until_sender, until) = watch::channel(None);
    let mut tasks = Vec::new();
    for index in 0..watchers as usize {
        let body = open(&load, &load.endpoints[index % load.endpoints.len()], &path).await?;
        tasks.push(rt::spawn(watcher(body, until.clone())));
    }
    let catch_up = load.timeout;
    let measured = driver::drive(Arc::new(load)).await;
    let last = measured.sent.iter().map(|(revision, _)| *revision).max().unwrap_or(0);
    // Every watcher holds a receiver until it returns, so this send cannot fail.
    let _ = until_sender.send(Some((last, Instant::now() + catch_up)));
    let mut received = Vec::new();
    for task in tasks {
        received.push(task.await.expect("a watcher does not panic")?);
    }
    let delivery = join(&measured.sent, &received);
    Ok((measured, delivery))
}

/// One Server-Sent Events frame: its `event:` name (`message` when absent), `id:` and `data:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Cuts a byte stream into SSE frames (each ends with a blank line), across chunk boundaries.
#[derive(Debug, Default)]
pub struct SseReader {
    buffer: Vec<u8>,
}

impl SseReader {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete frame, if one has arrived. Comment-only frames (`: keep-alive`) are
    /// skipped; `data:` lines of one frame are joined with newlines, as the SSE spec says.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let end = self.buffer.windows(2).position(|pair| pair == b"\n\n")?;
            let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let mut frame = Frame { event: "message".to_string(), id: None, data: String::new() };
            let (mut fields, mut data_lines) = (0, 0);
            for line in text.lines().map(|line| line.trim_end_matches('\r')) {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match name {
                    "event" => frame.event = value.to_string(),
                    "id" => frame.id = Some(value.to_string()),
                    "data" => {
                        if data_lines > 0 {
                            frame.data.push('\n');
                        }
                        frame.data.push_str(value);
                        data_lines += 1;
                    }
                    _ => continue,
                }
                fields += 1;
            }
            if fields > 0 {
                return Some(frame);
            }
        }
    }
}

/// What a frame means to the benchmark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A mutation at this revision.
    Event(u64),
    /// Progress, or an event the benchmark does not know: ignored.
    Other,
    /// The node ended the stream with an error event.
    End(String),
}

/// Reads a frame of cairn's watch: `put` and `delete` events carry their `revision` in the JSON
/// data; `progress` says nothing matched lately; `error` ends the stream.
pub fn classify(frame: &Frame) -> Result<Seen, String> {
    match frame.event.as_str() {
        "put" | "delete" => {
            let data: serde_json::Value = serde_json::from_str(&frame.data)
                .map_err(|error| format!("a {} event whose data is not JSON: {error}", frame.event))?;
            match data.get("revision").and_then(serde_json::Value::as_u64) {
                Some(revision) => Ok(Seen::Event(revision)),
                None => Err(format!("a {} event without a revision", frame.event)),
            }
        }
        "error" => Ok(Seen::End(frame.data.clone())),
        _ => Ok(Seen::Other),
    }
}

/// The path of a watch on `prefix` from the node's current revision on. The prefix holds only
/// characters that need no escaping (checked by `KeySpace`).
pub fn watch_path(prefix: &str) -> String {
    format!("/v1/watch?prefix={prefix}")
}

/// Opens one watch stream on its own connection (HTTPS with the load's TLS, with its token) and
/// returns its body unread.
pub async fn open(load: &Load, endpoint: &str, path: &str) -> Result<Incoming, String> {
    let mut headers = load.headers.clone();
    headers.push((ACCEPT, HeaderValue::from_static("text/event-stream")));
    let outgoing = Outgoing { method: Method::GET, path_and_query: path, headers, body: Bytes::new() };
    let stream = match load.exchanger().open_stream(endpoint, outgoing, load.timeout).await {
        Ok(stream) => stream,
        Err(ExchangeError::Timeout { .. }) => {
            return Err(format!("no answer from {endpoint} to GET /v1/watch within --timeout"));
        }
        Err(error) => return Err(format!("cannot open a watch on {endpoint}: {error}")),
    };
    if stream.status.is_success() {
        return Ok(stream.body);
    }
    let body = stream.body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    Err(refusal(endpoint, stream.status, &body))
}

fn refusal(endpoint: &str, status: StatusCode, body: &[u8]) -> String {
    if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
        return format!(
            "{endpoint} answered GET /v1/watch with {status}: the watch benchmark needs the /v1/watch route"
        );
    }
    format!("{endpoint} refused the watch with {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]))
}

/// When watchers may stop: once they have seen `revision`, or at `deadline` whatever they saw.
pub type Until = Option<(u64, Instant)>;

/// Reads one stream until told to stop, noting when each event arrived.
pub async fn watcher(mut body: Incoming, mut until: watch::Receiver<Until>) -> Result<Vec<(u64, Instant)>, String> {
    let mut reader = SseReader::default();
    let mut received = Vec::new();
    let mut last = 0;
    loop {
        let stop = *until.borrow_and_update();
        if let Some((revision, _)) = stop
            && last >= revision
        {
            return Ok(received);
        }
        let frame = match stop {
            Some((_, deadline)) => match rt::timeout_at(deadline, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return Ok(received),
            },
            None => tokio::select! {
                biased;
                changed = until.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return Ok(received),
                },
                frame = body.frame() => frame,
            },
        };
        let chunk = match frame {
            None => return Err("the node closed the watch stream".to_string()),
            Some(Err(error)) => return Err(format!("the watch stream broke: {error}")),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => chunk,
                Err(_) => continue,
            },
        };
        let arrived = Instant::now();
        reader.push(&chunk);
        while let Some(frame) = reader.next_frame() {
            match classify(&frame)? {
                Seen::Event(revision) => {
                    received.push((revision, arrived));
                    last = last.max(revision);
                }
                Seen::Other => {}
                Seen::End(data) => return Err(format!("the node ended the watch: {data}")),
            }
        }
    }
}

/// Event latencies of every watcher, joined by revision with when each put was sent; events of
/// other writers are ignored, a revision seen twice by one watcher counts once.
#[derive(Debug, Default)]
pub struct Delivery {
    pub latencies: Latencies,
    pub delivered: u64,
    pub missing: u64,
}

pub fn join(sent: &[(u64, Instant)], received: &[Vec<(u64, Instant)>]) -> Delivery {
    let sent: BTreeMap<u64, Instant> = sent.iter().copied().collect();
    let mut delivery = Delivery::default();
    for events in received {
        let mut seen = BTreeSet::new();
        for (revision, arrived) in events {
            if let Some(sent_at) = sent.get(revision)
                && seen.insert(*revision)
            {
                delivery.latencies.record(arrived.saturating_duration_since(*sent_at));
                delivery.delivered += 1;
            }
        }
        delivery.missing += sent.len() as u64 - seen.len() as u64;
    }
    delivery
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_node::rt::Duration;

    fn frames(chunks: &[&str]) -> Vec<Frame> {
        let mut reader = SseReader::default();
        let mut frames = Vec::new();
        for chunk in chunks {
            reader.push(chunk.as_bytes());
            frames.extend(std::iter::from_fn(|| reader.next_frame()));
        }
        frames
    }

    #[test]
    fn frames_are_cut_at_blank_lines_even_across_chunks() {
        let parsed = frames(&["id: 7\nevent: put\ndata: {\"revision\"", ":7}\n\nevent: progress\n", "data: {}\n\n"]);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], Frame { event: "put".into(), id: Some("7".into()), data: "{\"revision\":7}".into() });
        assert_eq!(parsed[1].event, "progress");
    }

    #[test]
    fn comments_are_skipped_and_data_lines_are_joined() {
        let parsed = frames(&[": keep-alive\n\ndata: a\ndata: b\n\n"]);
        assert_eq!(parsed, [Frame { event: "message".into(), id: None, data: "a\nb".into() }]);
    }

    #[test]
    fn events_give_their_revision_and_errors_end_the_stream() {
        let frame = |event: &str, data: &str| Frame { event: event.into(), id: None, data: data.into() };
        assert_eq!(classify(&frame("put", r#"{"revision":12,"key":"k"}"#)), Ok(Seen::Event(12)));
        assert_eq!(classify(&frame("delete", r#"{"revision":13}"#)), Ok(Seen::Event(13)));
        assert_eq!(classify(&frame("progress", r#"{"revision":13}"#)), Ok(Seen::Other));
        assert!(matches!(classify(&frame("error", r#"{"code":"revision_compacted"}"#)), Ok(Seen::End(_))));
        assert!(classify(&frame("put", "{}")).unwrap_err().contains("without a revision"));
        assert!(classify(&frame("put", "nope")).is_err());
    }

    #[test]
    fn a_missing_route_is_reported_as_such() {
        let error = refusal("127.0.0.1:7700", StatusCode::NOT_FOUND, b"{}");
        assert!(error.contains("needs the /v1/watch route"), "{error}");
    }

    #[test]
    fn latency_runs_from_the_put_sent_to_the_event_received_per_watcher() {
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        let sent = [(5, at(0)), (6, at(10))];
        let received = vec![vec![(5, at(2)), (6, at(13)), (5, at(20)), (99, at(30))], vec![(6, at(14))]];
        let delivery = join(&sent, &received);
        assert_eq!((delivery.delivered, delivery.missing), (3, 1), "watcher 2 missed revision 5");
        let summary = delivery.latencies.summary();
        assert_eq!(summary.count, 3, "a repeat and another writer's event are not counted");
        assert!((summary.max_ms - 4.0).abs() < 0.01, "{summary:?}");
    }
}
