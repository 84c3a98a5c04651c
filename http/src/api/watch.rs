//! `GET /v1/watch?prefix=…&label=…&start_revision=N`: a stream of Server-Sent Events, one per
//! matching mutation from `start_revision` on, in revision order, none missing and none twice,
//! with progress events carrying the current revision while nothing matches. A client resumes
//! after a disconnect from the last `id` it saw (`Last-Event-ID` or `start_revision=id+1`).
//!
//! The stream is served from this node's event history: every event in it is committed, so a
//! node that is behind delivers late but never delivers something that is taken back. A start
//! older than the history answers `410 revision_compacted` with the oldest revision available.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cairn_node::Node;
use cairn_node::acl::Credential;
use cairn_node::api::NodeError;
use cairn_node::rt::{self, Duration, Instant};
use cairn_node::store::events::{Action, Compacted, Event};
use cairn_node::store::filter::Filter;
use serde_json::json;
use tokio::sync::mpsc;

use super::ApiState;
use super::caller::Caller;
use super::error::ApiError;
use super::query::{Accepts, Query, decimal_u64, invalid, parse_duration};
use crate::wire::{REVISION_HEADER, RecordBody, WatchEventBody, WatchProgressBody};

/// Events fetched from the store per round.
const BATCH_MAX: usize = 256;
/// Frames buffered for a slow client before the stream waits for it.
const FRAMES_BUFFERED_MAX: usize = 64;
const PROGRESS_DEFAULT: Duration = Duration::from_secs(5);

pub(super) async fn watch(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let accepts = Accepts { once: &["prefix", "start_revision", "progress_interval"], repeated: &["label"] };
    let query = Query::parse_with(uri.query(), accepts)?;
    let filter =
        Filter { prefix: query.get("prefix").unwrap_or("").to_string(), labels: query.labels()?, ..Filter::default() };
    let progress = progress_interval(&query)?;
    let resume = headers.get("last-event-id").map(|value| value.to_str().unwrap_or("\u{fffd}"));
    let start = match (query.u64("start_revision")?, resume) {
        (Some(start), _) => start.max(1),
        (None, Some(last)) => resume_after(last, state.node.revision())?,
        (None, None) => state.node.revision() + 1,
    };
    if let Err(Compacted { oldest }) = state.node.events(start, filter.clone(), 0, caller.0).await? {
        return Err(compacted(start, oldest));
    }
    let (frames, stream) = mpsc::channel(FRAMES_BUFFERED_MAX);
    rt::spawn(stream_events(state.node.clone(), filter, caller.0, start, progress, frames));
    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut stream| async move {
        stream.recv().await.map(|frame| (Ok::<Bytes, Infallible>(frame), stream))
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(REVISION_HEADER, HeaderValue::from(start.saturating_sub(1)));
    Ok(response)
}

/// Where a watch resuming after `Last-Event-ID: last` starts: the revision after it. An id
/// beyond this node's revision was never sent by it, and is refused rather than wrapped.
fn resume_after(last: &str, revision: u64) -> Result<u64, ApiError> {
    let refuse = |expected: &str| {
        ApiError::bad_request("invalid_header", format!("Last-Event-ID {last:?} is invalid: expected {expected}"))
    };
    let beyond = || refuse(&format!("a revision this node has reached (it is at {revision})"));
    let last = decimal_u64(last).ok_or_else(|| refuse("a revision"))?;
    if last > revision {
        return Err(beyond());
    }
    last.checked_add(1).ok_or_else(beyond)
}

fn progress_interval(query: &Query) -> Result<Duration, ApiError> {
    let Some(text) = query.get("progress_interval") else { return Ok(PROGRESS_DEFAULT) };
    match parse_duration(text) {
        Some(interval) if interval >= Duration::from_millis(100) && interval <= Duration::from_secs(60) => Ok(interval),
        _ => Err(invalid("progress_interval", text, "a duration between 100ms and 60s")),
    }
}

fn compacted(start: u64, oldest: u64) -> ApiError {
    let message =
        format!("revision {start} was compacted; the oldest available is {oldest}: list again, then watch from there");
    ApiError::new(StatusCode::GONE, "revision_compacted", message).with_detail("oldest_revision", json!(oldest))
}

/// Feeds one client: history first, then every new matching event it may read, with progress
/// while idle. Its token is checked again after every apply on this node (an ACL change is an
/// apply): a revoked token's stream ends with an error event as soon as the node applies the
/// revocation, and a narrowed policy's stream carries only what it still allows.
/// Ends when the client goes away (its end of the channel closes) or the node stops.
async fn stream_events(
    node: Node,
    filter: Filter,
    credential: Credential,
    start: u64,
    progress: Duration,
    frames: mpsc::Sender<Bytes>,
) {
    let _open = node.metrics_registry().watch_stream();
    let mut next = start;
    let mut applied = node.store_progress();
    let mut progress_due = Instant::now() + progress;
    loop {
        drop(applied.borrow_and_update());
        let (events, scanned) = match node.events(next, filter.clone(), BATCH_MAX, credential).await {
            Ok(Ok(found)) => found,
            Ok(Err(Compacted { oldest })) => {
                let data = json!({ "code": "revision_compacted", "revision": next, "oldest_revision": oldest });
                let _ = frames.send(frame(None, "error", &data.to_string())).await;
                return;
            }
            Err(NodeError::Denied(denial)) => {
                let code = ApiError::from(NodeError::Denied(denial)).code;
                let data = json!({ "code": code, "message": denial.to_string() });
                let _ = frames.send(frame(None, "error", &data.to_string())).await;
                return;
            }
            Err(_) => return,
        };
        let full = events.len() == BATCH_MAX;
        let bugs = node.config().bugs;
        for event in events.iter().filter(|event| !bugs.drops_watch_event(event.revision)) {
            debug_assert!(event.revision >= next, "a watch sends revision {} again (next is {next})", event.revision);
            if frames.send(event_frame(event)).await.is_err() {
                return;
            }
        }
        if !events.is_empty() {
            progress_due = Instant::now() + progress;
        }
        next = match events.last() {
            Some(last) if full => last.revision + 1,
            _ => next.max(scanned + 1),
        };
        if full {
            continue;
        }
        tokio::select! {
            biased;
            () = frames.closed() => return,
            changed = applied.changed() => if changed.is_err() { return },
            () = rt::sleep_until(progress_due) => {
                progress_due = Instant::now() + progress;
                let body = WatchProgressBody { revision: next - 1 };
                let data = serde_json::to_string(&body).expect("progress serializes");
                if frames.send(frame(None, "progress", &data)).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn event_frame(event: &Arc<Event>) -> Bytes {
    let record = &event.record;
    let action = match event.action {
        Action::Put => "put",
        Action::Delete => "delete",
    };
    let (kie_key, project) = match &record.kie {
        Some(kie) => (kie.key.to_string(), kie.project.to_string()),
        None => (record.key.to_string(), String::new()),
    };
    let body = WatchEventBody {
        revision: event.revision,
        action: action.to_string(),
        key: record.key.to_string(),
        labels: record.labels.clone(),
        record: (event.action == Action::Put).then(|| RecordBody::new(record, event.revision)),
        kie_key,
        kie_action: action.to_string(),
        kie_labels: record.labels.clone(),
        domain_id: "default".to_string(),
        project,
    };
    frame(Some(event.revision), action, &serde_json::to_string(&body).expect("events serialize"))
}

/// One SSE frame. JSON never contains a raw newline, so `data` is one line.
fn frame(id: Option<u64>, event: &str, data: &str) -> Bytes {
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    Bytes::from(format!("{id}event: {event}\ndata: {data}\n\n"))
}
